// CPU loops for the neighbourhood-min op. The math is common/neighbour_min.h; here we only choose the loop
// order: at::parallel_for over image rows, then window offset (dy, dx) in row-major order, then x innermost, so
// that the element functions vectorise across x while every pixel still sees its candidates in window order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>

#include "common/neighbour_min.h"
#include "cpu/isa.h"
#include "cpu/neighbour_min.h"

namespace occ::cpu {
namespace {

// Rows per task: a 224-pixel row at k = 5 is ~17k multiply-adds; a few rows amortise the scheduling.
constexpr int64_t kRowGrain = 4;

template <int NC, typename scalar_t>
OCC_CPU_CLONES void forward_rows(const scalar_t* t, const scalar_t* r, const uint8_t* m, int64_t C, int64_t H, int64_t W, int k,
                  scalar_t* d2, int32_t* idx, int64_t begin, int64_t end) {
  const int rad = k / 2;
  const int64_t plane = H * W;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / H;
    const int y = static_cast<int>(row % H);
    const scalar_t* tb = t + b * C * plane;
    const scalar_t* rb = r + b * C * plane;
    const uint8_t* mb = m ? m + b * plane : nullptr;
    scalar_t* __restrict__ best = d2 + row * W;
    int32_t* __restrict__ best_idx = idx + row * W;
    std::fill(best, best + W, scalar_t(0));
    std::fill(best_idx, best_idx + W, int32_t(-1));
    const int64_t p0 = static_cast<int64_t>(y) * W;
    for (int dy = -rad; dy <= rad; ++dy) {
      const int qy = y + dy;
      if (qy < 0 || qy >= H) continue;
      for (int dx = -rad; dx <= rad; ++dx) {
        const int32_t o = nm_offset_index(dy, dx, k);
        const int64_t x0 = std::max<int64_t>(0, -dx), x1 = std::min<int64_t>(W, W - dx);
        const int64_t q0 = static_cast<int64_t>(qy) * W + dx;  // q = q0 + x
        if (mb) {
          for (int64_t x = x0; x < x1; ++x)
            nm_min_update(nm_sq_dist<NC>(tb, rb, static_cast<int>(C), plane, p0 + x, q0 + x), o, mb[q0 + x] != 0,
                          best[x], best_idx[x]);
        } else {
          for (int64_t x = x0; x < x1; ++x)
            nm_min_update(nm_sq_dist<NC>(tb, rb, static_cast<int>(C), plane, p0 + x, q0 + x), o, true, best[x],
                          best_idx[x]);
        }
      }
    }
  }
}

template <int NC, typename scalar_t>
OCC_CPU_CLONES void backward_rows(const scalar_t* g, const scalar_t* t, const scalar_t* r, const int32_t* idx, int64_t C, int64_t H,
                   int64_t W, int k, scalar_t* gt, scalar_t* gr, int64_t begin, int64_t end) {
  const int rad = k / 2;
  const int64_t plane = H * W;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / H;
    const int y = static_cast<int>(row % H);
    const int64_t img = b * C * plane;
    const scalar_t* gb = g + b * plane;
    const int32_t* ib = idx + b * plane;
    for (int x = 0; x < W; ++x)
      nm_grad_target_pixel(gb, t + img, r + img, ib, static_cast<int>(C), static_cast<int>(H), static_cast<int>(W),
                           k, y, x, gt + img);
    // dR for this row: gather from the pixels s = q - (dy, dx), offsets in window order, x innermost.
    const int64_t q0 = static_cast<int64_t>(y) * W;
    for (int64_t c = 0; c < C; ++c) std::fill(gr + img + c * plane + q0, gr + img + c * plane + q0 + W, scalar_t(0));
    for (int dy = -rad; dy <= rad; ++dy) {
      const int sy = y - dy;
      if (sy < 0 || sy >= H) continue;
      for (int dx = -rad; dx <= rad; ++dx) {
        const int32_t o = nm_offset_index(dy, dx, k);
        const int64_t x0 = std::max<int64_t>(0, dx), x1 = std::min<int64_t>(W, W + dx);
        const int64_t s0 = static_cast<int64_t>(sy) * W - dx;  // s = s0 + x
        if constexpr (NC == 3) {  // RGB: one pass over x for all channels, idx and grad_d2 read once
          scalar_t* __restrict__ out0 = gr + img + q0;
          scalar_t* __restrict__ out1 = out0 + plane;
          scalar_t* __restrict__ out2 = out1 + plane;
          for (int64_t x = x0; x < x1; ++x) {
            out0[x] += nm_grad_render_term(gb, t + img, r + img, ib, o, plane, 0, s0 + x, q0 + x);
            out1[x] += nm_grad_render_term(gb, t + img, r + img, ib, o, plane, 1, s0 + x, q0 + x);
            out2[x] += nm_grad_render_term(gb, t + img, r + img, ib, o, plane, 2, s0 + x, q0 + x);
          }
        } else {
          for (int64_t c = 0; c < C; ++c) {
            scalar_t* __restrict__ out = gr + img + c * plane + q0;
            for (int64_t x = x0; x < x1; ++x)
              out[x] += nm_grad_render_term(gb, t + img, r + img, ib, o, plane, static_cast<int>(c), s0 + x, q0 + x);
          }
        }
      }
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> neighbour_min_forward(const at::Tensor& target, const at::Tensor& render,
                                                         const at::Tensor& region, int64_t k) {
  const int64_t B = target.size(0), C = target.size(1), H = target.size(2), W = target.size(3);
  auto d2 = at::empty({B, H, W}, target.options());
  auto idx = at::empty({B, H, W}, target.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "neighbour_min_forward_cpu", [&] {
    const scalar_t* t = target.const_data_ptr<scalar_t>();
    const scalar_t* r = render.const_data_ptr<scalar_t>();
    // bool tensors hold 0/1 bytes; read as uint8 so the candidate test vectorises.
    const uint8_t* m = region.defined() ? reinterpret_cast<const uint8_t*>(region.const_data_ptr<bool>()) : nullptr;
    scalar_t* out = d2.mutable_data_ptr<scalar_t>();
    int32_t* out_idx = idx.mutable_data_ptr<int32_t>();
    const int kk = static_cast<int>(k);
    at::parallel_for(0, B * H, kRowGrain, [&](int64_t begin, int64_t end) {
      switch (C) {  // the common channel counts get a compile-time channel loop
        case 3: forward_rows<3>(t, r, m, C, H, W, kk, out, out_idx, begin, end); break;
        case 1: forward_rows<1>(t, r, m, C, H, W, kk, out, out_idx, begin, end); break;
        default: forward_rows<0>(t, r, m, C, H, W, kk, out, out_idx, begin, end); break;
      }
    });
  });
  return {d2, idx};
}

std::tuple<at::Tensor, at::Tensor> neighbour_min_backward(const at::Tensor& grad_d2, const at::Tensor& target,
                                                          const at::Tensor& render, const at::Tensor& idx,
                                                          int64_t k) {
  const int64_t B = target.size(0), C = target.size(1), H = target.size(2), W = target.size(3);
  auto grad_target = at::empty_like(target);
  auto grad_render = at::empty_like(render);
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "neighbour_min_backward_cpu", [&] {
    const scalar_t* g = grad_d2.const_data_ptr<scalar_t>();
    const scalar_t* t = target.const_data_ptr<scalar_t>();
    const scalar_t* r = render.const_data_ptr<scalar_t>();
    const int32_t* id = idx.const_data_ptr<int32_t>();
    scalar_t* gt = grad_target.mutable_data_ptr<scalar_t>();
    scalar_t* gr = grad_render.mutable_data_ptr<scalar_t>();
    const int kk = static_cast<int>(k);
    at::parallel_for(0, B * H, kRowGrain, [&](int64_t begin, int64_t end) {
      if (C == 3)
        backward_rows<3>(g, t, r, id, C, H, W, kk, gt, gr, begin, end);
      else
        backward_rows<0>(g, t, r, id, C, H, W, kk, gt, gr, begin, end);
    });
  });
  return {grad_target, grad_render};
}

}  // namespace occ::cpu
