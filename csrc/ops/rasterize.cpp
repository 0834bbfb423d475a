// The rasterize op (nvdiffrast's rasterize, depth peeling included; math in csrc/common/rasterize.h).
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_rasterize) and its kernels per dispatch key (register_rasterize_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/rasterize.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/rasterize.h"
#endif

namespace occ::ops {
namespace {
template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> rasterize_impl(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                                                  int64_t width, const std::optional<at::Tensor>& ranges,
                                                  bool /*grad_db: used by the autograd formula only*/,
                                                  const std::optional<at::Tensor>& peel) {
  const char* op = "rasterize";
  TORCH_CHECK(pos.dim() == 3 || pos.dim() == 2, op, ": pos must be [B, V, 4] or [V, 4], got ", pos.sizes());
  TORCH_CHECK(pos.size(-1) == 4, op, ": pos must have 4 components (clip-space x, y, z, w), got ", pos.sizes());
  check_float(pos, op, "pos");
  TORCH_CHECK(height > 0 && width > 0 && height <= 16384 && width <= 16384, op,
              ": resolution must be in [1, 16384], got ", height, "x", width);
  const bool instanced = pos.dim() == 3;
  const int64_t V = pos.size(-2);
  check_tri(tri, V, pos.device(), op);
  at::Tensor rng;
  if (!instanced) {
    TORCH_CHECK(ranges.has_value() && ranges->defined(), op, ": range mode (pos [V, 4]) needs ranges [B, 2]");
    rng = ranges->contiguous();
    TORCH_CHECK(rng.dim() == 2 && rng.size(1) == 2 && rng.scalar_type() == at::kInt && rng.is_cpu(), op,
                ": ranges must be an int32 CPU tensor [B, 2], got ", rng.sizes(), " ", rng.scalar_type(), " on ",
                rng.device());
    const int32_t* r = rng.const_data_ptr<int32_t>();
    for (int64_t b = 0; b < rng.size(0); ++b)
      TORCH_CHECK(r[2 * b] >= 0 && r[2 * b + 1] >= 0 && int64_t(r[2 * b]) + r[2 * b + 1] <= tri.size(0), op,
                  ": ranges[", b, "] = (", r[2 * b], ", ", r[2 * b + 1], ") does not fit ", tri.size(0), " triangles");
  }
  at::Tensor prev;
  if (peel.has_value() && peel->defined()) {
    const int64_t B = instanced ? pos.size(0) : rng.size(0);
    TORCH_CHECK(peel->dim() == 4 && peel->size(0) == B && peel->size(1) == height && peel->size(2) == width &&
                    peel->size(3) == 4 && peel->scalar_type() == pos.scalar_type() && peel->device() == pos.device(),
                op, ": peel (the previous layer's rast) must be [", B, ", ", height, ", ", width, ", 4] ",
                pos.scalar_type(), " on ", pos.device(), ", got ", peel->sizes(), " ", peel->scalar_type(), " on ",
                peel->device());
    prev = peel->contiguous();
  }
  const auto p = pos.contiguous();
  const auto t = tri.contiguous();
  return Kernel(p, t, height, width, rng, prev);
}

template <auto Kernel>
at::Tensor rasterize_backward_impl(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                                   const at::Tensor& grad_rast, const std::optional<at::Tensor>& grad_db) {
  const char* op = "rasterize_backward";
  TORCH_CHECK((pos.dim() == 3 || pos.dim() == 2) && pos.size(-1) == 4, op, ": pos must be [B, V, 4] or [V, 4]");
  check_float(pos, op, "pos");
  check_tri(tri, pos.size(-2), pos.device(), op);
  check_rast(rast, op, "rast");
  TORCH_CHECK(pos.dim() == 2 || pos.size(0) == rast.size(0), op, ": pos batch ", pos.size(0), " != rast batch ",
              rast.size(0));
  TORCH_CHECK(grad_rast.sizes() == rast.sizes(), op, ": grad_rast must match rast ", rast.sizes());
  at::Tensor gdb;
  if (grad_db.has_value() && grad_db->defined()) {
    TORCH_CHECK(grad_db->sizes() == rast.sizes() && grad_db->device() == pos.device(), op,
                ": grad_db must match rast ", rast.sizes(), " on ", pos.device(), ", got ", grad_db->sizes(), " on ",
                grad_db->device());
    check_float(*grad_db, op, "grad_db");
    gdb = grad_db->to(pos.scalar_type()).contiguous();
  }
  for (const auto* t : {&rast, &grad_rast})
    TORCH_CHECK(t->device() == pos.device() && t->scalar_type() == pos.scalar_type(), op,
                ": rast and gradients must have pos's dtype and device");
  const auto p = pos.contiguous(), t = tri.contiguous(), r = rast.contiguous(), g = grad_rast.contiguous();
  return Kernel(p, t, r, g, gdb);
}

}  // namespace

void register_rasterize(torch::Library& m) {
  m.def("rasterize(Tensor pos, Tensor tri, int height, int width, Tensor? ranges, bool grad_db, Tensor? peel=None) "
        "-> (Tensor, Tensor)");
  m.def("rasterize_backward(Tensor pos, Tensor tri, Tensor rast, Tensor grad_rast, Tensor? grad_db) -> Tensor");
}

void register_rasterize_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("rasterize", &rasterize_impl<&occ::cpu::rasterize_forward>);
    m.impl("rasterize_backward", &rasterize_backward_impl<&occ::cpu::rasterize_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("rasterize", &rasterize_impl<&occ::cuda::rasterize_forward>);
    m.impl("rasterize_backward", &rasterize_backward_impl<&occ::cuda::rasterize_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(rasterize)
