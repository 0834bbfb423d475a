// The interpolate op (nvdiffrast's interpolate; math in csrc/common/interpolate.h).
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_interpolate) and its kernels per dispatch key (register_interpolate_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/interpolate.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/interpolate.h"
#endif

namespace occ::ops {
namespace {
std::vector<int32_t> diff_list(c10::IntArrayRef diff_attrs, int64_t C, const char* op) {
  std::vector<int32_t> out;
  for (const int64_t c : diff_attrs) {
    TORCH_CHECK(c >= 0 && c < C, op, ": diff_attrs index ", c, " out of range for ", C, " attributes");
    out.push_back(static_cast<int32_t>(c));
  }
  return out;
}

void check_interpolate_args(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                            const std::optional<at::Tensor>& rast_db, bool need_db, const char* op) {
  TORCH_CHECK(attr.dim() == 3, op, ": attr must be [B or 1, V, C] here, got ", attr.sizes());
  check_float(attr, op, "attr");
  check_rast(rast, op, "rast");
  TORCH_CHECK(rast.scalar_type() == attr.scalar_type() && rast.device() == attr.device(), op,
              ": rast must have attr's dtype and device");
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == rast.size(0), op, ": attr batch ", attr.size(0),
              " must be 1 or rast's batch ", rast.size(0));
  check_tri(tri, attr.size(1), attr.device(), op);
  if (need_db) {
    TORCH_CHECK(rast_db.has_value() && rast_db->defined(), op, ": diff_attrs needs rast_db");
    TORCH_CHECK(rast_db->sizes() == rast.sizes() && rast_db->scalar_type() == attr.scalar_type() &&
                    rast_db->device() == attr.device(),
                op, ": rast_db must match rast ", rast.sizes(), " in shape, dtype and device");
  }
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> interpolate_impl(const at::Tensor& attr, const at::Tensor& rast,
                                                    const at::Tensor& tri, const std::optional<at::Tensor>& rast_db,
                                                    c10::IntArrayRef diff_attrs) {
  const char* op = "interpolate";
  check_interpolate_args(attr, rast, tri, rast_db, !diff_attrs.empty(), op);
  const auto diff = diff_list(diff_attrs, attr.size(2), op);
  const auto a = attr.contiguous(), r = rast.contiguous(), t = tri.contiguous();
  const auto db = diff.empty() ? at::Tensor() : rast_db->contiguous();
  return Kernel(a, r, t, db, diff);
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward_impl(
    const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri, const std::optional<at::Tensor>& rast_db,
    c10::IntArrayRef diff_attrs, const at::Tensor& grad_out, const std::optional<at::Tensor>& grad_da) {
  const char* op = "interpolate_backward";
  check_interpolate_args(attr, rast, tri, rast_db, !diff_attrs.empty(), op);
  const auto diff = diff_list(diff_attrs, attr.size(2), op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == B && grad_out.size(1) == H && grad_out.size(2) == W &&
                  grad_out.size(3) == attr.size(2),
              op, ": grad_out must be [B, H, W, C] = [", B, ", ", H, ", ", W, ", ", attr.size(2), "], got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.device() == attr.device(), op, ": grad_out is on ", grad_out.device(), " but attr is on ",
              attr.device());
  check_float(grad_out, op, "grad_out");
  at::Tensor gda;
  if (!diff.empty() && grad_da.has_value() && grad_da->defined()) {
    const int64_t nd2 = 2 * static_cast<int64_t>(diff.size());
    TORCH_CHECK(grad_da->dim() == 4 && grad_da->size(0) == B && grad_da->size(1) == H && grad_da->size(2) == W &&
                    grad_da->size(3) == nd2,
                op, ": grad_da must be [B, H, W, 2 * len(diff_attrs)] = [", B, ", ", H, ", ", W, ", ", nd2, "], got ",
                grad_da->sizes());
    TORCH_CHECK(grad_da->device() == attr.device(), op, ": grad_da is on ", grad_da->device(), " but attr is on ",
                attr.device());
    check_float(*grad_da, op, "grad_da");
    gda = grad_da->to(attr.scalar_type()).contiguous();
  }
  const auto a = attr.contiguous(), r = rast.contiguous(), t = tri.contiguous();
  const auto g = grad_out.to(attr.scalar_type()).contiguous();
  const auto db = diff.empty() ? at::Tensor() : rast_db->contiguous();
  return Kernel(a, r, t, db, diff, g, gda);
}

}  // namespace

void register_interpolate(torch::Library& m) {
  m.def("interpolate(Tensor attr, Tensor rast, Tensor tri, Tensor? rast_db, int[] diff_attrs) -> (Tensor, Tensor)");
  m.def("interpolate_backward(Tensor attr, Tensor rast, Tensor tri, Tensor? rast_db, int[] diff_attrs, "
        "Tensor grad_out, Tensor? grad_da) -> (Tensor, Tensor, Tensor)");
}

void register_interpolate_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("interpolate", &interpolate_impl<&occ::cpu::interpolate_forward>);
    m.impl("interpolate_backward", &interpolate_backward_impl<&occ::cpu::interpolate_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("interpolate", &interpolate_impl<&occ::cuda::interpolate_forward>);
    m.impl("interpolate_backward", &interpolate_backward_impl<&occ::cuda::interpolate_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(interpolate)
