// The neighbour_min op (the neighbourhood-min image distance of eq. 1; math in csrc/common/neighbour_min.h).
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_neighbour_min) and its kernels per dispatch key (register_neighbour_min_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/neighbour_min.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/neighbour_min.h"
#endif

namespace occ::ops {
namespace {
void check_image_pair(const at::Tensor& target, const at::Tensor& render) {
  TORCH_CHECK(target.dim() == 4, "neighbour_min: target must be (B, C, H, W), got ", target.sizes());
  TORCH_CHECK(render.sizes() == target.sizes(), "neighbour_min: render ", render.sizes(), " must match target ",
              target.sizes());
  TORCH_CHECK(target.scalar_type() == at::kFloat || target.scalar_type() == at::kDouble,
              "neighbour_min: target must be float32 or float64, got ", target.scalar_type());
  TORCH_CHECK(render.scalar_type() == target.scalar_type(), "neighbour_min: render dtype ", render.scalar_type(),
              " must match target dtype ", target.scalar_type());
  TORCH_CHECK(render.device() == target.device(), "neighbour_min: render is on ", render.device(),
              " but target is on ", target.device());
  TORCH_CHECK(target.size(1) >= 1, "neighbour_min: target needs at least one channel");
  TORCH_CHECK(target.size(2) < (1 << 30) && target.size(3) < (1 << 30) && target.size(1) < (1 << 30),
              "neighbour_min: image dimensions too large");
}

void check_k(int64_t k, const at::Tensor& target) {
  TORCH_CHECK(k >= 1 && k % 2 == 1, "neighbour_min: k must be odd and >= 1, got ", k);
  TORCH_CHECK(k <= target.size(2) && k <= target.size(3), "neighbour_min: k = ", k, " is larger than the image ",
              target.size(2), "x", target.size(3));
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> neighbour_min_impl(const at::Tensor& target, const at::Tensor& render,
                                                      const std::optional<at::Tensor>& region, int64_t k) {
  check_image_pair(target, render);
  check_k(k, target);
  at::Tensor reg;
  if (region.has_value() && region->defined()) {
    reg = *region;
    TORCH_CHECK(reg.scalar_type() == at::kBool, "neighbour_min: region must be bool here, got ", reg.scalar_type());
    TORCH_CHECK(reg.dim() == 3 && reg.size(0) == target.size(0) && reg.size(1) == target.size(2) &&
                    reg.size(2) == target.size(3),
                "neighbour_min: region must be (B, H, W) = (", target.size(0), ", ", target.size(2), ", ",
                target.size(3), "), got ", reg.sizes());
    TORCH_CHECK(reg.device() == target.device(), "neighbour_min: region is on ", reg.device(), " but target is on ",
                target.device());
    reg = reg.contiguous();
  }
  const auto t = target.contiguous();
  const auto r = render.contiguous();
  return Kernel(t, r, reg, k);
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor> neighbour_min_backward_impl(const at::Tensor& grad_d2, const at::Tensor& target,
                                                               const at::Tensor& render, const at::Tensor& idx,
                                                               int64_t k) {
  check_image_pair(target, render);
  check_k(k, target);
  const auto B = target.size(0), H = target.size(2), W = target.size(3);
  TORCH_CHECK(grad_d2.dim() == 3 && grad_d2.size(0) == B && grad_d2.size(1) == H && grad_d2.size(2) == W,
              "neighbour_min_backward: grad_d2 must be (B, H, W), got ", grad_d2.sizes());
  TORCH_CHECK(idx.sizes() == grad_d2.sizes(), "neighbour_min_backward: idx must be (B, H, W), got ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kInt, "neighbour_min_backward: idx must be int32, got ", idx.scalar_type());
  TORCH_CHECK(grad_d2.scalar_type() == target.scalar_type(), "neighbour_min_backward: grad_d2 dtype mismatch");
  TORCH_CHECK(grad_d2.device() == target.device() && idx.device() == target.device(),
              "neighbour_min_backward: all tensors must be on ", target.device());
  const auto g = grad_d2.contiguous();
  const auto t = target.contiguous();
  const auto r = render.contiguous();
  const auto i = idx.contiguous();
  return Kernel(g, t, r, i, k);
}

}  // namespace

void register_neighbour_min(torch::Library& m) {
  m.def("neighbour_min(Tensor target, Tensor render, Tensor? region, int k) -> (Tensor, Tensor)");
  m.def("neighbour_min_backward(Tensor grad_d2, Tensor target, Tensor render, Tensor idx, int k) -> (Tensor, Tensor)");
}

void register_neighbour_min_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("neighbour_min", &neighbour_min_impl<&occ::cpu::neighbour_min_forward>);
    m.impl("neighbour_min_backward", &neighbour_min_backward_impl<&occ::cpu::neighbour_min_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("neighbour_min", &neighbour_min_impl<&occ::cuda::neighbour_min_forward>);
    m.impl("neighbour_min_backward", &neighbour_min_backward_impl<&occ::cuda::neighbour_min_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(neighbour_min)
