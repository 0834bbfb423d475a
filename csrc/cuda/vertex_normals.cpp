// CUDA glue of vertex_normals: tensors (validated and contiguous, csrc/ops/vertex_normals.cpp) to the launchers, on the
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
#include "cuda/vertex_normals_launch.h"
#include "cuda/vertex_normals.h"

namespace occ::cuda {

namespace {

// CSR adjacency (corner ids grouped by vertex, ascending face order) from a stable sort of the corners' vertices.
std::pair<at::Tensor, at::Tensor> normals_adjacency(const at::Tensor& tri, int64_t V, cudaStream_t stream) {
  const int64_t F = tri.size(0);
  auto keys = at::empty({3 * F}, tri.options().dtype(at::kLong));
  check(launch_normals_adjacency_keys(tri.const_data_ptr<int32_t>(), F, V, keys.mutable_data_ptr<int64_t>(), stream),
        "vertex_normals adjacency");
  auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto bounds = at::arange(V + 1, keys.options());
  auto offsets = at::searchsorted(std::get<0>(sorted), bounds);  // first corner of each vertex; [V] = valid count
  auto adj = std::get<1>(sorted).to(at::kInt);
  return {offsets.contiguous(), adj.contiguous()};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> vertex_normals_forward(const at::Tensor& vertices, const at::Tensor& tri,
                                                          double eps) {
  const c10::cuda::CUDAGuard guard(vertices.device());
  const int64_t B = vertices.size(0), V = vertices.size(1), F = tri.size(0);
  auto normals = at::empty({B, V, 3}, vertices.options());
  auto norms = at::empty({B, V}, vertices.options());
  if (B * V == 0) return {normals, norms};
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  auto [offsets, adj] = normals_adjacency(tri, V, stream);
  auto faces = at::empty({B, F, 3}, vertices.options());
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_forward_cuda", [&] {
    check(launch_vertex_normals_forward<scalar_t>(
              vertices.const_data_ptr<scalar_t>(), tri.const_data_ptr<int32_t>(), offsets.const_data_ptr<int64_t>(),
              adj.const_data_ptr<int32_t>(), B, V, F, static_cast<scalar_t>(eps), faces.mutable_data_ptr<scalar_t>(),
              normals.mutable_data_ptr<scalar_t>(), norms.mutable_data_ptr<scalar_t>(), stream),
          "vertex_normals forward");
  });
  return {normals, norms};
}

at::Tensor vertex_normals_backward(const at::Tensor& grad_normals, const at::Tensor& vertices, const at::Tensor& tri,
                                   const at::Tensor& normals, const at::Tensor& norms, double eps) {
  const c10::cuda::CUDAGuard guard(vertices.device());
  const int64_t B = vertices.size(0), V = vertices.size(1), F = tri.size(0);
  auto grad_v = at::empty({B, V, 3}, vertices.options());
  if (B * V == 0) return grad_v;
  auto stream = c10::cuda::getCurrentCUDAStream().stream();
  auto [offsets, adj] = normals_adjacency(tri, V, stream);
  auto grad_acc = at::empty({B, V, 3}, vertices.options());
  auto corners = at::empty({B, F, 9}, vertices.options());
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_backward_cuda", [&] {
    check(launch_vertex_normals_backward<scalar_t>(
              grad_normals.const_data_ptr<scalar_t>(), vertices.const_data_ptr<scalar_t>(),
              tri.const_data_ptr<int32_t>(), offsets.const_data_ptr<int64_t>(), adj.const_data_ptr<int32_t>(),
              normals.const_data_ptr<scalar_t>(), norms.const_data_ptr<scalar_t>(), B, V, F,
              static_cast<scalar_t>(eps), grad_acc.mutable_data_ptr<scalar_t>(), corners.mutable_data_ptr<scalar_t>(),
              grad_v.mutable_data_ptr<scalar_t>(), stream),
          "vertex_normals backward");
  });
  return grad_v;
}

}  // namespace occ::cuda
