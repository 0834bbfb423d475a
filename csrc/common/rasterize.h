// Triangle rasterization in nvdiffrast's conventions: per-element math shared by the CPU and CUDA back ends.
//
// Conventions (the spec is ../shared/golden/README.md):
//  * pos is OpenGL clip space (x, y, z, w). Pixel (column i, row j) samples NDC x = (2i+1)/W - 1,
//    y = (2j+1)/H - 1: row 0 is the BOTTOM row, memory order bottom-up.
//  * Coverage: vertices snap to fixed point, 1/16 px, origin at the image centre:
//    X = rint_half_even(float32(float32(x * float32(1/w)) * 8W)); the sample is the pixel centre; integer (int64)
//    edge functions; a sample exactly on an edge is covered for left and bottom edges only (watertight, no double
//    coverage). Both windings are drawn.
//  * Dropped triangles (never drawn): any vertex with w <= 0 or a non-finite coordinate (nvdiffrast clips such
//    triangles instead); all three vertices outside the same frustum plane; zero area after snapping; a vertex
//    snapped beyond |X|, |Y| > 2^30 fixed-point units (~6e5 NDC units at 224 px, where nvdiffrast would clip to
//    its guard band). Fragments whose z/w at the pixel centre lies outside [-1, 1] are discarded: that is exactly
//    near/far-plane clipping. x/y outside the screen are simply not covered.
//  * Visibility: smallest z/w at the pixel centre wins; exact ties go to the lower triangle index.
//  * rast = (u, v, z/w, triangle_id + 1) (ids encoded as in common/triangle_id.h), perspective-correct: with p~_k = (x_k - fx w_k, y_k - fy w_k),
//    a0 = p~1 x p~2, a1 = p~2 x p~0, a2 = p~0 x p~1, u = a0/(a0+a1+a2), v = a1/(a0+a1+a2),
//    z/w = sum z_k a_k / sum w_k a_k. u weights tri[:,0], v tri[:,1], 1-u-v tri[:,2]. Output clamps: u, v to
//    [0, 1], both divided by u+v when u+v > 1, z/w to [-1, 1]. Empty pixels are all zero.
//  * rast_db = (du/dX, du/dY, dv/dX, dv/dY) in pixel units (Y = row direction, up), from the clamped u, v.
//  * Backward: exact derivatives (no epsilon) through u, v and rast_db; clamps count as identity; z/w and the id
//    get no gradient.
#pragma once

#include "common/occ_hd.h"
#include "common/triangle_id.h"

namespace occ {

// Fixed-point limit for snapped vertex coordinates: edge-function products then stay below 2^62.
constexpr int64_t kRastMaxFixed = int64_t(1) << 30;

// Round to nearest, ties to even, for |v| < 2^31 (callers guarantee |v| < 2^30). int32, not int64: float->int32
// conversions vectorise on AVX2, float->int64 ones do not.
OCC_HD int32_t rast_round_half_even(float v) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(v);
#else
  // Adding and removing 2^23 rounds in the FPU's default mode (nearest, ties to even): no libm call, and written
  // as selects so that loops over vertices vectorise. Floats of magnitude >= 2^23 are integers already.
  // (Requires IEEE semantics: never build with -ffast-math.)
  constexpr float kMagic = 8388608.0f;  // 2^23
  const float m = v >= 0.0f ? kMagic : -kMagic;
  const float r = (v + m) - m;
  return static_cast<int32_t>(v >= kMagic || v <= -kMagic ? v : r);
#endif
}

template <typename scalar_t>
OCC_HD bool rast_finite(scalar_t v) {
  return v == v && v - v == scalar_t(0);  // false for NaN and +-inf
}

// Coverage setup of one triangle: integer edge functions E_k(sx, sy) = A_k sx + B_k sy + C_k over fixed-point sample
// positions, oriented so that "inside" is E_k >= 0 for all k, with the fill rule folded into C_k (-1 on edges
// that must not own their samples), and the pixel bounding box.
struct RastTriSetup {
  int64_t A[3], B[3], C[3];
  int x0, y0, x1, y1;  // inclusive pixel bounding box, clamped to the image; empty when x0 > x1 or y0 > y1
};

// Fixed-point position of pixel centre (column i or row j) for an image extent n: (16 i + 8) - 8 n.
OCC_HD int64_t rast_sample_fixed(int i, int n) { return 16 * static_cast<int64_t>(i) + 8 - 8 * static_cast<int64_t>(n); }

// Pixel-index range [lo, hi] whose centres can lie inside fixed-point [vmin, vmax], clamped to [0, n-1].
OCC_HD void rast_pixel_span(int64_t vmin, int64_t vmax, int n, int& lo, int& hi) {
  // centre of pixel i is 16 i + 8 - 8n >= vmin  <=>  i >= (vmin + 8n - 8) / 16
  const int64_t a = vmin + 8 * static_cast<int64_t>(n) - 8;
  const int64_t b = vmax + 8 * static_cast<int64_t>(n) - 8;
  int64_t l = a >= 0 ? (a + 15) / 16 : -((-a) / 16);  // ceil(a / 16)
  int64_t h = b >= 0 ? b / 16 : -((-b + 15) / 16);    // floor(b / 16)
  if (l < 0) l = 0;
  if (h > n - 1) h = n - 1;
  lo = static_cast<int>(l < n ? l : n);
  hi = static_cast<int>(h >= -1 ? h : -1);
}

// Per-vertex part of the set-up (a vertex is shared by ~6 triangles: do it once per vertex). Writes the snapped
// fixed-point position and returns an outcode: bits 0-5 = outside x>w, x<-w, y>w, y<-w, z>w, z<-w; bit 6 = the
// vertex makes its triangles undrawable (w <= 0, non-finite, or beyond the fixed-point range).
constexpr uint32_t kRastVertexInvalid = 64u;

template <typename scalar_t>
OCC_HD uint32_t rast_vertex(const scalar_t* p, int H, int W, int32_t& X, int32_t& Y) {
  const scalar_t x = p[0], y = p[1], z = p[2], w = p[3];
  // Branch-free (selects, bitwise & and |) so that the CPU vertex pass vectorises.
  const bool finite = rast_finite(x) & rast_finite(y) & rast_finite(z) & rast_finite(w);
  uint32_t m = 0;
  m |= x > w ? 1u : 0u;
  m |= x < -w ? 2u : 0u;
  m |= y > w ? 4u : 0u;
  m |= y < -w ? 8u : 0u;
  m |= z > w ? 16u : 0u;
  m |= z < -w ? 32u : 0u;
  const float wf = finite & (w > scalar_t(0)) ? static_cast<float>(w) : 1.0f;
  const float iw = 1.0f / wf;
  const float xf = (static_cast<float>(finite ? x : scalar_t(0)) * iw) * static_cast<float>(8 * W);
  const float yf = (static_cast<float>(finite ? y : scalar_t(0)) * iw) * static_cast<float>(8 * H);
  const float lim = static_cast<float>(kRastMaxFixed);
  const bool ok = finite & (w > scalar_t(0)) & (xf > -lim) & (xf < lim) & (yf > -lim) & (yf < lim);
  X = rast_round_half_even(ok ? xf : 0.0f);
  Y = rast_round_half_even(ok ? yf : 0.0f);
  return ok ? m : kRastVertexInvalid;
}

// Triangle part of the set-up from its snapped corners and outcodes. Returns false when the triangle is dropped
// (see the header comment); then `s` is unspecified.
OCC_HD bool rast_setup_snapped(const int32_t* Xs, const int32_t* Ys, const uint32_t* codes, int H, int W,
                               RastTriSetup& s) {
  if ((codes[0] | codes[1] | codes[2]) & kRastVertexInvalid) return false;
  if (codes[0] & codes[1] & codes[2]) return false;  // all three outside the same frustum plane
  const int64_t X[3] = {Xs[0], Xs[1], Xs[2]}, Y[3] = {Ys[0], Ys[1], Ys[2]};
  // Bounding box first: most triangles of a dense mesh contain no pixel centre and stop here.
  const int64_t xmin = X[0] < X[1] ? (X[0] < X[2] ? X[0] : X[2]) : (X[1] < X[2] ? X[1] : X[2]);
  const int64_t xmax = X[0] > X[1] ? (X[0] > X[2] ? X[0] : X[2]) : (X[1] > X[2] ? X[1] : X[2]);
  rast_pixel_span(xmin, xmax, W, s.x0, s.x1);
  if (s.x0 > s.x1) return false;
  const int64_t ymin = Y[0] < Y[1] ? (Y[0] < Y[2] ? Y[0] : Y[2]) : (Y[1] < Y[2] ? Y[1] : Y[2]);
  const int64_t ymax = Y[0] > Y[1] ? (Y[0] > Y[2] ? Y[0] : Y[2]) : (Y[1] > Y[2] ? Y[1] : Y[2]);
  rast_pixel_span(ymin, ymax, H, s.y0, s.y1);
  if (s.y0 > s.y1) return false;
  // Twice the signed area (counter-clockwise with y up is positive).
  const int64_t area = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0]);
  if (area == 0) return false;
  // Orient counter-clockwise: visit the corners as 0, 2, 1 for clockwise triangles (coverage only).
  const int order[3] = {0, area > 0 ? 1 : 2, area > 0 ? 2 : 1};
  for (int e = 0; e < 3; ++e) {
    const int a = order[e], b = order[e == 2 ? 0 : e + 1];
    const int64_t dx = X[b] - X[a], dy = Y[b] - Y[a];
    // E(s) = dx (sy - Ya) - dy (sx - Xa) > 0 to the left of a->b, i.e. inside for a CCW triangle.
    s.A[e] = -dy;
    s.B[e] = dx;
    s.C[e] = dy * X[a] - dx * Y[a];
    // Fill rule: samples exactly on a left edge (going down, dy < 0) or a bottom edge (dy == 0, going right) are
    // owned; on any other edge they are not: E >= 0 becomes E - 1 >= 0 there.
    if (!(dy < 0 || (dy == 0 && dx > 0))) s.C[e] -= 1;
  }
  return true;
}

// Whole set-up of triangle (p0, p1, p2) (clip-space xyzw) for an H x W image, for back ends without a vertex pass.
template <typename scalar_t>
OCC_HD bool rast_setup(const scalar_t* p0, const scalar_t* p1, const scalar_t* p2, int H, int W, RastTriSetup& s) {
  int32_t X[3], Y[3];
  uint32_t codes[3];
  codes[0] = rast_vertex(p0, H, W, X[0], Y[0]);
  codes[1] = rast_vertex(p1, H, W, X[1], Y[1]);
  codes[2] = rast_vertex(p2, H, W, X[2], Y[2]);
  return rast_setup_snapped(X, Y, codes, H, W, s);
}

// Is the centre of pixel (i, j) covered? sx, sy are its fixed-point coordinates.
OCC_HD bool rast_covers(const RastTriSetup& s, int64_t sx, int64_t sy) {
  return (s.A[0] * sx + s.B[0] * sy + s.C[0] >= 0) & (s.A[1] * sx + s.B[1] * sy + s.C[1] >= 0) &
         (s.A[2] * sx + s.B[2] * sy + s.C[2] >= 0);
}

// NDC of the centre of pixel (i, j).
template <typename scalar_t>
OCC_HD scalar_t rast_ndc(int i, int n) {
  return (scalar_t(2) * scalar_t(i) + scalar_t(1)) / scalar_t(n) - scalar_t(1);
}

// Unnormalised perspective-correct barycentrics at NDC (fx, fy).
template <typename scalar_t>
OCC_HD void rast_bary_raw(const scalar_t* p0, const scalar_t* p1, const scalar_t* p2, scalar_t fx, scalar_t fy,
                          scalar_t& a0, scalar_t& a1, scalar_t& a2) {
  const scalar_t p0x = p0[0] - fx * p0[3], p0y = p0[1] - fy * p0[3];
  const scalar_t p1x = p1[0] - fx * p1[3], p1y = p1[1] - fy * p1[3];
  const scalar_t p2x = p2[0] - fx * p2[3], p2y = p2[1] - fy * p2[3];
  a0 = p1x * p2y - p1y * p2x;
  a1 = p2x * p0y - p2y * p0x;
  a2 = p0x * p1y - p0y * p1x;
}

// z/w of the triangle's surface at NDC (fx, fy) (unclamped), used for the depth test and the output.
template <typename scalar_t>
OCC_HD scalar_t rast_depth(const scalar_t* p0, const scalar_t* p1, const scalar_t* p2, scalar_t fx, scalar_t fy) {
  scalar_t a0, a1, a2;
  rast_bary_raw(p0, p1, p2, fx, fy, a0, a1, a2);
  return (p0[2] * a0 + p1[2] * a1 + p2[2] * a2) / (p0[3] * a0 + p1[3] * a1 + p2[3] * a2);
}

// Should a fragment at depth z (of triangle id) replace the current (best_z, best_id)? best_id < 0 = empty.
template <typename scalar_t>
OCC_HD bool rast_depth_wins(scalar_t z, int32_t id, scalar_t best_z, int32_t best_id) {
  return best_id < 0 || z < best_z || (z == best_z && id < best_id);
}

// Is a fragment depth inside the view volume (near/far clipping)?
template <typename scalar_t>
OCC_HD bool rast_depth_visible(scalar_t z) {
  return z >= scalar_t(-1) && z <= scalar_t(1);
}

// Depth as an unsigned key whose integer order is the float order (for atomicMin on the GPU): the high 32 bits
// of a 64-bit (depth, triangle id) key. Only used for z in [-1, 1] (finite).
OCC_HD uint32_t rast_depth_key(float z) {
  union {
    float f;
    uint32_t u;
  } c;
  c.f = z + 0.0f;  // -0 -> +0
  return (c.u & 0x80000000u) ? ~c.u : (c.u | 0x80000000u);
}

template <typename scalar_t>
OCC_HD scalar_t rast_clamp01(scalar_t v) {
  return v < scalar_t(0) ? scalar_t(0) : (v > scalar_t(1) ? scalar_t(1) : v);
}

// u, v as emitted from unnormalised barycentrics (a0, a1) and iw = 1 / (a0 + a1 + a2): clamped to [0, 1], and both
// divided by u + v when that exceeds 1.
template <typename scalar_t>
OCC_HD void rast_output_uv(scalar_t a0, scalar_t a1, scalar_t iw, scalar_t& u, scalar_t& v) {
  u = rast_clamp01(a0 * iw);
  v = rast_clamp01(a1 * iw);
  const scalar_t uv = u + v;
  if (uv > scalar_t(1)) {
    u /= uv;
    v /= uv;
  }
}

// The rasterizer's output at a pixel centre (fx, fy) = (rast_ndc(i, W), rast_ndc(j, H)) of an H x W image for
// triangle (p0, p1, p2) with id: rast[4] and db[4].
template <typename scalar_t>
OCC_HD void rast_resolve(const scalar_t* p0, const scalar_t* p1, const scalar_t* p2, int32_t id, scalar_t fx,
                         scalar_t fy, int H, int W, scalar_t* rast, scalar_t* db) {
  scalar_t a0, a1, a2;
  rast_bary_raw(p0, p1, p2, fx, fy, a0, a1, a2);
  const scalar_t iw = scalar_t(1) / (a0 + a1 + a2);
  scalar_t u, v;
  rast_output_uv(a0, a1, iw, u, v);
  scalar_t zw = (p0[2] * a0 + p1[2] * a1 + p2[2] * a2) / (p0[3] * a0 + p1[3] * a1 + p2[3] * a2);
  zw = zw < scalar_t(-1) ? scalar_t(-1) : (zw > scalar_t(1) ? scalar_t(1) : zw);
  rast[0] = u;
  rast[1] = v;
  rast[2] = zw;
  rast[3] = triangle_id_to_rast(static_cast<int64_t>(id) + 1, scalar_t(0));
  // d a_k / d fx and d a_k / d fy do not depend on (fx, fy).
  const scalar_t e0x = p1[1] * p2[3] - p2[1] * p1[3], e1x = p2[1] * p0[3] - p0[1] * p2[3],
                 e2x = p0[1] * p1[3] - p1[1] * p0[3];
  const scalar_t e0y = p2[0] * p1[3] - p1[0] * p2[3], e1y = p0[0] * p2[3] - p2[0] * p0[3],
                 e2y = p1[0] * p0[3] - p0[0] * p1[3];
  const scalar_t etx = e0x + e1x + e2x, ety = e0y + e1y + e2y;
  const scalar_t xs = scalar_t(2) / scalar_t(W), ys = scalar_t(2) / scalar_t(H);
  db[0] = xs * (e0x - u * etx) * iw;
  db[1] = ys * (e0y - u * ety) * iw;
  db[2] = xs * (e1x - v * etx) * iw;
  db[3] = ys * (e1y - v * ety) * iw;
}

// Reverse mode of rast_resolve for the pixel at (fx, fy): given dL/d(u, v) and (optionally) dL/d rast_db, accumulate
// dL/d(x, y, w) of the three vertices into g0, g1, g2 (each 4 wide: x, y, z, w; z untouched) with add(ptr, value).
// u, v are the forward (clamped) values; the clamps are treated as identity.
template <typename scalar_t, typename Add>
OCC_HD void rast_backward(const scalar_t* p0, const scalar_t* p1, const scalar_t* p2, scalar_t fx, scalar_t fy,
                          int H, int W, scalar_t gu, scalar_t gv, const scalar_t* gdb /* 4 or nullptr */, scalar_t* g0,
                          scalar_t* g1, scalar_t* g2, Add add) {
  const scalar_t x0 = p0[0], y0 = p0[1], w0 = p0[3];
  const scalar_t x1 = p1[0], y1 = p1[1], w1 = p1[3];
  const scalar_t x2 = p2[0], y2 = p2[1], w2 = p2[3];
  const scalar_t px0 = x0 - fx * w0, py0 = y0 - fy * w0;
  const scalar_t px1 = x1 - fx * w1, py1 = y1 - fy * w1;
  const scalar_t px2 = x2 - fx * w2, py2 = y2 - fy * w2;
  const scalar_t a0 = px1 * py2 - py1 * px2, a1 = px2 * py0 - py2 * px0, a2 = px0 * py1 - py0 * px1;
  const scalar_t iw = scalar_t(1) / (a0 + a1 + a2);
  scalar_t u, v;  // forward values of u, v as emitted (clamped)
  rast_output_uv(a0, a1, iw, u, v);
  scalar_t ga0 = 0, ga1 = 0, giw = 0;
  scalar_t gx0 = 0, gy0 = 0, gw0 = 0, gx1 = 0, gy1 = 0, gw1 = 0, gx2 = 0, gy2 = 0, gw2 = 0;
  scalar_t gU = gu, gV = gv;
  if (gdb != nullptr) {
    const scalar_t e0x = y1 * w2 - y2 * w1, e1x = y2 * w0 - y0 * w2, e2x = y0 * w1 - y1 * w0;
    const scalar_t e0y = x2 * w1 - x1 * w2, e1y = x0 * w2 - x2 * w0, e2y = x1 * w0 - x0 * w1;
    const scalar_t etx = e0x + e1x + e2x, ety = e0y + e1y + e2y;
    const scalar_t xs = scalar_t(2) / scalar_t(W), ys = scalar_t(2) / scalar_t(H);
    const scalar_t sux = xs * gdb[0], suy = ys * gdb[1], svx = xs * gdb[2], svy = ys * gdb[3];
    // db0 = xs (e0x - u etx) iw, db1 = ys (e0y - u ety) iw, db2 = xs (e1x - v etx) iw, db3 = ys (e1y - v ety) iw
    const scalar_t ge0x = sux * iw, ge0y = suy * iw, ge1x = svx * iw, ge1y = svy * iw;
    const scalar_t getx = -(sux * u + svx * v) * iw, gety = -(suy * u + svy * v) * iw;
    gU -= (sux * etx + suy * ety) * iw;
    gV -= (svx * etx + svy * ety) * iw;
    giw += sux * (e0x - u * etx) + suy * (e0y - u * ety) + svx * (e1x - v * etx) + svy * (e1y - v * ety);
    const scalar_t gE0x = ge0x + getx, gE1x = ge1x + getx, gE2x = getx;
    const scalar_t gE0y = ge0y + gety, gE1y = ge1y + gety, gE2y = gety;
    // e0x = y1 w2 - y2 w1; e1x = y2 w0 - y0 w2; e2x = y0 w1 - y1 w0
    gy1 += gE0x * w2 - gE2x * w0;
    gy2 += -gE0x * w1 + gE1x * w0;
    gy0 += -gE1x * w2 + gE2x * w1;
    gw2 += gE0x * y1 - gE1x * y0;
    gw1 += -gE0x * y2 + gE2x * y0;
    gw0 += gE1x * y2 - gE2x * y1;
    // e0y = x2 w1 - x1 w2; e1y = x0 w2 - x2 w0; e2y = x1 w0 - x0 w1
    gx2 += gE0y * w1 - gE1y * w0;
    gx1 += -gE0y * w2 + gE2y * w0;
    gx0 += gE1y * w2 - gE2y * w1;
    gw1 += gE0y * x2 - gE2y * x0;
    gw2 += -gE0y * x1 + gE1y * x0;
    gw0 += -gE1y * x2 + gE2y * x1;
  }
  // u = a0 iw, v = a1 iw, iw = 1 / (a0 + a1 + a2)
  ga0 += gU * iw;
  ga1 += gV * iw;
  giw += gU * a0 + gV * a1;
  const scalar_t gat = -giw * iw * iw;
  ga0 += gat;
  ga1 += gat;
  const scalar_t ga2 = gat;
  // a0 = px1 py2 - py1 px2; a1 = px2 py0 - py2 px0; a2 = px0 py1 - py0 px1
  const scalar_t gpx0 = -ga1 * py2 + ga2 * py1, gpy0 = ga1 * px2 - ga2 * px1;
  const scalar_t gpx1 = ga0 * py2 - ga2 * py0, gpy1 = -ga0 * px2 + ga2 * px0;
  const scalar_t gpx2 = -ga0 * py1 + ga1 * py0, gpy2 = ga0 * px1 - ga1 * px0;
  // px_k = x_k - fx w_k; py_k = y_k - fy w_k
  add(g0 + 0, gx0 + gpx0);
  add(g0 + 1, gy0 + gpy0);
  add(g0 + 3, gw0 - fx * gpx0 - fy * gpy0);
  add(g1 + 0, gx1 + gpx1);
  add(g1 + 1, gy1 + gpy1);
  add(g1 + 3, gw1 - fx * gpx1 - fy * gpy1);
  add(g2 + 0, gx2 + gpx2);
  add(g2 + 1, gy2 + gpy2);
  add(g2 + 3, gw2 - fx * gpx2 - fy * gpy2);
}

// Triangle index of a rast pixel, or -1 for an empty pixel or an id that does not name a triangle of [0, F).
template <typename scalar_t>
OCC_HD int32_t rast_triangle(const scalar_t* rast_px, int64_t F) {
  const int64_t t = rast_to_triangle_id(rast_px[3]) - 1;
  return t >= 0 && t < F ? static_cast<int32_t>(t) : -1;
}

// Depth peeling: the (depth key << 32 | triangle) key of the fragment a previous layer's rast pixel holds. A later
// layer keeps only fragments with a larger key: strictly behind it, or at the same depth with a higher triangle id
// (so coincident triangles come out one per layer, in id order). An empty (or unreadable) previous pixel gives the
// largest key: nothing is drawn there again. rast_px[2] is the z/w the previous layer resolved, bit-equal to the
// depth its draw compared (the same expression on the same pixel centre).
template <typename scalar_t>
OCC_HD uint64_t rast_peel_key(const scalar_t* rast_px, int64_t F) {
  const int32_t t = rast_triangle(rast_px, F);
  const scalar_t z = rast_px[2];
  if (t < 0 || !rast_depth_visible(z)) return ~uint64_t(0);
  return (static_cast<uint64_t>(rast_depth_key(static_cast<float>(z))) << 32) | static_cast<uint32_t>(t);
}

// The three vertex indices of triangle t, read from tri; false when any lies outside [0, V). Every kernel that
// follows an index from tri goes through here and skips the triangle (or the pixel) on false, so no index reaches
// memory unchecked, whatever the callers checked (a stale range cache, a write that bypassed PyTorch, a direct
// torch.ops call). One unsigned compare per index.
OCC_HD bool rast_tri_vertices(const int32_t* tri, int64_t t, int64_t V, int64_t* v) {
  bool ok = true;
  for (int k = 0; k < 3; ++k) {
    const int32_t i = tri[3 * t + k];
    ok = ok & (static_cast<uint64_t>(static_cast<int64_t>(i)) < static_cast<uint64_t>(V));
    v[k] = ok ? i : 0;
  }
  return ok;
}

}  // namespace occ
