// The antialias op.
// nvdiffrast's analytic edge antialiasing (math in csrc/common/antialias.h). The kernels range-check every index
// they read from rast, tri and topology_hash, so the checks here are about shapes, dtypes and devices only.
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_antialias) and its kernels per dispatch key (register_antialias_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/antialias.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/antialias.h"
#endif

namespace occ::ops {
namespace {
void check_aa_tri(const at::Tensor& tri, const char* op) {
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.size(0) >= 1, op, ": tri must be (F, 3) with F >= 1, got ",
              tri.sizes());
  TORCH_CHECK(tri.scalar_type() == at::kInt, op, ": tri must be int32, got ", tri.scalar_type());
  TORCH_CHECK(tri.size(0) < (1LL << 29), op, ": too many triangles (", tri.size(0), ")");
}

void check_aa_inputs(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
                     const at::Tensor& topo, const char* op) {
  TORCH_CHECK(color.dim() == 4 && color.size(0) >= 1 && color.size(1) >= 1 && color.size(2) >= 1 &&
                  color.size(3) >= 1,
              op, ": color must be (B, H, W, C) with all sizes >= 1, got ", color.sizes());
  TORCH_CHECK(color.scalar_type() == at::kFloat || color.scalar_type() == at::kDouble, op,
              ": color must be float32 or float64, got ", color.scalar_type());
  TORCH_CHECK(color.size(1) < (1 << 30) && color.size(2) < (1 << 30) && color.size(3) < (1 << 30), op,
              ": image dimensions too large");
  TORCH_CHECK(rast.dim() == 4 && rast.size(0) == color.size(0) && rast.size(1) == color.size(1) &&
                  rast.size(2) == color.size(2) && rast.size(3) == 4,
              op, ": rast must be (B, H, W, 4) = (", color.size(0), ", ", color.size(1), ", ", color.size(2),
              ", 4), got ", rast.sizes());
  TORCH_CHECK(rast.scalar_type() == at::kFloat, op, ": rast must be float32, got ", rast.scalar_type());
  const bool instanced = pos.dim() == 3;
  TORCH_CHECK((instanced && pos.size(0) == color.size(0) && pos.size(2) == 4) || (pos.dim() == 2 && pos.size(1) == 4),
              op, ": pos must be (B, V, 4) with B = ", color.size(0), " or (V, 4), got ", pos.sizes());
  const int64_t V = pos.size(instanced ? 1 : 0);
  TORCH_CHECK(V >= 1 && V < (1LL << 31), op, ": pos must hold 1 to 2^31 - 1 vertices, got ", V);
  TORCH_CHECK(pos.scalar_type() == color.scalar_type(), op, ": pos dtype ", pos.scalar_type(),
              " must match color dtype ", color.scalar_type());
  check_aa_tri(tri, op);
  TORCH_CHECK(topo.dim() == 2 && topo.size(0) == tri.size(0) && topo.size(1) == 3 && topo.scalar_type() == at::kInt,
              op, ": topology_hash must be int32 (F, 3) = (", tri.size(0), ", 3), got ", topo.scalar_type(), " ",
              topo.sizes());
  for (const at::Tensor* t : {&rast, &pos, &tri, &topo})
    TORCH_CHECK(t->device() == color.device(), op, ": all inputs must be on ", color.device(), ", one is on ",
                t->device());
}

template <auto Kernel>
at::Tensor antialias_topology_impl(const at::Tensor& tri) {
  check_aa_tri(tri, "antialias_construct_topology_hash");
  const auto t = tri.contiguous();
  return Kernel(t);
}

template <auto Kernel>
at::Tensor antialias_impl(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                          const at::Tensor& tri, const at::Tensor& topo, double /*pos_gradient_boost: backward only*/) {
  check_aa_inputs(color, rast, pos, tri, topo, "antialias");
  const auto c = color.contiguous(), r = rast.contiguous(), p = pos.contiguous(), t = tri.contiguous(),
             o = topo.contiguous();
  return Kernel(c, r, p, t, o);
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> antialias_backward_impl(const at::Tensor& grad_out, const at::Tensor& color,
                                                           const at::Tensor& rast, const at::Tensor& pos,
                                                           const at::Tensor& tri, const at::Tensor& topo) {
  check_aa_inputs(color, rast, pos, tri, topo, "antialias_backward");
  TORCH_CHECK(grad_out.sizes() == color.sizes() && grad_out.scalar_type() == color.scalar_type() &&
                  grad_out.device() == color.device(),
              "antialias_backward: grad_out must match color (", color.sizes(), ", ", color.scalar_type(), ", ",
              color.device(), "), got ", grad_out.sizes(), ", ", grad_out.scalar_type(), ", ", grad_out.device());
  const auto g = grad_out.contiguous(), c = color.contiguous(), r = rast.contiguous(), p = pos.contiguous(),
             t = tri.contiguous(), o = topo.contiguous();
  return Kernel(g, c, r, p, t, o);
}

}  // namespace

void register_antialias(torch::Library& m) {
  m.def("antialias_construct_topology_hash(Tensor tri) -> Tensor");
  m.def("antialias(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor topology_hash, "
        "float pos_gradient_boost=1.0) -> Tensor");
  m.def("antialias_backward(Tensor grad_out, Tensor color, Tensor rast, Tensor pos, Tensor tri, "
        "Tensor topology_hash) -> (Tensor, Tensor)");
}

void register_antialias_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("antialias_construct_topology_hash", &antialias_topology_impl<&occ::cpu::antialias_topology>);
    m.impl("antialias", &antialias_impl<&occ::cpu::antialias_forward>);
    m.impl("antialias_backward", &antialias_backward_impl<&occ::cpu::antialias_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("antialias_construct_topology_hash", &antialias_topology_impl<&occ::cuda::antialias_topology>);
    m.impl("antialias", &antialias_impl<&occ::cuda::antialias_forward>);
    m.impl("antialias_backward", &antialias_backward_impl<&occ::cuda::antialias_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(antialias)
