// The vertex_normals op.
// Area-weighted vertex normals (math in csrc/common/normals.h): vertices [B,V,3], tri [F,3] int32. The kernels
// skip triangles with an index outside [0, V) by themselves (they never read out of bounds); the range check
// here turns such a mesh into an error for direct calls.
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_vertex_normals) and its kernels per dispatch key (register_vertex_normals_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/vertex_normals.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/vertex_normals.h"
#endif

namespace occ::ops {
namespace {
void check_normals_inputs(const at::Tensor& vertices, const at::Tensor& tri, double eps, const char* op) {
  TORCH_CHECK(vertices.dim() == 3 && vertices.size(2) == 3, op, ": vertices must be (B, V, 3), got ",
              vertices.sizes());
  check_float(vertices, op, "vertices");
  TORCH_CHECK(vertices.size(1) < (int64_t(1) << 31) - 1, op, ": too many vertices");
  TORCH_CHECK(tri.size(0) < (int64_t(1) << 29), op, ": too many triangles");
  check_tri(tri, vertices.size(1), vertices.device(), op);
  TORCH_CHECK(eps > 0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);
  // the kernels use eps in the vertices' dtype: it must stay a normal number there (1e-300 is 0 in float32)
  const bool f32 = vertices.scalar_type() == at::kFloat;
  const double tiny = f32 ? double(FLT_MIN) : DBL_MIN, huge = f32 ? double(FLT_MAX) : DBL_MAX;
  TORCH_CHECK(eps >= tiny && eps <= huge, op, ": eps = ", eps, " is not a normal ", vertices.scalar_type(),
              " number (must lie in [", tiny, ", ", huge, "])");
}

void check_like(const at::Tensor& t, const at::Tensor& ref, at::IntArrayRef sizes, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == sizes && t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), op, ": ",
              name, " must be ", sizes, " ", ref.scalar_type(), " on ", ref.device(), ", got ", t.sizes(), " ",
              t.scalar_type(), " on ", t.device());
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> vertex_normals_impl(const at::Tensor& vertices, const at::Tensor& tri, double eps) {
  check_normals_inputs(vertices, tri, eps, "vertex_normals");
  const auto v = vertices.contiguous(), t = tri.contiguous();
  return Kernel(v, t, eps);
}

template <auto Kernel>
at::Tensor vertex_normals_backward_impl(const at::Tensor& grad_normals, const at::Tensor& vertices,
                                        const at::Tensor& tri, const at::Tensor& normals, const at::Tensor& norms,
                                        double eps) {
  const char* op = "vertex_normals_backward";
  check_normals_inputs(vertices, tri, eps, op);
  check_like(grad_normals, vertices, vertices.sizes(), op, "grad_normals");
  check_like(normals, vertices, vertices.sizes(), op, "normals");
  check_like(norms, vertices, {vertices.size(0), vertices.size(1)}, op, "norms");
  const auto g = grad_normals.contiguous(), v = vertices.contiguous(), t = tri.contiguous(),
             n = normals.contiguous(), r = norms.contiguous();
  return Kernel(g, v, t, n, r, eps);
}

}  // namespace

void register_vertex_normals(torch::Library& m) {
  m.def("vertex_normals(Tensor vertices, Tensor tri, float eps) -> (Tensor, Tensor)");
  m.def("vertex_normals_backward(Tensor grad_normals, Tensor vertices, Tensor tri, Tensor normals, Tensor norms, "
        "float eps) -> Tensor");
}

void register_vertex_normals_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("vertex_normals", &vertex_normals_impl<&occ::cpu::vertex_normals_forward>);
    m.impl("vertex_normals_backward", &vertex_normals_backward_impl<&occ::cpu::vertex_normals_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("vertex_normals", &vertex_normals_impl<&occ::cuda::vertex_normals_forward>);
    m.impl("vertex_normals_backward", &vertex_normals_backward_impl<&occ::cuda::vertex_normals_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(vertex_normals)
