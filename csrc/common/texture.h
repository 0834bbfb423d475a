// Texture sampling (nvdiffrast's texture): per-pixel math for CPU and CUDA; 2D here, cube maps in texture_cube.h.
//
// Conventions (docs/rendering.md, "Texture sampling"):
//   tex level l: [Nt, h_l, w_l, C] row-major, h_l = max(H >> l, 1), w_l = max(W >> l, 1); row 0 at v = 0.
//   nearest:   texel (floor(u w), floor(v h)).
//   bilinear:  x = u w - 0.5, y = v h - 0.5 (texel centres at (i + 0.5) / w); taps (i0, j0), (i0 + 1, j0), ... with
//              i0 = floor(x), fu = x - i0; out = lerp(lerp(a00, a10, fu), lerp(a01, a11, fu), fv).
//   boundary:  wrap (u - floor(u) first, taps wrapped), clamp (x clamped to [0, w - 1]; a clamped axis reads one
//              texel, so its uv gradient is 0), zero (each tap outside the texture reads 0 and gets no gradient).
//   LOD:       footprint J = [[du/dX W, du/dY W], [dv/dX H, dv/dY H]] in base texels; lod = log2(largest singular
//              value of J) = 0.5 log2(l2b + sqrt(l2n)) (below), plus the bias; clamped to [0, Lmax] (NaN -> 0).
//              linear-mipmap-nearest samples level floor(lod); linear-mipmap-linear blends floor(lod) and the next
//              level by the fraction f (one level when f = 0).
// Non-finite uv (NaN, +-inf) and, in zero mode, a sample entirely outside the texture give 0 and no gradient:
// every tap index is inside the texture whatever the input (no out-of-bounds read, whatever the caller checked).
#pragma once

#include <cmath>
#include <type_traits>

#include "common/occ_hd.h"

namespace occ {

constexpr int kTexMaxLevels = 17;  // 65536 x 65536 down to 1 x 1
enum TexFilter : int { kTexNearest = 0, kTexLinear = 1, kTexLinearMipNearest = 2, kTexLinearMipLinear = 3 };
enum TexBoundary : int { kTexCube = 0, kTexWrap = 1, kTexClamp = 2, kTexZero = 3 };

// The mip stack seen by one kernel launch (levels[0] = the base texture). Passed by value to CUDA kernels.
template <typename T>
struct TexStack {
  T* level[kTexMaxLevels];
  int w[kTexMaxLevels], h[kTexMaxLevels];
  int levels;      // number of levels, >= 1
  int C;           // channels
  int shared;      // 1: one texture for every image (Nt == 1)
};

// std:: overloads (float stays float on the host; nvcc maps them to the device intrinsics).
template <typename T>
OCC_HD T tex_floor(T v) {
  using std::floor;
  return floor(v);
}

template <typename T>
OCC_HD T tex_sqrt(T v) {
  using std::sqrt;
  return sqrt(v);
}

template <typename T>
OCC_HD T tex_log2(T v) {
  using std::log2;
  return log2(v);
}

template <typename T>
OCC_HD bool tex_finite(T v) {
  return (v - v) == T(0);  // false for NaN and +-inf
}

template <typename T>
OCC_HD int tex_floor_int(T v) {  // v is finite and within int range (callers bound it)
  return static_cast<int>(tex_floor(v));
}

OCC_HD int tex_clampi(int i, int lo, int hi) { return i < lo ? lo : (i > hi ? hi : i); }

// The four bilinear taps of a sample at one level: element offsets (texel index * C) into the level's texture of
// that image, or -1 for a tap that reads 0 (zero mode); fractions fu, fv; whether each axis was clamped.
template <typename T>
struct TexTaps {
  int64_t off[4];  // 00, 10, 01, 11 (i varies fastest)
  T fu, fv;
  bool clamp_u, clamp_v;
};

// Returns false when the sample reads 0 with no gradient (non-finite uv, or entirely outside in zero mode).
template <int boundary, typename T>
OCC_HD bool tex_linear_taps(T u, T v, int w, int h, int C, TexTaps<T>& t) {
  if (!tex_finite(u) || !tex_finite(v)) return false;
  if (boundary == kTexWrap) {
    u = u - tex_floor(u);
    v = v - tex_floor(v);
  }
  T x = u * T(w) - T(0.5), y = v * T(h) - T(0.5);
  t.clamp_u = t.clamp_v = false;
  if (boundary == kTexClamp) {
    x = x < T(0) ? T(0) : (x > T(w - 1) ? T(w - 1) : x);
    y = y < T(0) ? T(0) : (y > T(h - 1) ? T(h - 1) : y);
    t.clamp_u = x == T(0) || x == T(w - 1);
    t.clamp_v = y == T(0) || y == T(h - 1);
  } else if (boundary == kTexZero) {
    if (!(x >= T(-1) && x <= T(w) && y >= T(-1) && y <= T(h))) return false;
  }
  const int i0 = tex_floor_int(x), j0 = tex_floor_int(y);
  t.fu = x - T(i0);
  t.fv = y - T(j0);
  int i[2] = {i0, i0 + (t.clamp_u ? 0 : 1)}, j[2] = {j0, j0 + (t.clamp_v ? 0 : 1)};
  bool in_i[2] = {true, true}, in_j[2] = {true, true};
  for (int k = 0; k < 2; ++k) {
    if (boundary == kTexWrap) {
      i[k] = i[k] < 0 ? i[k] + w : (i[k] >= w ? i[k] - w : i[k]);
      j[k] = j[k] < 0 ? j[k] + h : (j[k] >= h ? j[k] - h : j[k]);
    } else if (boundary == kTexZero) {
      in_i[k] = i[k] >= 0 && i[k] < w;
      in_j[k] = j[k] >= 0 && j[k] < h;
    }
    i[k] = tex_clampi(i[k], 0, w - 1);  // a no-op on valid input; keeps every read inside the texture
    j[k] = tex_clampi(j[k], 0, h - 1);
  }
  for (int b = 0; b < 2; ++b)
    for (int a = 0; a < 2; ++a)
      t.off[2 * b + a] = (in_i[a] && in_j[b]) ? (static_cast<int64_t>(j[b]) * w + i[a]) * C : int64_t(-1);
  return true;
}

// Nearest texel: element offset, or -1 (reads 0: non-finite uv, outside in zero mode).
template <int boundary, typename T>
OCC_HD int64_t tex_nearest_offset(T u, T v, int w, int h, int C) {
  if (!tex_finite(u) || !tex_finite(v)) return -1;
  if (boundary == kTexWrap) {
    u = u - tex_floor(u);
    v = v - tex_floor(v);
  }
  T x = u * T(w), y = v * T(h);
  if (boundary == kTexZero) {
    if (!(x >= T(0) && x < T(w) && y >= T(0) && y < T(h))) return -1;
  }
  x = x < T(0) ? T(0) : (x > T(w) ? T(w) : x);  // bound before the int conversion (clamp mode: any uv)
  y = y < T(0) ? T(0) : (y > T(h) ? T(h) : y);
  const int i = tex_clampi(tex_floor_int(x), 0, w - 1), j = tex_clampi(tex_floor_int(y), 0, h - 1);
  return (static_cast<int64_t>(j) * w + i) * C;
}

// Level of detail of a footprint uv_da = (du/dX, du/dY, dv/dX, dv/dY) at a W x H base level; with dlod != nullptr
// also d lod / d uv_da (zero where lod is not differentiable: a degenerate or exactly isotropic footprint).
template <typename T>
OCC_HD T tex_lod(const T* da, int W, int H, T* dlod) {
  const T a = da[0] * T(W), b = da[1] * T(W), c = da[2] * T(H), d = da[3] * T(H);
  const T A = a * a + c * c, B = b * b + d * d, Cc = a * b + c * d;
  const T l2b = T(0.5) * (A + B), hd = T(0.5) * (A - B);
  const T l2a = tex_sqrt(hd * hd + Cc * Cc);
  const T lam = l2b + l2a;  // largest eigenvalue of J^T J
  if (dlod != nullptr) {
    dlod[0] = dlod[1] = dlod[2] = dlod[3] = T(0);
    if (lam > T(0) && l2a > T(0) && tex_finite(lam)) {
      const T k = T(0.72134752044448170368) / lam;  // d(0.5 log2 lam) / d lam = 0.5 / (lam ln 2)
      const T g0 = k * (a + (a * hd + b * Cc) / l2a) * T(W);
      const T g1 = k * (b + (-b * hd + a * Cc) / l2a) * T(W);
      const T g2 = k * (c + (c * hd + d * Cc) / l2a) * T(H);
      const T g3 = k * (d + (-d * hd + c * Cc) / l2a) * T(H);
      if (tex_finite(g0) && tex_finite(g1) && tex_finite(g2) && tex_finite(g3)) {
        dlod[0] = g0;
        dlod[1] = g1;
        dlod[2] = g2;
        dlod[3] = g3;
      }
    }
  }
  return T(0.5) * tex_log2(lam);  // lam = 0: -inf (level 0)
}

// The levels a sample reads: L0, L1 and the blend fraction f (f > 0 only in linear-mipmap-linear), and
// d f / d lod (1 inside (0, Lmax), 0 where clamped).
template <typename T>
struct TexLevels {
  int l0, l1;
  T f, dfdl;
};

template <typename T>
OCC_HD TexLevels<T> tex_levels(int filter, T lod, int lmax) {
  TexLevels<T> r{0, 0, T(0), T(0)};
  if (filter != kTexLinearMipNearest && filter != kTexLinearMipLinear) return r;
  T lc = lod > T(0) ? lod : T(0);  // NaN -> 0
  lc = lc < T(lmax) ? lc : T(lmax);
  r.l0 = tex_clampi(tex_floor_int(lc), 0, lmax);
  if (filter == kTexLinearMipLinear) {
    r.f = lc - T(r.l0);
    r.l1 = r.l0 + 1 < lmax ? r.l0 + 1 : lmax;
    if (!(r.f > T(0)) || r.l1 == r.l0) r.f = T(0);
    r.dfdl = (r.f > T(0) && lod > T(0) && lod < T(lmax)) ? T(1) : T(0);
  } else {
    r.l1 = r.l0;
  }
  return r;
}

// The LOD of one pixel (uv_da and/or bias; nullptr where absent) and its levels; dlod as in tex_lod.
template <int filter, typename T>
OCC_HD TexLevels<T> tex_pixel_levels(const TexStack<T>& s, const T* da, const T* bias, T* dlod) {
  if (filter != kTexLinearMipNearest && filter != kTexLinearMipLinear) return TexLevels<T>{0, 0, T(0), T(0)};
  T lod = T(0);
  if (da != nullptr) lod = tex_lod(da, s.w[0], s.h[0], filter == kTexLinearMipLinear ? dlod : nullptr);
  if (bias != nullptr) lod += *bias;
  return tex_levels(filter, lod, s.levels - 1);
}

// A tap's channel c (only zero mode has taps that read 0).
template <int boundary, typename T>
OCC_HD T tex_tap(const T* base, int64_t off, int c) {
  if (boundary == kTexZero) return off >= 0 ? base[off + c] : T(0);
  return base[off + c];
}

// Bilinear sample of level l of image n into acc[c] += scale * value (C channels).
template <int boundary, int CC, typename T>
OCC_HD bool tex_bilinear_accumulate(const TexStack<T>& s, int l, int64_t n, T u, T v, T scale, T* acc) {
  TexTaps<T> t;
  const int w = s.w[l], h = s.h[l], C = CC > 0 ? CC : s.C;
  if (!tex_linear_taps<boundary>(u, v, w, h, C, t)) return false;
  const T* base = s.level[l] + (s.shared ? int64_t(0) : n) * static_cast<int64_t>(w) * h * C;
  for (int c = 0; c < C; ++c) {
    const T a00 = tex_tap<boundary>(base, t.off[0], c), a10 = tex_tap<boundary>(base, t.off[1], c);
    const T a01 = tex_tap<boundary>(base, t.off[2], c), a11 = tex_tap<boundary>(base, t.off[3], c);
    const T top = a00 + t.fu * (a10 - a00), bot = a01 + t.fu * (a11 - a01);
    acc[c] += scale * (top + t.fv * (bot - top));
  }
  return true;
}

// Forward for one pixel of image n: out[0..C).
template <int filter, int boundary, int CC, typename T>
OCC_HD void tex_forward_px(const TexStack<T>& s, int64_t n, T u, T v, const T* da, const T* bias, T* out) {
  const int C = CC > 0 ? CC : s.C;
  for (int c = 0; c < C; ++c) out[c] = T(0);
  if (filter == kTexNearest) {
    const int64_t off = tex_nearest_offset<boundary>(u, v, s.w[0], s.h[0], C);
    if (off < 0) return;
    const T* base = s.level[0] + (s.shared ? int64_t(0) : n) * static_cast<int64_t>(s.w[0]) * s.h[0] * C;
    for (int c = 0; c < C; ++c) out[c] = base[off + c];
    return;
  }
  const TexLevels<T> lv = tex_pixel_levels<filter>(s, da, bias, static_cast<T*>(nullptr));
  if (lv.f > T(0)) {  // (1 - f) A + f B
    tex_bilinear_accumulate<boundary, CC>(s, lv.l0, n, u, v, T(1) - lv.f, out);
    tex_bilinear_accumulate<boundary, CC>(s, lv.l1, n, u, v, lv.f, out);
    return;
  }
  tex_bilinear_accumulate<boundary, CC>(s, lv.l0, n, u, v, T(1), out);
}

// The bilinear weights of taps 00, 10, 01, 11 (nvdiffrast's order of operations).
template <typename T>
OCC_HD void tex_bilerp_weights(T fu, T fv, T* wt) {
  wt[3] = fu * fv;
  wt[1] = fu - wt[3];
  wt[2] = fv - wt[3];
  wt[0] = T(1) - fu - wt[2];
}

// One channel of a bilinear sample's reverse mode, taps a[4] = 00, 10, 01, 11 and incoming gradient d:
// su, sv += d * d value / d (fu, fv); sd += d * value.
template <typename T>
OCC_HD void tex_bilerp_grad(const T* a, T fu, T fv, T d, T& su, T& sv, T& sd) {
  const T cross = a[3] + a[0] - a[1] - a[2];
  su += d * ((a[1] - a[0]) + fv * cross);
  sv += d * ((a[2] - a[0]) + fu * cross);
  const T top = a[0] + fu * (a[1] - a[0]), bot = a[2] + fu * (a[3] - a[2]);
  sd += d * (top + fv * (bot - top));
}

// Reverse mode of one bilinear sample at level l scaled by `scale`: texture gradient through add(ptr, value) into
// g (the gradient stack, same shapes as s), (gu, gv) += d/d(u, v), and, with dot != nullptr, *dot += sum_c
// dy[c] value[c] (the sample's value against dy, for the LOD gradient).
template <int boundary, int CC, typename T, typename Add>
OCC_HD void tex_bilinear_backward(const TexStack<T>& s, const TexStack<T>& g, int l, int64_t n, T u, T v, T scale,
                                  const T* dy, T& gu, T& gv, T* dot, Add add) {
  TexTaps<T> t;
  const int w = s.w[l], h = s.h[l], C = CC > 0 ? CC : s.C;
  if (!tex_linear_taps<boundary>(u, v, w, h, C, t)) return;
  const int64_t img = (s.shared ? int64_t(0) : n) * static_cast<int64_t>(w) * h * C;
  const T* base = s.level[l] + img;
  T* gbase = g.level[l] != nullptr ? g.level[l] + img : nullptr;
  T wt[4];
  tex_bilerp_weights(t.fu, t.fv, wt);
  T su = 0, sv = 0, sd = 0;
  for (int c = 0; c < C; ++c) {
    const T a[4] = {tex_tap<boundary>(base, t.off[0], c), tex_tap<boundary>(base, t.off[1], c),
                    tex_tap<boundary>(base, t.off[2], c), tex_tap<boundary>(base, t.off[3], c)};
    tex_bilerp_grad(a, t.fu, t.fv, dy[c], su, sv, sd);
  }
  if (gbase != nullptr) {  // tap by tap: a texel's C channels are contiguous
    for (int k = 0; k < 4; ++k) {
      if (boundary == kTexZero && t.off[k] < 0) continue;
      const T sw = scale * wt[k];
      T* gk = gbase + t.off[k];
      for (int c = 0; c < C; ++c) add(gk + c, sw * dy[c]);
    }
  }
  if (!t.clamp_u) gu += scale * su * T(w);
  if (!t.clamp_v) gv += scale * sv * T(h);
  if (dot != nullptr) *dot += sd;
}

// Reverse mode of one pixel: texture gradients (add), and the pixel's guv[2], gda[4] (when da), gbias (when bias).
template <int filter, int boundary, int CC, typename T, typename Add>
OCC_HD void tex_backward_px(const TexStack<T>& s, const TexStack<T>& g, int64_t n, T u, T v, const T* da,
                            const T* bias, const T* dy, T* guv, T* gda, T* gbias, Add add) {
  const int C = CC > 0 ? CC : s.C;
  guv[0] = guv[1] = T(0);
  if (gda != nullptr) gda[0] = gda[1] = gda[2] = gda[3] = T(0);
  if (gbias != nullptr) *gbias = T(0);
  bool any = false;
  for (int c = 0; c < C; ++c) any = any || dy[c] != T(0);
  if (!any) return;
  if (filter == kTexNearest) {
    const int64_t off = tex_nearest_offset<boundary>(u, v, s.w[0], s.h[0], C);
    if (off < 0 || g.level[0] == nullptr) return;
    T* gbase = g.level[0] + (s.shared ? int64_t(0) : n) * static_cast<int64_t>(s.w[0]) * s.h[0] * C;
    for (int c = 0; c < C; ++c)
      if (dy[c] != T(0)) add(gbase + off + c, dy[c]);
    return;
  }
  T dlod[4] = {T(0), T(0), T(0), T(0)};
  const TexLevels<T> lv = tex_pixel_levels<filter>(s, da, bias, dlod);
  T gu = 0, gv = 0;
  if (lv.f > T(0)) {
    T va = 0, vb = 0;
    tex_bilinear_backward<boundary, CC>(s, g, lv.l0, n, u, v, T(1) - lv.f, dy, gu, gv, &va, add);
    tex_bilinear_backward<boundary, CC>(s, g, lv.l1, n, u, v, lv.f, dy, gu, gv, &vb, add);
    const T df = (vb - va) * lv.dfdl;  // d loss / d lod
    if (gbias != nullptr) *gbias = df;
    if (gda != nullptr && da != nullptr)
      for (int k = 0; k < 4; ++k) gda[k] = df * dlod[k];
  } else {
    tex_bilinear_backward<boundary, CC>(s, g, lv.l0, n, u, v, T(1), dy, gu, gv, static_cast<T*>(nullptr), add);
  }
  guv[0] = gu;
  guv[1] = gv;
}

}  // namespace occ

#include "common/texture_cube.h"

namespace occ {

// One pixel of any boundary mode: uv / uv_da / guv / gda strides 2 / 4 in 2D and 3 / 6 for cube maps.
template <int boundary>
constexpr int kTexUV = boundary == kTexCube ? 3 : 2;
template <int boundary>
constexpr int kTexDA = boundary == kTexCube ? 6 : 4;

template <int filter, int boundary, int CC, typename T>
OCC_HD void tex_forward_any(const TexStack<T>& s, int64_t n, const T* uv, const T* da, const T* bias, T* out) {
  if constexpr (boundary == kTexCube)
    cube_forward_px<filter, CC>(s, n, uv, da, bias, out);
  else
    tex_forward_px<filter, boundary, CC>(s, n, uv[0], uv[1], da, bias, out);
}

template <int filter, int boundary, int CC, typename T, typename Add>
OCC_HD void tex_backward_any(const TexStack<T>& s, const TexStack<T>& g, int64_t n, const T* uv, const T* da,
                             const T* bias, const T* dy, T* guv, T* gda, T* gbias, Add add) {
  if constexpr (boundary == kTexCube)
    cube_backward_px<filter, CC>(s, g, n, uv, da, bias, dy, guv, gda, gbias, add);
  else
    tex_backward_px<filter, boundary, CC>(s, g, n, uv[0], uv[1], da, bias, dy, guv, gda, gbias, add);
}

// Calls fn(std::integral_constant<int, filter>{}, std::integral_constant<int, boundary>{}) (host side: the kernels
// are instantiated per mode, so the per-pixel code has no mode branches).
template <int F, typename Fn>
void tex_dispatch_boundary(int boundary, Fn&& fn) {
  switch (boundary) {
    case kTexClamp: fn(std::integral_constant<int, F>{}, std::integral_constant<int, kTexClamp>{}); break;
    case kTexZero: fn(std::integral_constant<int, F>{}, std::integral_constant<int, kTexZero>{}); break;
    case kTexCube: fn(std::integral_constant<int, F>{}, std::integral_constant<int, kTexCube>{}); break;
    default: fn(std::integral_constant<int, F>{}, std::integral_constant<int, kTexWrap>{}); break;
  }
}

// ... and with the channel count as a third constant (1 to 4; 0 = any, read from the stack at run time).
template <typename Fn>
void tex_dispatch_channels(int channels, Fn&& fn) {
  switch (channels) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 3: fn(std::integral_constant<int, 3>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    default: fn(std::integral_constant<int, 0>{}); break;
  }
}

template <typename Fn>
void tex_dispatch(int filter, int boundary, Fn&& fn) {
  switch (filter) {
    case kTexNearest: tex_dispatch_boundary<kTexNearest>(boundary, fn); break;
    case kTexLinearMipNearest: tex_dispatch_boundary<kTexLinearMipNearest>(boundary, fn); break;
    case kTexLinearMipLinear: tex_dispatch_boundary<kTexLinearMipLinear>(boundary, fn); break;
    default: tex_dispatch_boundary<kTexLinear>(boundary, fn); break;
  }
}

}  // namespace occ
