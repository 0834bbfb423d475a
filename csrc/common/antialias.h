// Analytic edge antialiasing with silhouette gradients (nvdiffrast's `antialias`): per-element math shared by
// the CPU loops and the CUDA kernels.
//
// Inputs, for one image of H x W pixels (row 0 = bottom row, nvdiffrast memory order):
//   color  H*W*C   the point-sampled image (channels last)
//   rast   H*W*4   (u, v, z/w, triangle_id + 1) as written by nvdiffrast's rasterize; 0 = empty pixel
//   pos    V*4     clip-space (x, y, z, w) of the vertex set this image was drawn with
//   tri    F*3     vertex indices
//   topo   F*3     topology: topo[3f + k] = the vertex opposite to edge k of triangle f in the neighbouring
//                  triangle across that edge, -1 if there is none (edge k = the edge opposite corner k)
//
// A segment joins the centres of two pixels that are horizontally (d = 0: pixel1 = pixel0 + 1 column) or
// vertically (d = 1: pixel1 = pixel0 + 1 row) adjacent and whose triangle ids differ. The nearer of the two
// triangles is chosen (an empty pixel never is; equal depth picks pixel1's). In pixel coordinates centred on the
// chosen pixel, the line through both centres leaves that triangle through the edge with the largest crossing
// towards the other pixel. If that edge is a silhouette (no neighbour triangle, or the neighbour's opposite
// vertex lies on the same side of the edge as the triangle: the surface folds away), is steeper than 45 degrees
// relative to the segment, and crosses it at a distance dc in (-1/16, 1 + 1/16) pixels from the chosen centre,
// then with dc clamped to [0, 1] and ds = +1 (chosen = pixel0) or -1 (chosen = pixel1)
//     alpha = ds * (1/2 - dc),     target = alpha > 0 ? pixel0 : pixel1,     out[target] += alpha * (c1 - c0)
// i.e. the pixel on whose half the edge lies takes the other pixel's colour in proportion to the area the edge
// gives away. Backward: dout[target]/dc0 = -alpha, dout[target]/dc1 = +alpha, and alpha's derivative with
// respect to the clip-space x, y, w of the edge's two vertices, with nvdiffrast's regularised 1/(dy + 1e-3 px)
// and no position gradient when alpha is saturated (|alpha| >= 1/2).
//
// Safety: every index read from rast, tri and topo is range-checked here. A segment whose chosen triangle id is
// not in [0, F), or whose triangle names a vertex outside [0, V), is left alone (no blend, no gradient); a topo
// entry outside [0, V) counts as "no neighbour". So garbage input gives garbage output, never a bad read.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstring>

#include "common/occ_hd.h"
#include "common/triangle_id.h"

namespace occ {

// ------------------------------------------------------------------------------------------------ helpers

template <typename S>
OCC_HD bool aa_sign_bit(S v) {  // the IEEE sign bit: -0.0 counts as negative, +0.0 as positive
#ifdef __CUDA_ARCH__
  return signbit(v);
#else
  return std::signbit(v);
#endif
}

template <typename S>
OCC_HD bool aa_same_sign(S a, S b) {
  return aa_sign_bit(a) == aa_sign_bit(b);
}

template <typename S>
OCC_HD S aa_abs(S v) {
  return v < S(0) ? -v : v;
}

template <typename S>
OCC_HD void aa_swap(S& a, S& b) {
  const S t = a;
  a = b;
  b = t;
}

// n0 / d0 > n1 / d1 without dividing (d0, d1 may have either sign).
template <typename S>
OCC_HD bool aa_ratio_greater(S n0, S n1, S d0, S d1) {
  return (n0 * d1 > n1 * d0) == aa_same_sign(d0, d1);
}

// Index of the largest n[k] / d[k]; ties go to the lowest index.
template <typename S>
OCC_HD int aa_argmax_ratio3(const S* n, const S* d) {
  const bool g10 = aa_ratio_greater(n[1], n[0], d[1], d[0]);
  const bool g20 = aa_ratio_greater(n[2], n[0], d[2], d[0]);
  const bool g21 = aa_ratio_greater(n[2], n[1], d[2], d[1]);
  if (g20 && g21) return 2;
  return g10 ? 1 : 0;
}

// rast[..., 3] -> triangle index, -1 for an empty pixel or a value that is no id (common/triangle_id.h).
OCC_HD int32_t aa_triangle_index(float v) { return static_cast<int32_t>(rast_to_triangle_id(v) - 1); }

template <typename S>
struct AaPoint {
  S x, y;
};

// Clip-space vertex -> pixel coordinates relative to the point (fx, fy) (nvdiffrast's arithmetic order).
template <typename S>
OCC_HD AaPoint<S> aa_project(const S* p, S xh, S yh, S fx, S fy) {
  const S iw = S(1) / p[3];
  return {p[0] * iw * xh - fx, p[1] * iw * yh - fy};
}

// Twice the signed area of (a, b, c).
template <typename S>
OCC_HD S aa_orient(AaPoint<S> a, AaPoint<S> b, AaPoint<S> c) {
  return (b.x - a.x) * (c.y - a.y) - (c.x - a.x) * (b.y - a.y);
}

// ------------------------------------------------------------------------------------------------ topology
//
// The topology of a triangle list is built in three data-parallel steps, each an element function below:
//   1. key every half-edge h = 3f + k (edge k of triangle f, opposite corner k) by its unordered vertex pair;
//      half-edges of triangles that are degenerate (repeated vertex) or name a negative vertex get kAaNoKey;
//   2. sort the keys stably (the caller does this with a library sort), so equal keys stay in triangle order,
//      and record for the first half-edge of every key group the group's first two distinct opposite vertices
//      (nvdiffrast's edge hash keeps exactly these two, in insertion order; here the order is triangle order,
//      so the result is deterministic);
//   3. for each half-edge, look its key up (binary search) and return the stored vertex that is not its own
//      opposite corner: -1 when the edge is a boundary, or when the triangle is not among the two stored
//      (non-manifold edges), as in nvdiffrast.

constexpr int64_t kAaNoKey = INT64_MAX;

OCC_HD int64_t aa_edge_key(int32_t a, int32_t b) {
  const int32_t lo = a < b ? a : b, hi = a < b ? b : a;
  return (static_cast<int64_t>(lo) << 31) | static_cast<int64_t>(hi);
}

OCC_HD bool aa_triangle_keyable(const int32_t* t) {
  return t[0] >= 0 && t[1] >= 0 && t[2] >= 0 && t[0] != t[1] && t[1] != t[2] && t[2] != t[0];
}

OCC_HD int64_t aa_half_edge_key(const int32_t* tri, int64_t h) {
  const int32_t* t = tri + (h / 3) * 3;
  const int k = static_cast<int>(h % 3);
  return aa_triangle_keyable(t) ? aa_edge_key(t[(k + 1) % 3], t[(k + 2) % 3]) : kAaNoKey;
}

// Step 2, at sorted position i of n: pair[2i], pair[2i + 1] = the group's two stored opposite vertices if i
// starts a key group, else (-1, -1). perm[i] is the half-edge at sorted position i.
OCC_HD void aa_group_pair(const int32_t* tri, const int64_t* skey, const int64_t* perm, int64_t n, int64_t i,
                          int32_t* pair) {
  int32_t s0 = -1, s1 = -1;
  if (skey[i] != kAaNoKey && (i == 0 || skey[i - 1] != skey[i])) {
    s0 = tri[perm[i]];  // tri[h] is the corner opposite half-edge h
    for (int64_t j = i + 1; j < n && skey[j] == skey[i]; ++j) {
      if (tri[perm[j]] != s0) {
        s1 = tri[perm[j]];
        break;
      }
    }
  }
  pair[2 * i] = s0;
  pair[2 * i + 1] = s1;
}

// Step 3, for half-edge h: the opposite vertex across it, or -1.
OCC_HD int32_t aa_opposite_vertex(const int32_t* tri, const int64_t* skey, const int32_t* pair, int64_t n,
                                  int64_t h) {
  const int32_t* t = tri + (h / 3) * 3;
  const int k = static_cast<int>(h % 3);
  const int32_t a = t[(k + 1) % 3], b = t[(k + 2) % 3], self = t[k];
  if (a < 0 || b < 0 || a == b) return -1;
  const int64_t key = aa_edge_key(a, b);
  int64_t lo = 0, hi = n;  // lower bound of key in skey[0, n)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (skey[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == n || skey[lo] != key) return -1;
  const int32_t s0 = pair[2 * lo], s1 = pair[2 * lo + 1];
  if (self == s0) return s1;
  if (self == s1) return s0;
  return -1;
}

// ------------------------------------------------------------------------------------------------ batch

// Pointers to contiguous buffers and sizes of one call; image b's buffers via the accessors.
template <typename S>
struct AaBatch {
  const S* color;        // B*H*W*C
  const float* rast;     // B*H*W*4
  const S* pos;          // B*V*4 (instanced) or V*4 (range mode)
  const int32_t* tri;    // F*3
  const int32_t* topo;   // F*3 opposite vertices
  int64_t B;
  int H, W, C;
  int32_t V, F;
  int64_t pos_stride;    // V*4 (instanced) or 0 (range mode: one vertex set for every image)

  OCC_HD int64_t pixels() const { return static_cast<int64_t>(H) * W; }
  OCC_HD int64_t image_offset(int64_t b) const { return b * pixels() * C; }  // into color-shaped buffers
  OCC_HD const float* rast_of(int64_t b) const { return rast + b * pixels() * 4; }
  OCC_HD const S* pos_of(int64_t b) const { return pos + b * pos_stride; }
};

// Fills an AaBatch from tensor-like objects (anything with dim(), size(i) and const_data_ptr<T>()), so that the
// CPU loops and the CUDA glue share one definition without this header depending on torch.
template <typename S, typename Tensor>
AaBatch<S> aa_batch(const Tensor& color, const Tensor& rast, const Tensor& pos, const Tensor& tri,
                    const Tensor& topo) {
  const bool instanced = pos.dim() == 3;
  const int32_t V = static_cast<int32_t>(pos.size(instanced ? 1 : 0));
  return {color.template const_data_ptr<S>(),
          rast.template const_data_ptr<float>(),
          pos.template const_data_ptr<S>(),
          tri.template const_data_ptr<int32_t>(),
          topo.template const_data_ptr<int32_t>(),
          color.size(0),
          static_cast<int>(color.size(1)),
          static_cast<int>(color.size(2)),
          static_cast<int>(color.size(3)),
          V,
          static_cast<int32_t>(tri.size(0)),
          instanced ? static_cast<int64_t>(V) * 4 : 0};
}

// ------------------------------------------------------------------------------------------------ segments

template <typename S>
struct AaSegment {
  S alpha;         // out[target] += alpha * (c1 - c0); target = pixel0 if alpha > 0, else pixel1
  int32_t tri;     // chosen triangle
  int32_t edge;    // its crossing edge, named by the opposite corner (0..2)
  int32_t sx, sy;  // the chosen pixel (pixel0 or pixel1)
  int64_t q0, q1;  // flat indices of pixel0 and pixel1 within the image
  bool hit;        // false: the segment changes nothing
};

// The pixel a hit blends: pixel0 if alpha > 0, else pixel1 (as nvdiffrast).
template <typename S>
OCC_HD int64_t aa_target(const AaSegment<S>& s) {
  return s.alpha > S(0) ? s.q0 : s.q1;
}

// Does segment (x, y, d) lie inside the image? (pixel1 = (x + 1, y) for d = 0, (x, y + 1) for d = 1)
OCC_HD bool aa_segment_inside(int H, int W, int x, int y, int d) {
  return x >= 0 && y >= 0 && (d == 0 ? (x + 1 < W && y < H) : (y + 1 < H && x < W));
}

// The analysis of the segment of image b whose pixel0 is (x, y); the segment must lie inside the image.
template <typename S>
OCC_HD AaSegment<S> aa_segment(const AaBatch<S>& a, int64_t b, int x, int y, int d) {
  const int64_t p0 = static_cast<int64_t>(y) * a.W + x;
  const int64_t p1 = d ? p0 + a.W : p0 + 1;
  AaSegment<S> s{S(0), -1, 0, x, y, p0, p1, false};
  const float* rast = a.rast_of(b);
  const S* pos = a.pos_of(b);
  const float id0 = rast[4 * p0 + 3], id1 = rast[4 * p1 + 3];
  if (!(id0 != id1)) return s;  // same triangle (compared as floats, as nvdiffrast does)

  const int32_t t0 = aa_triangle_index(id0), t1 = aa_triangle_index(id1);
  const bool side1 = t0 < 0 || (t1 >= 0 && !(rast[4 * p0 + 2] < rast[4 * p1 + 2]));
  const int32_t t = side1 ? t1 : t0;
  if (t < 0 || t >= a.F) return s;
  int32_t vi[3];
  for (int k = 0; k < 3; ++k) {
    vi[k] = a.tri[3 * static_cast<int64_t>(t) + k];
    if (vi[k] < 0 || vi[k] >= a.V) return s;
  }
  const int sx = x + (side1 && d == 0), sy = y + (side1 && d == 1);

  // Pixel space with the chosen pixel's centre at the origin.
  const S xh = S(0.5) * S(a.W), yh = S(0.5) * S(a.H);
  const S fx = S(sx) + S(0.5) - xh, fy = S(sy) + S(0.5) - yh;
  AaPoint<S> v[3], o[3];
  for (int k = 0; k < 3; ++k) v[k] = aa_project(pos + 4 * static_cast<int64_t>(vi[k]), xh, yh, fx, fy);
  for (int k = 0; k < 3; ++k) {
    const int32_t ok = a.topo[3 * static_cast<int64_t>(t) + k];
    o[k] = (ok >= 0 && ok < a.V) ? aa_project(pos + 4 * static_cast<int64_t>(ok), xh, yh, fx, fy) : v[k];
  }

  // Edge k is a silhouette when the neighbour's opposite vertex is on the triangle's side of it (with no
  // neighbour, o[k] = v[k] and the test holds).
  const S area = aa_orient(v[0], v[1], v[2]);
  bool silhouette[3];
  for (int k = 0; k < 3; ++k) silhouette[k] = aa_same_sign(aa_orient(o[k], v[(k + 1) % 3], v[(k + 2) % 3]), area);
  if (!(silhouette[0] || silhouette[1] || silhouette[2])) return s;

  // Make the segment run along +x (d = 0) by swapping axes for vertical segments.
  if (d)
    for (int k = 0; k < 3; ++k) aa_swap(v[k].x, v[k].y);

  // Edge k runs from v[k+1] to v[k+2]; where it crosses the x axis, ds * x = num[k] / den[k].
  const S ds = side1 ? S(-1) : S(1);
  S num[3], den[3], run[3];
  for (int k = 0; k < 3; ++k) {
    const AaPoint<S> e0 = v[(k + 1) % 3], e1 = v[(k + 2) % 3];
    run[k] = e1.x - e0.x;
    den[k] = e1.y - e0.y;
    num[k] = ds * (e0.x * den[k] - e0.y * run[k]);
    if (aa_same_sign(e0.y, e1.y)) {  // does not cross the axis
      num[k] = S(-FLT_MAX);
      den[k] = S(1);
    }
  }
  const int e = aa_argmax_ratio3(num, den);
  S dc = S(-FLT_MAX);
  if (silhouette[e] && aa_abs(den[e]) >= aa_abs(run[e])) dc = num[e] / den[e];
  const S eps = S(0.0625);  // tolerate 1/16 px of coverage snapping
  if (!(dc > -eps && dc < S(1) + eps)) return s;
  dc = dc < S(0) ? S(0) : (dc > S(1) ? S(1) : dc);
  s.alpha = ds * (S(0.5) - dc);
  s.tri = t;
  s.edge = e;
  s.sx = sx;
  s.sy = sy;
  s.hit = true;
  return s;
}

// ------------------------------------------------------------------------------------------------ records
//
// Every pass runs in two steps so that each segment is analysed once: first one record per segment, its alpha
// if it is a hit, else kAaNoHit (alpha of a hit lies in [-1/2, 1/2]); then per-pixel gathers over the records
// of the (up to four) segments touching a pixel. Records live at seg[2 * (b*H*W + y*W + x) + d].

constexpr float kAaNoHit = 2.0f;

template <typename S>
OCC_HD bool aa_is_hit(S record) {
  return record != S(kAaNoHit);
}

// The record of segment (x, y, d) of image b.
template <typename S>
OCC_HD S aa_segment_record(const AaBatch<S>& a, int64_t b, int x, int y, int d) {
  if (!aa_segment_inside(a.H, a.W, x, y, d)) return S(kAaNoHit);
  const AaSegment<S> s = aa_segment(a, b, x, y, d);
  return s.hit ? s.alpha : S(kAaNoHit);
}

// Records of the two segments whose pixel0 is (x, y) in image b.
template <typename S>
OCC_HD void aa_record_pixel(const AaBatch<S>& a, int64_t b, int x, int y, S* __restrict__ seg) {
  S* dst = seg + 2 * (b * a.pixels() + static_cast<int64_t>(y) * a.W + x);
  dst[0] = aa_segment_record(a, b, x, y, 0);
  dst[1] = aa_segment_record(a, b, x, y, 1);
}

// Does any hit segment touch pixel (x, y)? (The cheap test before the gathers below.)
template <typename S>
OCC_HD bool aa_pixel_touched(const AaBatch<S>& a, const S* __restrict__ seg, int64_t b, int x, int y) {
  const int64_t p = static_cast<int64_t>(y) * a.W + x;
  const S* rec = seg + 2 * b * a.pixels();
  return aa_is_hit(rec[2 * p]) || aa_is_hit(rec[2 * p + 1]) || (x > 0 && aa_is_hit(rec[2 * (p - 1)])) ||
         (y > 0 && aa_is_hit(rec[2 * (p - a.W) + 1]));
}

// Calls f(alpha, q0, q1, as_pixel1) for every hit segment touching pixel (x, y) of image b (q0, q1: flat
// pixel0 and pixel1 in the image), in a fixed order: (x, y) as pixel0 of its horizontal, then vertical segment;
// then as pixel1 of the segments from its left and lower neighbours.
template <typename S, typename Fn>
OCC_HD void aa_for_each_touching_hit(const AaBatch<S>& a, const S* __restrict__ seg, int64_t b, int x, int y,
                                     Fn&& f) {
  const int64_t p = static_cast<int64_t>(y) * a.W + x;
  const S* rec = seg + 2 * b * a.pixels();
  if (aa_is_hit(rec[2 * p])) f(rec[2 * p], p, p + 1, false);
  if (aa_is_hit(rec[2 * p + 1])) f(rec[2 * p + 1], p, p + a.W, false);
  if (x > 0 && aa_is_hit(rec[2 * (p - 1)])) f(rec[2 * (p - 1)], p - 1, p, true);
  if (y > 0 && aa_is_hit(rec[2 * (p - a.W) + 1])) f(rec[2 * (p - a.W) + 1], p - a.W, p, true);
}

// ------------------------------------------------------------------------------------------------ forward

// out at pixel (x, y) of image b = color + the blends of the hit segments that target it (seg: the records).
template <typename S>
OCC_HD void aa_forward_pixel(const AaBatch<S>& a, const S* __restrict__ seg, int64_t b, int x, int y,
                             S* __restrict__ out) {
  const int C = a.C;
  const S* color = a.color + a.image_offset(b);
  const int64_t p = static_cast<int64_t>(y) * a.W + x;
  S* dst = out + a.image_offset(b) + p * C;
  for (int c = 0; c < C; ++c) dst[c] = color[p * C + c];
  aa_for_each_touching_hit(a, seg, b, x, y, [&](S alpha, int64_t q0, int64_t q1, bool as_pixel1) {
    if ((alpha > S(0)) == as_pixel1) return;  // it targets the other pixel
    for (int c = 0; c < C; ++c) dst[c] += alpha * (color[q1 * C + c] - color[q0 * C + c]);
  });
}

// ------------------------------------------------------------------------------------------------ backward

// dL/dcolor at pixel (x, y) of image b: the incoming gradient, plus -alpha (as pixel0) or +alpha (as pixel1)
// times the incoming gradient at the target of each hit segment touching it. A gather: deterministic.
template <typename S>
OCC_HD void aa_grad_color_pixel(const AaBatch<S>& a, const S* __restrict__ seg, const S* __restrict__ grad_out,
                                int64_t b, int x, int y, S* __restrict__ grad_color) {
  const int C = a.C;
  const S* g = grad_out + a.image_offset(b);
  const int64_t p = static_cast<int64_t>(y) * a.W + x;
  S* dst = grad_color + a.image_offset(b) + p * C;
  for (int c = 0; c < C; ++c) dst[c] = g[p * C + c];
  aa_for_each_touching_hit(a, seg, b, x, y, [&](S alpha, int64_t q0, int64_t q1, bool as_pixel1) {
    const int64_t target = alpha > S(0) ? q0 : q1;
    for (int c = 0; c < C; ++c) {
      const S gt = g[target * C + c];
      if (gt != S(0)) dst[c] += as_pixel1 ? alpha * gt : -(alpha * gt);
    }
  });
}

// Position gradient of one segment: dL/d(x, y, w) of the two vertices of the crossing edge.
template <typename S>
struct AaEdgeGrad {
  int32_t v[2];  // vertex indices into the image's vertex set
  S g[2][3];     // (x, y, w) for each
};

// Gradient of segment (x, y, d) of image b (inside the image) into its edge's vertices. False when there is
// none: no hit, saturated alpha (|alpha| >= 1/2), or no colour difference weighted by the incoming gradient.
template <typename S>
OCC_HD bool aa_segment_pos_grad(const AaBatch<S>& a, const S* __restrict__ seg, const S* __restrict__ grad_out,
                                int64_t b, int x, int y, int d, AaEdgeGrad<S>& out) {
  const S record = seg[2 * (b * a.pixels() + static_cast<int64_t>(y) * a.W + x) + d];
  if (!aa_is_hit(record) || !(aa_abs(record) < S(0.5))) return false;
  const AaSegment<S> s = aa_segment(a, b, x, y, d);  // the full analysis again, for hits only
  const int C = a.C;
  const S* g = grad_out + a.image_offset(b) + aa_target(s) * C;
  const S* c0 = a.color + a.image_offset(b) + s.q0 * C;
  const S* c1 = a.color + a.image_offset(b) + s.q1 * C;
  S dd = S(0);  // dL/dalpha
  for (int c = 0; c < C; ++c)
    if (g[c] != S(0)) dd += g[c] * (c1[c] - c0[c]);
  if (dd == S(0)) return false;

  // alpha = ds/2 - X with X = the crossing's x = (x1 y2 - x2 y1) / (y2 - y1) in the chosen pixel's frame
  // (axes swapped for d = 1); nvdiffrast regularises 1 / (y2 - y1) as 1 / (y2 - y1 + copysign(1e-3, y2 - y1)).
  const int i1 = (s.edge + 1) % 3, i2 = (i1 + 1) % 3;
  out.v[0] = a.tri[3 * static_cast<int64_t>(s.tri) + i1];
  out.v[1] = a.tri[3 * static_cast<int64_t>(s.tri) + i2];
  const S* pa = a.pos_of(b) + 4 * static_cast<int64_t>(out.v[0]);
  const S* pb = a.pos_of(b) + 4 * static_cast<int64_t>(out.v[1]);
  S ax = pa[0], ay = pa[1], bx = pb[0], by = pb[1];
  S xh = S(0.5) * S(a.W), yh = S(0.5) * S(a.H);
  S fx = S(s.sx) + S(0.5) - xh, fy = S(s.sy) + S(0.5) - yh;
  if (d) {
    aa_swap(ax, ay);
    aa_swap(bx, by);
    aa_swap(xh, yh);
    aa_swap(fx, fy);
  }
  const S wa = S(1) / pa[3], wb = S(1) / pb[3];
  const S x1 = ax * wa * xh - fx, y1 = ay * wa * yh - fy;
  const S x2 = bx * wb * xh - fx, y2 = by * wb * yh - fy;
  const S dx = x2 - x1, dy = y2 - y1;
  const S db = x1 * dy - y1 * dx;
  const S iy = S(1) / (dy + (aa_sign_bit(dy) ? S(-0.001) : S(0.001)));
  const S dby = db * iy;
  const S ia = -wa * iy * dd, ib = wb * iy * dd;
  S gax = ia * xh * y2, gbx = ib * xh * y1;
  S gay = ia * yh * (dby - x2), gby = ib * yh * (dby - x1);
  const S gaw = -(ax * gax + ay * gay) * wa, gbw = -(bx * gbx + by * gby) * wb;
  if (d) {
    aa_swap(gax, gay);
    aa_swap(gbx, gby);
  }
  out.g[0][0] = gax;
  out.g[0][1] = gay;
  out.g[0][2] = gaw;
  out.g[1][0] = gbx;
  out.g[1][1] = gby;
  out.g[1][2] = gbw;
  return true;
}

}  // namespace occ
