// Attribute interpolation over a rasterized image (nvdiffrast's interpolate): per-element math for CPU and CUDA.
//
//   out[c]  = u A0[c] + v A1[c] + (1 - u - v) A2[c]            (0 on empty pixels)
//   out_da  = for each selected attribute c, (dA/dX, dA/dY) = ((A0-A2) du/dX + (A1-A2) dv/dX,
//                                                            (A0-A2) du/dY + (A1-A2) dv/dY)
// with (u, v) from rast and (du/dX, du/dY, dv/dX, dv/dY) from rast_db.
#pragma once

#include "common/rasterize.h"  // rast_triangle

namespace occ {

template <typename scalar_t>
OCC_HD void interp_forward(const scalar_t* rast_px, const scalar_t* db_px /* or nullptr */, const scalar_t* a0,
                           const scalar_t* a1, const scalar_t* a2, int C, const int32_t* diff, int nd,
                           scalar_t* out, scalar_t* out_da) {
  const scalar_t u = rast_px[0], v = rast_px[1], w = scalar_t(1) - u - v;
  for (int c = 0; c < C; ++c) out[c] = u * a0[c] + v * a1[c] + w * a2[c];
  for (int k = 0; k < nd; ++k) {
    const int c = diff[k];
    const scalar_t d0 = a0[c] - a2[c], d1 = a1[c] - a2[c];
    out_da[2 * k] = d0 * db_px[0] + d1 * db_px[2];
    out_da[2 * k + 1] = d0 * db_px[1] + d1 * db_px[3];
  }
}

// Reverse mode for one covered pixel. Accumulates into the attribute gradients ga0, ga1, ga2 (C wide) with
// add(ptr, value) and writes the pixel's rast gradient (gu, gv, 0, 0) and, when nd > 0, its rast_db gradient.
template <typename scalar_t, typename Add>
OCC_HD void interp_backward(const scalar_t* rast_px, const scalar_t* db_px, const scalar_t* a0, const scalar_t* a1,
                            const scalar_t* a2, int C, const int32_t* diff, int nd, const scalar_t* g_out,
                            const scalar_t* g_da /* 2 nd or nullptr */, scalar_t* ga0, scalar_t* ga1, scalar_t* ga2,
                            scalar_t* g_rast_px, scalar_t* g_db_px /* or nullptr */, Add add) {
  const scalar_t u = rast_px[0], v = rast_px[1], w = scalar_t(1) - u - v;
  scalar_t gu = 0, gv = 0;
  for (int c = 0; c < C; ++c) {
    const scalar_t g = g_out[c];
    add(ga0 + c, u * g);
    add(ga1 + c, v * g);
    add(ga2 + c, w * g);
    gu += g * (a0[c] - a2[c]);
    gv += g * (a1[c] - a2[c]);
  }
  g_rast_px[0] = gu;
  g_rast_px[1] = gv;
  g_rast_px[2] = 0;
  g_rast_px[3] = 0;
  if (nd > 0 && g_da != nullptr) {
    scalar_t gdudx = 0, gdudy = 0, gdvdx = 0, gdvdy = 0;
    for (int k = 0; k < nd; ++k) {
      const int c = diff[k];
      const scalar_t gx = g_da[2 * k], gy = g_da[2 * k + 1];
      const scalar_t d0 = a0[c] - a2[c], d1 = a1[c] - a2[c];
      gdudx += gx * d0;
      gdvdx += gx * d1;
      gdudy += gy * d0;
      gdvdy += gy * d1;
      const scalar_t g0 = gx * db_px[0] + gy * db_px[1];  // d/dA0 (and -d/dA2) through d0
      const scalar_t g1 = gx * db_px[2] + gy * db_px[3];  // d/dA1 (and -d/dA2) through d1
      add(ga0 + c, g0);
      add(ga1 + c, g1);
      add(ga2 + c, -(g0 + g1));
    }
    g_db_px[0] = gdudx;
    g_db_px[1] = gdudy;
    g_db_px[2] = gdvdx;
    g_db_px[3] = gdvdy;
  } else if (g_db_px != nullptr) {
    g_db_px[0] = g_db_px[1] = g_db_px[2] = g_db_px[3] = 0;
  }
}

}  // namespace occ
