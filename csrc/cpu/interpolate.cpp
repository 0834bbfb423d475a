// CPU loops for interpolate (forward and gradients). The math is common/interpolate.h. The attribute gradient is
// scattered serially per image (images in parallel); broadcast attributes get a fixed number of partial buffers
// summed in order: deterministic and independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <vector>

#include "common/interpolate.h"
#include "cpu/interpolate.h"

namespace occ::cpu {

// Fixed number of partial attribute gradients for broadcast attributes (enough to keep every thread busy).
constexpr int64_t kGradGroups = 8;

std::tuple<at::Tensor, at::Tensor> interpolate_forward(const at::Tensor& attr, const at::Tensor& rast,
                                                       const at::Tensor& tri, const at::Tensor& rast_db,
                                                       const std::vector<int32_t>& diff) {
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2);
  const int64_t F = tri.size(0), P = H * W;
  const int nd = static_cast<int>(diff.size());
  auto out = at::empty({B, H, W, C}, attr.options());
  auto out_da = at::empty({B, H, W, 2 * static_cast<int64_t>(nd)}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_forward_cpu", [&] {
    const scalar_t* as = attr.const_data_ptr<scalar_t>();
    const scalar_t* rs = rast.const_data_ptr<scalar_t>();
    const scalar_t* ds = nd > 0 ? rast_db.const_data_ptr<scalar_t>() : nullptr;
    const int32_t* tr = tri.const_data_ptr<int32_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    scalar_t* oda = out_da.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B * P, 1024, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t b = q / P;
        const int32_t t = rast_triangle(rs + 4 * q, F);
        int64_t v[3];
        if (t < 0 || !rast_tri_vertices(tr, t, V, v)) {  // empty, or names no triangle / no vertex: zeros
          std::fill(o + q * C, o + (q + 1) * C, scalar_t(0));
          std::fill(oda + q * 2 * nd, oda + (q + 1) * 2 * nd, scalar_t(0));
          continue;
        }
        const scalar_t* ab = as + (Ba == 1 ? 0 : b) * V * C;
        interp_forward(rs + 4 * q, ds ? ds + 4 * q : nullptr, ab + C * v[0], ab + C * v[1], ab + C * v[2],
                       static_cast<int>(C), diff.data(), nd, o + q * C, oda + q * 2 * nd);
      }
    });
  });
  return {out, out_da};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward(const at::Tensor& attr, const at::Tensor& rast,
                                                                    const at::Tensor& tri, const at::Tensor& rast_db,
                                                                    const std::vector<int32_t>& diff,
                                                                    const at::Tensor& grad_out,
                                                                    const at::Tensor& grad_da) {
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2);
  const int64_t F = tri.size(0), P = H * W;
  const int nd = static_cast<int>(diff.size());
  const bool with_da = nd > 0 && grad_da.defined();
  // Broadcast attributes: the images are split into G fixed groups (independent of the thread count); each group
  // scatters serially into its own buffer and the buffers are summed in group order: deterministic.
  const int64_t G = Ba == 1 ? std::min<int64_t>(B, kGradGroups) : B;
  auto grad_attr = at::zeros({Ba == 1 ? std::max<int64_t>(G, 1) : B, V, C}, attr.options());
  // Every pixel's rast / rast_db gradient is written by the loop below (zeros on empty pixels): no memset.
  auto grad_rast = at::empty_like(rast);
  auto grad_db = nd > 0 ? at::empty_like(rast_db) : at::zeros({0}, rast.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cpu", [&] {
    const scalar_t* as = attr.const_data_ptr<scalar_t>();
    const scalar_t* rs = rast.const_data_ptr<scalar_t>();
    const scalar_t* ds = nd > 0 ? rast_db.const_data_ptr<scalar_t>() : nullptr;
    const int32_t* tr = tri.const_data_ptr<int32_t>();
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const scalar_t* gda = with_da ? grad_da.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* ga = grad_attr.mutable_data_ptr<scalar_t>();
    scalar_t* grs = grad_rast.mutable_data_ptr<scalar_t>();
    scalar_t* gdb = nd > 0 ? grad_db.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
       for (int64_t b = g * B / G; b < (g + 1) * B / G; ++b) {
        const scalar_t* ab = as + (Ba == 1 ? 0 : b) * V * C;
        scalar_t* gab = ga + g * V * C;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t q = b * P + p;
          const int32_t t = rast_triangle(rs + 4 * q, F);
          int64_t v[3];
          if (t < 0 || !rast_tri_vertices(tr, t, V, v)) {
            grs[4 * q] = grs[4 * q + 1] = grs[4 * q + 2] = grs[4 * q + 3] = scalar_t(0);
            if (gdb) gdb[4 * q] = gdb[4 * q + 1] = gdb[4 * q + 2] = gdb[4 * q + 3] = scalar_t(0);
            continue;
          }
          const int64_t v0 = v[0], v1 = v[1], v2 = v[2];
          interp_backward(rs + 4 * q, ds ? ds + 4 * q : nullptr, ab + C * v0, ab + C * v1, ab + C * v2,
                          static_cast<int>(C), diff.data(), with_da ? nd : 0, go + q * C,
                          gda ? gda + q * 2 * nd : nullptr, gab + C * v0, gab + C * v1, gab + C * v2, grs + 4 * q,
                          gdb ? gdb + 4 * q : nullptr, PlainAdd{});
        }
       }
      }
    });
  });
  if (Ba != 1) return {grad_attr, grad_rast, grad_db};
  return {G > 1 ? grad_attr.sum(0, /*keepdim=*/true) : grad_attr, grad_rast, grad_db};
}

}  // namespace occ::cpu
