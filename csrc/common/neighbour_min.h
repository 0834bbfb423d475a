// Neighbourhood-min distance (eq. 1 of "To fit or not to fit"): per-element math, shared by CPU and CUDA.
//
// For an image pair T (target), R (render), both C planes of H x W (channel-planar, contiguous), and a pixel
// p = (y, x), the candidates are the pixels q = (y + dy, x + dx) with |dy|, |dx| <= r = k / 2 that lie inside
// the image and, when a region mask is given, inside the region. The result is
//     d2(p)  = min_q sum_c (T(c, p) - R(c, q))^2
//     idx(p) = (dy + r) * k + (dx + r) of the winning q, or -1 when p has no candidate (then d2(p) = 0).
// Candidates are visited in row-major window order (dy, then dx, ascending) and folded with min_update():
// ties keep the earlier candidate; a NaN distance wins over any number and then stays (NaN propagates, like
// torch.min); +inf is an ordinary value.
//
// Backward, written as gathers so that it is deterministic (no atomics):
//     dL/dT(c, p) = 2 g(p) (T(c, p) - R(c, q*(p)))                      if idx(p) >= 0
//     dL/dR(c, q) = sum over s with q*(s) = q of -2 g(s) (T(c, s) - R(c, q))
// The second sum is evaluated at q by visiting the k*k pixels s = q - (dy, dx) that could have chosen q and
// checking whether idx(s) is exactly the offset that leads from s to q.
//
// The functions below are the single source of truth. The CUDA kernels call the per-pixel compositions
// (neighbour_min_pixel, neighbour_min_backward_pixel); the CPU loops call the same element functions in a
// row-vectorised order (window offset outer, x inner), which visits each pixel's candidates in the same order.
#pragma once

#include "common/occ_hd.h"

namespace occ {

// Squared distance over channels between T at flat pixel p and R at flat pixel q. NC > 0 fixes the channel
// count at compile time (unrolled); NC == 0 uses the runtime C.
template <int NC, typename scalar_t>
OCC_HD scalar_t nm_sq_dist(const scalar_t* __restrict__ target, const scalar_t* __restrict__ render, int C,
                           int64_t plane, int64_t p, int64_t q) {
  const int n = NC > 0 ? NC : C;
  scalar_t d2 = scalar_t(0);
  for (int c = 0; c < n; ++c) {
    const scalar_t diff = target[c * plane + p] - render[c * plane + q];
    d2 += diff * diff;
  }
  return d2;
}

// Fold candidate number o with distance d into the running (best, best_idx). Branch-free so loops vectorise.
template <typename scalar_t>
OCC_HD void nm_min_update(scalar_t d, int32_t o, bool candidate, scalar_t& best, int32_t& best_idx) {
  // Bitwise & and | (not && and ||): no short-circuit branches, so the CPU loops vectorise.
  const bool take = candidate & ((best_idx < 0) | (d < best) | (is_nan(d) & !is_nan(best)));
  best = take ? d : best;
  best_idx = take ? o : best_idx;
}

// Window index of offset (dy, dx), both in [-r, r].
OCC_HD int32_t nm_offset_index(int dy, int dx, int k) {
  const int r = k / 2;
  return (dy + r) * k + (dx + r);
}

template <int NC, typename scalar_t>
OCC_HD void neighbour_min_pixel(const scalar_t* __restrict__ target,  // C x H x W of one image
                                const scalar_t* __restrict__ render,  // C x H x W of one image
                                const uint8_t* __restrict__ region,   // H x W of one image (bool as 0/1 bytes), or nullptr
                                int C, int H, int W, int k, int y, int x,
                                scalar_t* __restrict__ out_d2, int32_t* __restrict__ out_idx) {
  const int r = k / 2;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t p = static_cast<int64_t>(y) * W + x;
  scalar_t best = scalar_t(0);
  int32_t best_idx = -1;
  for (int dy = -r; dy <= r; ++dy) {
    const int qy = y + dy;
    if (qy < 0 || qy >= H) continue;
    for (int dx = -r; dx <= r; ++dx) {
      const int qx = x + dx;
      if (qx < 0 || qx >= W) continue;
      const int64_t q = static_cast<int64_t>(qy) * W + qx;
      nm_min_update(nm_sq_dist<NC>(target, render, C, plane, p, q), nm_offset_index(dy, dx, k),
                    region == nullptr || region[q] != 0, best, best_idx);
    }
  }
  *out_d2 = best;
  *out_idx = best_idx;
}

// dT at pixel p from its own winner. An idx entry that does not name a window cell inside the image (only
// possible when the backward op is called directly with a hand-made idx) counts as "no candidate": never an
// out-of-bounds read.
template <typename scalar_t>
OCC_HD void nm_grad_target_pixel(const scalar_t* __restrict__ grad_d2, const scalar_t* __restrict__ target,
                                 const scalar_t* __restrict__ render, const int32_t* __restrict__ idx, int C, int H,
                                 int W, int k, int y, int x, scalar_t* __restrict__ grad_target) {
  const int r = k / 2;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t p = static_cast<int64_t>(y) * W + x;
  const int32_t o = idx[p];
  const int qy = o >= 0 ? y + o / k - r : -1;
  const int qx = o >= 0 ? x + o % k - r : -1;
  if (o >= 0 && o < k * k && qy >= 0 && qy < H && qx >= 0 && qx < W) {
    const int64_t q = static_cast<int64_t>(qy) * W + qx;
    const scalar_t g2 = scalar_t(2) * grad_d2[p];
    for (int c = 0; c < C; ++c) grad_target[c * plane + p] = g2 * (target[c * plane + p] - render[c * plane + q]);
  } else {
    for (int c = 0; c < C; ++c) grad_target[c * plane + p] = scalar_t(0);
  }
}

// Contribution of source pixel s (which chose window cell o) to dR at pixel q, for channel c. Selected, not
// multiplied, so a NaN in a pixel that did not choose q cannot leak into q's gradient.
template <typename scalar_t>
OCC_HD scalar_t nm_grad_render_term(const scalar_t* __restrict__ grad_d2, const scalar_t* __restrict__ target,
                                    const scalar_t* __restrict__ render, const int32_t* __restrict__ idx,
                                    int32_t o, int64_t plane, int c, int64_t s, int64_t q) {
  // Computed unconditionally (s and q are valid pixels), then selected: a branch-free, vectorisable select.
  const scalar_t term = scalar_t(-2) * grad_d2[s] * (target[c * plane + s] - render[c * plane + q]);
  return idx[s] == o ? term : scalar_t(0);
}

template <typename scalar_t>
OCC_HD void neighbour_min_backward_pixel(const scalar_t* __restrict__ grad_d2,  // H x W
                                         const scalar_t* __restrict__ target,   // C x H x W
                                         const scalar_t* __restrict__ render,   // C x H x W
                                         const int32_t* __restrict__ idx,       // H x W
                                         int C, int H, int W, int k, int y, int x,
                                         scalar_t* __restrict__ grad_target,    // C x H x W
                                         scalar_t* __restrict__ grad_render) {  // C x H x W
  const int r = k / 2;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t q = static_cast<int64_t>(y) * W + x;
  nm_grad_target_pixel(grad_d2, target, render, idx, C, H, W, k, y, x, grad_target);
  for (int c = 0; c < C; ++c) {
    scalar_t acc = scalar_t(0);
    for (int dy = -r; dy <= r; ++dy) {
      const int sy = y - dy;
      if (sy < 0 || sy >= H) continue;
      for (int dx = -r; dx <= r; ++dx) {
        const int sx = x - dx;
        if (sx < 0 || sx >= W) continue;
        acc += nm_grad_render_term(grad_d2, target, render, idx, nm_offset_index(dy, dx, k), plane, c,
                                   static_cast<int64_t>(sy) * W + sx, q);
      }
    }
    grad_render[c * plane + q] = acc;
  }
}

}  // namespace occ
