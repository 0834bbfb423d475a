// CUDA glue of antialias: tensors (validated and contiguous, csrc/ops/antialias.cpp) to the launchers, on the
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
#include "cuda/antialias_launch.h"
#include "cuda/antialias.h"

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
