// Spherical-harmonics (SH) Lambertian shading, Deep3D's convention: per-element math shared by CPU and CUDA.
//
// For a normal n = (x, y, z), an albedo a = (a_R, a_G, a_B) and 27 lighting coefficients gamma[k][c] (band
// function k = 0..8, colour c = R, G, B; stored k-major, gamma[k * 3 + c]) the shaded colour is
//     out_c = a_c * sum_k gamma[k][c] * Y_k(n).
// The basis folds Deep3D's Lambertian constants a = [pi, 2 pi / sqrt(3), 2 pi / sqrt(8)] and
// c = [1 / sqrt(4 pi), sqrt(3) / sqrt(4 pi), 3 sqrt(5) / sqrt(12 pi)] into the real SH functions, in Deep3D's
// order and signs (K0 = a0 c0, K1 = a1 c1, K2 = a2 c2):
//     Y0 =  K0                      K0 = sqrt(pi) / 2
//     Y1 = -K1 y                    K1 = sqrt(pi)
//     Y2 =  K1 z
//     Y3 = -K1 x
//     Y4 =  K2 x y                  K2 = sqrt(15 pi / 8)
//     Y5 = -K2 y z
//     Y6 =  K2 / (2 sqrt 3) (3 z^2 - 1)
//     Y7 = -K2 x z
//     Y8 =  K2 / 2 (x^2 - y^2)
// n is used as given (no normalisation): callers pass unit normals. For a non-unit n the formulas above are
// still evaluated as polynomials in (x, y, z) (Y6 then is no longer the SH function of the direction).
//
// Backward for one element with upstream gradient go_c:
//     d/d a_c          = go_c * s_c,          s_c = sum_k gamma[k][c] Y_k
//     d/d gamma[k][c] += go_c * a_c * Y_k     (summed over the elements of one batch entry by the caller)
//     d/d n            = sum_k h_k grad Y_k,  h_k = sum_c go_c a_c gamma[k][c]
#pragma once

#include "common/occ_hd.h"

namespace occ {

constexpr double kShK0 = 0.8862269254527579;   // pi * 1 / sqrt(4 pi)
constexpr double kShK1 = 1.772453850905516;    // (2 pi / sqrt 3) * (sqrt 3 / sqrt(4 pi))
constexpr double kShK2 = 2.4270323906946243;   // (2 pi / sqrt 8) * (3 sqrt 5 / sqrt(12 pi))
constexpr double kShK6 = 0.7006239020497412;   // K2 / (2 sqrt 3)
constexpr double kShK8 = 1.2135161953473121;   // K2 / 2

template <typename S>
OCC_HD void sh_basis(S x, S y, S z, S* __restrict__ Y) {
  Y[0] = S(kShK0);
  Y[1] = -S(kShK1) * y;
  Y[2] = S(kShK1) * z;
  Y[3] = -S(kShK1) * x;
  Y[4] = S(kShK2) * (x * y);
  Y[5] = -S(kShK2) * (y * z);
  Y[6] = S(kShK6) * (S(3) * (z * z) - S(1));
  Y[7] = -S(kShK2) * (x * z);
  Y[8] = S(kShK8) * (x * x - y * y);
}

// out[0..2] = albedo (.) (gamma^T Y(n)); n, albedo, out: 3 values; gamma: 27 values, k-major.
template <typename S>
OCC_HD void sh_shade_element(const S* __restrict__ n, const S* __restrict__ albedo, const S* __restrict__ gamma,
                             S* __restrict__ out) {
  S Y[9];
  sh_basis(n[0], n[1], n[2], Y);
  for (int c = 0; c < 3; ++c) {
    S s = S(0);
    for (int k = 0; k < 9; ++k) s += gamma[k * 3 + c] * Y[k];
    out[c] = albedo[c] * s;
  }
}

// Per-element gradients. grad_n and grad_albedo are written (3 values each; grad_albedo is added to when
// accumulate_albedo is true, for an albedo shared by the batch); grad_gamma (27 values) is added to.
template <typename S>
OCC_HD void sh_shade_backward_element(const S* __restrict__ go, const S* __restrict__ n,
                                      const S* __restrict__ albedo, const S* __restrict__ gamma,
                                      S* __restrict__ grad_n, S* __restrict__ grad_albedo, bool accumulate_albedo,
                                      S* __restrict__ grad_gamma) {
  const S x = n[0], y = n[1], z = n[2];
  S Y[9];
  sh_basis(x, y, z, Y);
  S w[3];
  for (int c = 0; c < 3; ++c) {
    S s = S(0);
    for (int k = 0; k < 9; ++k) s += gamma[k * 3 + c] * Y[k];
    const S ga = go[c] * s;
    grad_albedo[c] = accumulate_albedo ? grad_albedo[c] + ga : ga;
    w[c] = go[c] * albedo[c];
  }
  S h[9];
  for (int k = 0; k < 9; ++k) {
    h[k] = w[0] * gamma[k * 3 + 0] + w[1] * gamma[k * 3 + 1] + w[2] * gamma[k * 3 + 2];
    for (int c = 0; c < 3; ++c) grad_gamma[k * 3 + c] += w[c] * Y[k];
  }
  const S k1 = S(kShK1), k2 = S(kShK2), k6x2 = S(2 * kShK6) * S(3), k8x2 = S(2 * kShK8);
  // d/dx: Y3 -K1, Y4 K2 y, Y7 -K2 z, Y8 2 K8 x
  grad_n[0] = -k1 * h[3] + k2 * (y * h[4] - z * h[7]) + k8x2 * x * h[8];
  // d/dy: Y1 -K1, Y4 K2 x, Y5 -K2 z, Y8 -2 K8 y
  grad_n[1] = -k1 * h[1] + k2 * (x * h[4] - z * h[5]) - k8x2 * y * h[8];
  // d/dz: Y2 K1, Y5 -K2 y, Y6 6 K6 z, Y7 -K2 x
  grad_n[2] = k1 * h[2] - k2 * (y * h[5] + x * h[7]) + k6x2 * z * h[6];
}

}  // namespace occ
