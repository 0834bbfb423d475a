// CUDA glue of sh_shade: tensors (validated and contiguous, csrc/ops/sh_shade.cpp) to the launchers, on the
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
#include "cuda/sh_shade_launch.h"
#include "cuda/sh_shade.h"

namespace occ::cuda {

at::Tensor sh_shade_forward(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  const c10::cuda::CUDAGuard guard(normals.device());
  const int64_t B = normals.size(0), N = normals.size(1);
  auto out = at::empty({B, N, 3}, normals.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shade_forward_cuda", [&] {
    check(launch_sh_shade_forward<scalar_t>(normals.const_data_ptr<scalar_t>(), albedo.const_data_ptr<scalar_t>(),
                                            albedo.size(0) == 1 ? 0 : 3 * N, gamma.const_data_ptr<scalar_t>(), B, N,
                                            out.mutable_data_ptr<scalar_t>(), stream),
          "sh_shade forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shade_backward(const at::Tensor& grad_out, const at::Tensor& normals,
                                                                 const at::Tensor& albedo, const at::Tensor& gamma) {
  const c10::cuda::CUDAGuard guard(normals.device());
  const int64_t B = normals.size(0), N = normals.size(1);
  auto grad_n = at::empty_like(normals);
  auto grad_a_full = at::empty({B, N, 3}, normals.options());
  auto grad_g = at::empty({B, 9, 3}, gamma.options());
  auto partial = at::empty({B, sh_shade_chunks(N), 27}, gamma.options());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shade_backward_cuda", [&] {
    check(launch_sh_shade_backward<scalar_t>(
              grad_out.const_data_ptr<scalar_t>(), normals.const_data_ptr<scalar_t>(),
              albedo.const_data_ptr<scalar_t>(), albedo.size(0) == 1 ? 0 : 3 * N, gamma.const_data_ptr<scalar_t>(), B,
              N, grad_n.mutable_data_ptr<scalar_t>(), grad_a_full.mutable_data_ptr<scalar_t>(),
              partial.mutable_data_ptr<scalar_t>(), grad_g.mutable_data_ptr<scalar_t>(), stream),
          "sh_shade backward");
  });
  // A batch-shared albedo: sum over the batch (a torch reduction; deterministic for a given shape).
  auto grad_a = albedo.size(0) == B ? grad_a_full : grad_a_full.sum(0, /*keepdim=*/true);
  return {grad_n, grad_a, grad_g};
}

}  // namespace occ::cuda
