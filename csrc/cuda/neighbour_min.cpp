// CUDA glue of neighbour_min: tensors (validated and contiguous, csrc/ops/neighbour_min.cpp) to the launchers, on the
// current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "cuda/glue.h"
#include "cuda/neighbour_min_launch.h"
#include "cuda/neighbour_min.h"

namespace occ::cuda {

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
