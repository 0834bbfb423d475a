// Glue between torch tensors and the torch-free CUDA launchers: pointers, the current stream, error checks.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

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

namespace {
// A small host vector of indices as a device tensor (kept alive by the caller for the launch).
at::Tensor device_indices(const std::vector<int32_t>& v, const at::Device& device) {
  auto host = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kInt));
  std::copy(v.begin(), v.end(), host.mutable_data_ptr<int32_t>());
  return host.to(device);
}
}  // namespace

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

// ------------------------------------------------------------------------------------------------- sh_shade
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

// ------------------------------------------------------------------------------------------- vertex_normals
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
