// CUDA glue of interpolate: tensors (validated and contiguous, csrc/ops/interpolate.cpp) to the launchers, on the
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
#include "cuda/interpolate_launch.h"
#include "cuda/interpolate.h"

namespace occ::cuda {

std::tuple<at::Tensor, at::Tensor> interpolate_forward(const at::Tensor& attr, const at::Tensor& rast,
                                                       const at::Tensor& tri, const at::Tensor& rast_db,
                                                       const std::vector<int32_t>& diff) {
  const c10::cuda::CUDAGuard guard(attr.device());
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2);
  const int nd = static_cast<int>(diff.size());
  auto out = at::empty({B, H, W, C}, attr.options());
  auto out_da = at::empty({B, H, W, 2 * static_cast<int64_t>(nd)}, attr.options());
  auto diff_dev = device_indices(diff, attr.device());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_forward_cuda", [&] {
    check(launch_interpolate_forward<scalar_t>(
              attr.const_data_ptr<scalar_t>(), Ba == 1 ? 0 : V * C, rast.const_data_ptr<scalar_t>(),
              nd > 0 ? rast_db.const_data_ptr<scalar_t>() : nullptr, tri.const_data_ptr<int32_t>(), tri.size(0), V,
              diff_dev.const_data_ptr<int32_t>(), nd, B, static_cast<int>(H), static_cast<int>(W), static_cast<int>(C),
              out.mutable_data_ptr<scalar_t>(), out_da.mutable_data_ptr<scalar_t>(), stream),
          "interpolate forward");
  });
  return {out, out_da};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward(const at::Tensor& attr, const at::Tensor& rast,
                                                                    const at::Tensor& tri, const at::Tensor& rast_db,
                                                                    const std::vector<int32_t>& diff,
                                                                    const at::Tensor& grad_out,
                                                                    const at::Tensor& grad_da) {
  const c10::cuda::CUDAGuard guard(attr.device());
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2);
  const int nd = static_cast<int>(diff.size());
  auto grad_attr = at::zeros_like(attr);
  auto grad_rast = at::zeros_like(rast);
  auto grad_db = nd > 0 ? at::zeros_like(rast_db) : at::zeros({0}, rast.options());
  auto diff_dev = device_indices(diff, attr.device());
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
    check(launch_interpolate_backward<scalar_t>(
              attr.const_data_ptr<scalar_t>(), Ba == 1 ? 0 : V * C, rast.const_data_ptr<scalar_t>(),
              nd > 0 ? rast_db.const_data_ptr<scalar_t>() : nullptr, tri.const_data_ptr<int32_t>(), tri.size(0), V,
              diff_dev.const_data_ptr<int32_t>(), nd, B, static_cast<int>(H), static_cast<int>(W), static_cast<int>(C),
              grad_out.const_data_ptr<scalar_t>(), grad_da.defined() ? grad_da.const_data_ptr<scalar_t>() : nullptr,
              grad_attr.mutable_data_ptr<scalar_t>(), grad_rast.mutable_data_ptr<scalar_t>(),
              nd > 0 ? grad_db.mutable_data_ptr<scalar_t>() : nullptr, stream),
          "interpolate backward");
  });
  return {grad_attr, grad_rast, grad_db};
}

}  // namespace occ::cuda
