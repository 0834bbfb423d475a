// Cube-map texture sampling (nvdiffrast's boundary_mode='cube'): per-pixel math for CPU and CUDA, included by
// common/texture.h. A cube level is [Nt, 6, S, S, C] (faces +X, -X, +Y, -Y, +Z, -Z); uv is a direction (x, y, z),
// uv_da its image-space derivatives (dx/dX, dx/dY, dy/dX, dy/dY, dz/dX, dz/dY).
//
//   face:    the major axis (|z| > max(|x|, |y|): Z; else |y| > |x|: Y; else X), minus face for a negative component;
//   (s, t):  s = 0.5 + ss u1 / (2 |m|), t = 0.5 + st u2 / (2 |m|), m the major component, (u1, u2) the face's
//            in-plane components with the signs of the table below (OpenGL's cube-map convention; t = row);
//   taps:    bilinear as in 2D on the face's S x S texels (s, t clamped to [0, 1]); a tap one texel beyond an edge
//            reads the neighbouring face's edge texel at the same place along the edge (the tap's centre on the
//            face's extended plane folded over the edge); a tap beyond a corner has no texel and reads the average
//            of the other three (its gradient split evenly between them);
//   LOD:     the footprint (ds/dX, ds/dY, dt/dX, dt/dY) from uv_da through the face's (s, t) Jacobian, then the 2D
//            formula with W = H = S.
// A direction whose (s, t) is not finite (zero, NaN, inf) reads 0 with no gradient.
#pragma once

namespace occ {

// Per face: major axis a, its sign, in-plane axes (is, it) and signs (ss, st) of s and t.
OCC_HD void cube_face_axes(int f, int& a, int& sign, int& is, int& ss, int& it, int& st) {
  switch (f) {
    case 0: a = 0; sign = 1; is = 2; ss = -1; it = 1; st = -1; break;   // +X
    case 1: a = 0; sign = -1; is = 2; ss = 1; it = 1; st = -1; break;   // -X
    case 2: a = 1; sign = 1; is = 0; ss = 1; it = 2; st = 1; break;     // +Y
    case 3: a = 1; sign = -1; is = 0; ss = 1; it = 2; st = -1; break;   // -Y
    case 4: a = 2; sign = 1; is = 0; ss = 1; it = 1; st = -1; break;    // +Z
    default: a = 2; sign = -1; is = 0; ss = -1; it = 1; st = -1; break; // -Z
  }
}

template <typename T>
struct CubeCoord {
  int face, a, is, it;
  T ss, st, m, u1, u2, s, t;  // signs, major component, in-plane components, face coordinates (unclamped)
};

template <typename T>
OCC_HD bool cube_coord(T x, T y, T z, CubeCoord<T>& c) {
  const T ax = x < T(0) ? -x : x, ay = y < T(0) ? -y : y, az = z < T(0) ? -z : z;
  const T d[3] = {x, y, z};
  int axis = 0;
  if (az > (ax > ay ? ax : ay)) axis = 2;
  else if (ay > ax) axis = 1;
  c.face = 2 * axis + (d[axis] < T(0) ? 1 : 0);
  int sign, ss, st;
  cube_face_axes(c.face, c.a, sign, c.is, ss, c.it, st);
  c.ss = T(ss);
  c.st = T(st);
  c.m = d[c.a];
  c.u1 = d[c.is];
  c.u2 = d[c.it];
  const T am = c.m < T(0) ? -c.m : c.m;
  c.s = T(0.5) + c.ss * c.u1 / (T(2) * am);
  c.t = T(0.5) + c.st * c.u2 / (T(2) * am);
  return tex_finite(c.s) && tex_finite(c.t);
}

constexpr int64_t kCubeCorner = -2;  // a tap beyond a corner (no texel)

// Element offset (within one image's 6 S S C block) of tap (i, j), i, j in [-1, S], of face f at size S.
template <typename T>
OCC_HD int64_t cube_tap_offset(int f, int i, int j, int S, int C) {
  const bool in_i = i >= 0 && i < S, in_j = j >= 0 && j < S;
  if (in_i && in_j) return ((static_cast<int64_t>(f) * S + j) * S + i) * C;
  if (!in_i && !in_j) return kCubeCorner;
  int a, sign, is, ss, it, st;
  cube_face_axes(f, a, sign, is, ss, it, st);
  // the tap's centre on the face's extended plane (major component = sign), then folded over the edge it is beyond
  T d[3];
  const T q1 = (T(2) * (T(i) + T(0.5)) / T(S) - T(1)) * T(ss);
  const T q2 = (T(2) * (T(j) + T(0.5)) / T(S) - T(1)) * T(st);
  d[a] = T(sign);
  d[is] = q1;
  d[it] = q2;
  const int out = in_i ? it : is;
  const T q = d[out], aq = q < T(0) ? -q : q;
  d[out] = q < T(0) ? T(-1) : T(1);
  d[a] = T(sign) * (T(2) - aq);
  CubeCoord<T> c;
  cube_coord(d[0], d[1], d[2], c);
  const int i2 = tex_clampi(tex_floor_int(c.s * T(S)), 0, S - 1), j2 = tex_clampi(tex_floor_int(c.t * T(S)), 0, S - 1);
  return ((static_cast<int64_t>(c.face) * S + j2) * S + i2) * C;
}

template <typename T>
struct CubeTaps {
  int64_t off[4];  // 00, 10, 01, 11; kCubeCorner for a missing corner tap
  T fu, fv;
};

template <typename T>
OCC_HD void cube_linear_taps(const CubeCoord<T>& c, int S, int C, CubeTaps<T>& t) {
  const T s = c.s < T(0) ? T(0) : (c.s > T(1) ? T(1) : c.s), tt = c.t < T(0) ? T(0) : (c.t > T(1) ? T(1) : c.t);
  const T x = s * T(S) - T(0.5), y = tt * T(S) - T(0.5);
  const int i0 = tex_floor_int(x), j0 = tex_floor_int(y);
  t.fu = x - T(i0);
  t.fv = y - T(j0);
  for (int b = 0; b < 2; ++b)
    for (int a = 0; a < 2; ++a) t.off[2 * b + a] = cube_tap_offset<T>(c.face, i0 + a, j0 + b, S, C);
}

// The four tap values of channel ch (a missing corner = the mean of the other three).
template <typename T>
OCC_HD void cube_tap_values(const T* base, const CubeTaps<T>& t, int ch, T* a) {
  int corner = -1;
  T sum = T(0);
  for (int k = 0; k < 4; ++k) {
    if (t.off[k] == kCubeCorner) {
      corner = k;
      a[k] = T(0);
    } else {
      a[k] = base[t.off[k] + ch];
      sum += a[k];
    }
  }
  if (corner >= 0) a[corner] = sum * T(1.0 / 3.0);
}

template <int CC, typename T>
OCC_HD void cube_bilinear_accumulate(const TexStack<T>& s, int l, int64_t n, const CubeCoord<T>& c, T scale, T* acc) {
  const int S = s.w[l], C = CC > 0 ? CC : s.C;
  CubeTaps<T> t;
  cube_linear_taps(c, S, C, t);
  const T* base = s.level[l] + (s.shared ? int64_t(0) : n) * int64_t(6) * S * S * C;
  for (int ch = 0; ch < C; ++ch) {
    T a[4];
    cube_tap_values(base, t, ch, a);
    const T top = a[0] + t.fu * (a[1] - a[0]), bot = a[2] + t.fu * (a[3] - a[2]);
    acc[ch] += scale * (top + t.fv * (bot - top));
  }
}

// Reverse of one bilinear cube sample: texture gradients (add), d/ds and d/dt (per unit of s and t) into gs, gt,
// and the sample's value against dy into *dot (when not nullptr).
template <int CC, typename T, typename Add>
OCC_HD void cube_bilinear_backward(const TexStack<T>& s, const TexStack<T>& g, int l, int64_t n, const CubeCoord<T>& c,
                                   T scale, const T* dy, T& gs, T& gt, T* dot, Add add) {
  const int S = s.w[l], C = CC > 0 ? CC : s.C;
  CubeTaps<T> t;
  cube_linear_taps(c, S, C, t);
  const int64_t img = (s.shared ? int64_t(0) : n) * int64_t(6) * S * S * C;
  const T* base = s.level[l] + img;
  T* gbase = g.level[l] != nullptr ? g.level[l] + img : nullptr;
  T wt[4];
  tex_bilerp_weights(t.fu, t.fv, wt);
  T su = 0, sv = 0, sd = 0;
  for (int ch = 0; ch < C; ++ch) {
    T a[4];
    cube_tap_values(base, t, ch, a);
    tex_bilerp_grad(a, t.fu, t.fv, dy[ch], su, sv, sd);
  }
  if (gbase != nullptr) {  // tap by tap; a missing corner's weight goes a third to each other tap
    T corner_w = T(0);
    for (int k = 0; k < 4; ++k)
      if (t.off[k] == kCubeCorner) corner_w = scale * wt[k] * T(1.0 / 3.0);
    for (int k = 0; k < 4; ++k) {
      if (t.off[k] == kCubeCorner) continue;
      const T sw = scale * wt[k], cw = corner_w;
      T* gk = gbase + t.off[k];
      for (int ch = 0; ch < C; ++ch) add(gk + ch, sw * dy[ch] + cw * dy[ch]);
    }
  }
  gs += scale * su * T(S);
  gt += scale * sv * T(S);
  if (dot != nullptr) *dot += sd;
}

// The face footprint (ds/dX, ds/dY, dt/dX, dt/dY) of a direction footprint da6 (x, y, z derivatives by X, Y).
template <typename T>
OCC_HD void cube_footprint(const CubeCoord<T>& c, const T* da6, T* st4) {
  const T am = c.m < T(0) ? -c.m : c.m, sg = c.m < T(0) ? T(-1) : T(1), m2 = c.m * c.m;
  for (int k = 0; k < 2; ++k) {  // k = 0: d/dX, 1: d/dY
    const T dm = da6[2 * c.a + k], d1 = da6[2 * c.is + k], d2 = da6[2 * c.it + k];
    st4[k] = c.ss * (d1 / (T(2) * am) - c.u1 * sg * dm / (T(2) * m2));
    st4[2 + k] = c.st * (d2 / (T(2) * am) - c.u2 * sg * dm / (T(2) * m2));
  }
}

template <int filter, typename T>
OCC_HD TexLevels<T> cube_pixel_levels(const TexStack<T>& s, const CubeCoord<T>& c, const T* da6, const T* bias,
                                      T* st4, T* dlod) {
  if (filter != kTexLinearMipNearest && filter != kTexLinearMipLinear) return TexLevels<T>{0, 0, T(0), T(0)};
  T lod = T(0);
  if (da6 != nullptr) {
    cube_footprint(c, da6, st4);
    bool ok = true;
    for (int k = 0; k < 4; ++k) ok = ok && tex_finite(st4[k]);
    if (!ok)
      for (int k = 0; k < 4; ++k) st4[k] = T(0);  // -> lod = -inf -> level 0
    lod = tex_lod(st4, s.w[0], s.w[0], filter == kTexLinearMipLinear ? dlod : nullptr);
  }
  if (bias != nullptr) lod += *bias;
  return tex_levels(filter, lod, s.levels - 1);
}

template <int filter, int CC, typename T>
OCC_HD void cube_forward_px(const TexStack<T>& s, int64_t n, const T* dir, const T* da6, const T* bias, T* out) {
  const int C = CC > 0 ? CC : s.C;
  for (int ch = 0; ch < C; ++ch) out[ch] = T(0);
  CubeCoord<T> c;
  if (!cube_coord(dir[0], dir[1], dir[2], c)) return;
  if (filter == kTexNearest) {
    const int S = s.w[0];
    const T ss = c.s < T(0) ? T(0) : (c.s > T(1) ? T(1) : c.s), tt = c.t < T(0) ? T(0) : (c.t > T(1) ? T(1) : c.t);
    const int i = tex_clampi(tex_floor_int(ss * T(S)), 0, S - 1), j = tex_clampi(tex_floor_int(tt * T(S)), 0, S - 1);
    const T* base = s.level[0] + (s.shared ? int64_t(0) : n) * int64_t(6) * S * S * C;
    const int64_t off = ((static_cast<int64_t>(c.face) * S + j) * S + i) * C;
    for (int ch = 0; ch < C; ++ch) out[ch] = base[off + ch];
    return;
  }
  T st4[4];
  const TexLevels<T> lv = cube_pixel_levels<filter>(s, c, da6, bias, st4, static_cast<T*>(nullptr));
  if (lv.f > T(0)) {
    cube_bilinear_accumulate<CC>(s, lv.l0, n, c, T(1) - lv.f, out);
    cube_bilinear_accumulate<CC>(s, lv.l1, n, c, lv.f, out);
    return;
  }
  cube_bilinear_accumulate<CC>(s, lv.l0, n, c, T(1), out);
}

template <int filter, int CC, typename T, typename Add>
OCC_HD void cube_backward_px(const TexStack<T>& s, const TexStack<T>& g, int64_t n, const T* dir, const T* da6,
                             const T* bias, const T* dy, T* gdir, T* gda6, T* gbias, Add add) {
  const int C = CC > 0 ? CC : s.C;
  gdir[0] = gdir[1] = gdir[2] = T(0);
  if (gda6 != nullptr)
    for (int k = 0; k < 6; ++k) gda6[k] = T(0);
  if (gbias != nullptr) *gbias = T(0);
  bool any = false;
  for (int ch = 0; ch < C; ++ch) any = any || dy[ch] != T(0);
  CubeCoord<T> c;
  if (!any || !cube_coord(dir[0], dir[1], dir[2], c)) return;
  const int S = s.w[0];
  if (filter == kTexNearest) {
    if (g.level[0] == nullptr) return;
    const T ss = c.s < T(0) ? T(0) : (c.s > T(1) ? T(1) : c.s), tt = c.t < T(0) ? T(0) : (c.t > T(1) ? T(1) : c.t);
    const int i = tex_clampi(tex_floor_int(ss * T(S)), 0, S - 1), j = tex_clampi(tex_floor_int(tt * T(S)), 0, S - 1);
    T* gbase = g.level[0] + (s.shared ? int64_t(0) : n) * int64_t(6) * S * S * C;
    const int64_t off = ((static_cast<int64_t>(c.face) * S + j) * S + i) * C;
    for (int ch = 0; ch < C; ++ch)
      if (dy[ch] != T(0)) add(gbase + off + ch, dy[ch]);
    return;
  }
  T st4[4] = {T(0), T(0), T(0), T(0)}, dlod[4] = {T(0), T(0), T(0), T(0)};
  const TexLevels<T> lv = cube_pixel_levels<filter>(s, c, da6, bias, st4, dlod);
  T gs = 0, gt = 0, df = 0;
  if (lv.f > T(0)) {
    T va = 0, vb = 0;
    cube_bilinear_backward<CC>(s, g, lv.l0, n, c, T(1) - lv.f, dy, gs, gt, &va, add);
    cube_bilinear_backward<CC>(s, g, lv.l1, n, c, lv.f, dy, gs, gt, &vb, add);
    df = (vb - va) * lv.dfdl;
    if (gbias != nullptr) *gbias = df;
  } else {
    cube_bilinear_backward<CC>(s, g, lv.l0, n, c, T(1), dy, gs, gt, static_cast<T*>(nullptr), add);
  }
  // d loss / d direction through (s, t) of the fixed face (the [0, 1] clamp ignored)
  const T am = c.m < T(0) ? -c.m : c.m, sg = c.m < T(0) ? T(-1) : T(1), m2 = c.m * c.m, m3 = m2 * am;
  T g1 = gs * c.ss / (T(2) * am), g2 = gt * c.st / (T(2) * am);
  T gm = -(gs * c.ss * c.u1 + gt * c.st * c.u2) * sg / (T(2) * m2);
  T gd6[6] = {T(0), T(0), T(0), T(0), T(0), T(0)};
  if (df != T(0) && da6 != nullptr) {
    // through the footprint: st4 = J(direction) da6; g4 = d loss / d st4
    T g4[4];
    for (int k = 0; k < 4; ++k) g4[k] = df * dlod[k];
    for (int k = 0; k < 2; ++k) {
      const T dm = da6[2 * c.a + k], d1 = da6[2 * c.is + k], d2 = da6[2 * c.it + k];
      const T gS = g4[k], gT = g4[2 + k];
      // st4[k] = ss (d1 / (2|m|) - u1 sg dm / (2 m^2)), st4[2 + k] = st (d2 / (2|m|) - u2 sg dm / (2 m^2))
      g1 += gS * c.ss * (-sg * dm / (T(2) * m2));
      g2 += gT * c.st * (-sg * dm / (T(2) * m2));
      gm += gS * c.ss * (-d1 * sg / (T(2) * m2) + c.u1 * dm / m3) +  // (m3 = |m|^3)
            gT * c.st * (-d2 * sg / (T(2) * m2) + c.u2 * dm / m3);
      gd6[2 * c.is + k] += gS * c.ss / (T(2) * am);
      gd6[2 * c.it + k] += gT * c.st / (T(2) * am);
      gd6[2 * c.a + k] += -(gS * c.ss * c.u1 + gT * c.st * c.u2) * sg / (T(2) * m2);
    }
  }
  T gx[3] = {T(0), T(0), T(0)};
  gx[c.is] += g1;
  gx[c.it] += g2;
  gx[c.a] += gm;
  if (tex_finite(gx[0]) && tex_finite(gx[1]) && tex_finite(gx[2])) {
    gdir[0] = gx[0];
    gdir[1] = gx[1];
    gdir[2] = gx[2];
  }
  if (gda6 != nullptr && da6 != nullptr) {
    bool ok = true;
    for (int k = 0; k < 6; ++k) ok = ok && tex_finite(gd6[k]);
    if (ok)
      for (int k = 0; k < 6; ++k) gda6[k] = gd6[k];
  }
}

}  // namespace occ
