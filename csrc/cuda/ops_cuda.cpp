// Glue between torch tensors and the torch-free CUDA launchers: pointers, the current stream, error checks.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/launchers.h"
#include "cuda/ops_cuda.h"

namespace occ::cuda {
namespace {
void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> neighbour_min_forward(const at::Tensor& target, const at::Tensor& render,
                                                         const at::Tensor& region, int64_t k) {
  const c10::cuda::CUDAGuard guard(target.device());
  const int64_t B = target.size(0);
  const int C = static_cast<int>(target.size(1)), H = static_cast<int>(target.size(2)),
            W = static_cast<int>(target.size(3));
  auto d2 = at::empty({B, H, W}, target.options());
  auto idx = at::empty({B, H, W}, target.options().dtype(at::kInt));
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "neighbour_min_forward_cuda", [&] {
    check(launch_neighbour_min_forward<scalar_t>(target.const_data_ptr<scalar_t>(), render.const_data_ptr<scalar_t>(),
                                                 region.defined() ? reinterpret_cast<const uint8_t*>(region.const_data_ptr<bool>()) : nullptr, B, C, H,
                                                 W, static_cast<int>(k), d2.mutable_data_ptr<scalar_t>(),
                                                 idx.mutable_data_ptr<int32_t>(), stream),
          "neighbour_min forward");
  });
  return {d2, idx};
}

std::tuple<at::Tensor, at::Tensor> neighbour_min_backward(const at::Tensor& grad_d2, const at::Tensor& target,
                                                          const at::Tensor& render, const at::Tensor& idx,
                                                          int64_t k) {
  const c10::cuda::CUDAGuard guard(target.device());
  const int64_t B = target.size(0);
  const int C = static_cast<int>(target.size(1)), H = static_cast<int>(target.size(2)),
            W = static_cast<int>(target.size(3));
  auto grad_target = at::empty_like(target);
  auto grad_render = at::empty_like(render);
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "neighbour_min_backward_cuda", [&] {
    check(launch_neighbour_min_backward<scalar_t>(
              grad_d2.const_data_ptr<scalar_t>(), target.const_data_ptr<scalar_t>(), render.const_data_ptr<scalar_t>(),
              idx.const_data_ptr<int32_t>(), B, C, H, W, static_cast<int>(k), grad_target.mutable_data_ptr<scalar_t>(),
              grad_render.mutable_data_ptr<scalar_t>(), stream),
          "neighbour_min backward");
  });
  return {grad_target, grad_render};
}

}  // namespace occ::cuda

// ------------------------------------------------------------------------------------------------ antialias
namespace occ::cuda {

at::Tensor antialias_topology(const at::Tensor& tri) {
  const c10::cuda::CUDAGuard guard(tri.device());
  const int64_t F = tri.size(0);
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  auto keys = at::empty({3 * F}, tri.options().dtype(at::kLong));
  check(launch_antialias_topology_keys(tri.const_data_ptr<int32_t>(), F, keys.mutable_data_ptr<int64_t>(), stream),
        "antialias topology keys");
  // A stable sort keeps equal keys in triangle order: the stored pair is then the same on every run.
  const auto [skeys, perm] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto pair = at::empty({3 * F, 2}, tri.options());
  auto topo = at::empty({F, 3}, tri.options());
  check(launch_antialias_topology_resolve(tri.const_data_ptr<int32_t>(), F, skeys.const_data_ptr<int64_t>(),
                                          perm.const_data_ptr<int64_t>(), pair.mutable_data_ptr<int32_t>(),
                                          topo.mutable_data_ptr<int32_t>(), stream),
        "antialias topology");
  return topo;
}

at::Tensor antialias_forward(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                             const at::Tensor& tri, const at::Tensor& topo) {
  const c10::cuda::CUDAGuard guard(color.device());
  auto out = at::empty_like(color);
  auto seg = at::empty({color.size(0), color.size(1), color.size(2), 2}, color.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_forward_cuda", [&] {
    check(launch_antialias_forward<scalar_t>(aa_batch<scalar_t>(color, rast, pos, tri, topo),
                                             seg.mutable_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                             stream),
          "antialias forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> antialias_backward(const at::Tensor& grad_out, const at::Tensor& color,
                                                      const at::Tensor& rast, const at::Tensor& pos,
                                                      const at::Tensor& tri, const at::Tensor& topo) {
  const c10::cuda::CUDAGuard guard(color.device());
  auto grad_color = at::empty_like(color);
  auto grad_pos = at::zeros_like(pos);
  auto seg = at::empty({color.size(0), color.size(1), color.size(2), 2}, color.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_backward_cuda", [&] {
    check(launch_antialias_backward<scalar_t>(aa_batch<scalar_t>(color, rast, pos, tri, topo),
                                              seg.mutable_data_ptr<scalar_t>(), grad_out.const_data_ptr<scalar_t>(),
                                              grad_color.mutable_data_ptr<scalar_t>(),
                                              grad_pos.mutable_data_ptr<scalar_t>(), stream),
          "antialias backward");
  });
  return {grad_color, grad_pos};
}

}  // namespace occ::cuda
