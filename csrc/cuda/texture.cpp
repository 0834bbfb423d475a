// CUDA glue of texture sampling: tensors (validated and contiguous, csrc/ops/texture.cpp) to the launchers.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

#include "cuda/glue.h"
#include "cuda/texture.h"
#include "cuda/texture_launch.h"
#include "ops/texture_stack.h"

namespace occ::cuda {
using occ::ops::texture_stack;

at::Tensor texture_forward(const std::vector<at::Tensor>& levels, const at::Tensor& uv, const at::Tensor& uv_da,
                           const at::Tensor& bias, int64_t filter, int64_t boundary) {
  const c10::cuda::CUDAGuard guard(uv.device());
  const int64_t N = uv.size(0), P = uv.size(1) * uv.size(2), C = levels[0].size(levels[0].dim() - 1);
  auto out = at::empty({N, uv.size(1), uv.size(2), C}, uv.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(uv.scalar_type(), "texture_forward_cuda", [&] {
    check(launch_texture_forward<scalar_t>(texture_stack<scalar_t>(levels), uv.const_data_ptr<scalar_t>(),
                                           uv_da.defined() ? uv_da.const_data_ptr<scalar_t>() : nullptr,
                                           bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr, N, P,
                                           static_cast<int>(filter), static_cast<int>(boundary),
                                           out.mutable_data_ptr<scalar_t>(), stream),
          "texture forward");
  });
  return out;
}

std::vector<at::Tensor> texture_backward(const std::vector<at::Tensor>& levels, const at::Tensor& uv,
                                         const at::Tensor& uv_da, const at::Tensor& bias, int64_t filter,
                                         int64_t boundary, const at::Tensor& grad_out) {
  const c10::cuda::CUDAGuard guard(uv.device());
  const int64_t N = uv.size(0), P = uv.size(1) * uv.size(2);
  const int used = (filter == kTexLinearMipNearest || filter == kTexLinearMipLinear) ? static_cast<int>(levels.size()) : 1;
  std::vector<at::Tensor> grads;
  for (const auto& t : levels) grads.push_back(at::zeros_like(t));
  auto grad_uv = at::empty_like(uv);
  auto grad_da = uv_da.defined() ? at::empty_like(uv_da) : at::zeros({0}, uv.options());
  auto grad_bias = bias.defined() ? at::empty_like(bias) : at::zeros({0}, uv.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(uv.scalar_type(), "texture_backward_cuda", [&] {
    check(launch_texture_backward<scalar_t>(
              texture_stack<scalar_t>(levels), texture_stack<scalar_t>(grads, used), uv.const_data_ptr<scalar_t>(),
              uv_da.defined() ? uv_da.const_data_ptr<scalar_t>() : nullptr,
              bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr, grad_out.const_data_ptr<scalar_t>(), N, P,
              static_cast<int>(filter), static_cast<int>(boundary), grad_uv.mutable_data_ptr<scalar_t>(),
              uv_da.defined() ? grad_da.mutable_data_ptr<scalar_t>() : nullptr,
              bias.defined() ? grad_bias.mutable_data_ptr<scalar_t>() : nullptr, stream),
          "texture backward");
  });
  grads.push_back(grad_uv);
  grads.push_back(grad_da);
  grads.push_back(grad_bias);
  return grads;
}

}  // namespace occ::cuda
