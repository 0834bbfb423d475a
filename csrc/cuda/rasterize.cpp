// CUDA glue of rasterize: tensors (validated and contiguous, csrc/ops/rasterize.cpp) to the launchers, on the
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
#include "cuda/rasterize_launch.h"
#include "cuda/rasterize.h"

namespace occ::cuda {

std::tuple<at::Tensor, at::Tensor> rasterize_forward(const at::Tensor& pos, const at::Tensor& tri, int64_t H,
                                                     int64_t W, const at::Tensor& ranges, const at::Tensor& peel) {
  const c10::cuda::CUDAGuard guard(pos.device());
  const bool instanced = pos.dim() == 3;
  const int64_t B = instanced ? pos.size(0) : ranges.size(0);
  const int64_t V = instanced ? pos.size(1) : pos.size(0);
  const int64_t F = tri.size(0);
  int64_t max_count = F;
  at::Tensor ranges_dev;
  if (!instanced) {
    max_count = 0;
    const int32_t* r = ranges.const_data_ptr<int32_t>();
    for (int64_t b = 0; b < B; ++b) max_count = std::max<int64_t>(max_count, r[2 * b + 1]);
    ranges_dev = ranges.to(pos.device());
  }
  auto rast = at::empty({B, H, W, 4}, pos.options());
  auto db = at::empty({B, H, W, 4}, pos.options());
  auto keys = at::empty({B, H, W}, pos.options().dtype(at::kLong));
  auto peel_keys = peel.defined() ? at::empty({B, H, W}, pos.options().dtype(at::kLong)) : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_forward_cuda", [&] {
    check(launch_rasterize_forward<scalar_t>(
              pos.const_data_ptr<scalar_t>(), tri.const_data_ptr<int32_t>(), F, V,
              instanced ? nullptr : ranges_dev.const_data_ptr<int32_t>(), max_count, instanced ? V * 4 : 0, B,
              static_cast<int>(H), static_cast<int>(W), peel.defined() ? peel.const_data_ptr<scalar_t>() : nullptr,
              peel.defined() ? reinterpret_cast<unsigned long long*>(peel_keys.mutable_data_ptr<int64_t>()) : nullptr,
              reinterpret_cast<unsigned long long*>(keys.mutable_data_ptr<int64_t>()), rast.mutable_data_ptr<scalar_t>(),
              db.mutable_data_ptr<scalar_t>(), stream),
          "rasterize forward");
  });
  return {rast, db};
}

at::Tensor rasterize_backward(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                              const at::Tensor& grad_rast, const at::Tensor& grad_db) {
  const c10::cuda::CUDAGuard guard(pos.device());
  const bool instanced = pos.dim() == 3;
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t V = instanced ? pos.size(1) : pos.size(0);
  auto grad = at::zeros_like(pos);
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
    check(launch_rasterize_backward<scalar_t>(
              pos.const_data_ptr<scalar_t>(), tri.const_data_ptr<int32_t>(), tri.size(0), V, instanced ? V * 4 : 0,
              rast.const_data_ptr<scalar_t>(), grad_rast.const_data_ptr<scalar_t>(),
              grad_db.defined() ? grad_db.const_data_ptr<scalar_t>() : nullptr, B, static_cast<int>(H),
              static_cast<int>(W), grad.mutable_data_ptr<scalar_t>(), stream),
          "rasterize backward");
  });
  return grad;
}

}  // namespace occ::cuda
