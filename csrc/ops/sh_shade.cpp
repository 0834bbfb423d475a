// The sh_shade op.
// Spherical-harmonics Lambertian shading (math in csrc/common/sh.h): normals [B,N,3], albedo [B or 1,N,3],
// gamma [B,9,3] (band function, RGB).
//
// This file is the op's one home on the C++ side: its argument checks (the last line of defence for direct
// torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds), its schema fragment
// (register_sh_shade) and its kernels per dispatch key (register_sh_shade_impl): each impl is a template over the back
// end's kernel, so nothing branches on the device again.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cfloat>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "cpu/sh_shade.h"
#include "ops/checks.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/sh_shade.h"
#endif

namespace occ::ops {
namespace {
void check_sh_inputs(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma, const char* op) {
  TORCH_CHECK(normals.dim() == 3 && normals.size(2) == 3, op, ": normals must be (B, N, 3), got ", normals.sizes());
  TORCH_CHECK(normals.scalar_type() == at::kFloat || normals.scalar_type() == at::kDouble, op,
              ": normals must be float32 or float64, got ", normals.scalar_type());
  const int64_t B = normals.size(0), N = normals.size(1);
  TORCH_CHECK(albedo.dim() == 3 && (albedo.size(0) == B || albedo.size(0) == 1) && albedo.size(1) == N &&
                  albedo.size(2) == 3,
              op, ": albedo must be (B or 1, N, 3) with B = ", B, ", N = ", N, ", got ", albedo.sizes());
  TORCH_CHECK(gamma.dim() == 3 && gamma.size(0) == B && gamma.size(1) == 9 && gamma.size(2) == 3, op,
              ": gamma must be (B, 9, 3) = (", B, ", 9, 3), got ", gamma.sizes());
  for (const at::Tensor* t : {&albedo, &gamma}) {
    TORCH_CHECK(t->scalar_type() == normals.scalar_type(), op, ": albedo and gamma must have normals' dtype ",
                normals.scalar_type(), ", got ", t->scalar_type());
    TORCH_CHECK(t->device() == normals.device(), op, ": all inputs must be on ", normals.device(), ", one is on ",
                t->device());
  }
}

template <auto Kernel>
at::Tensor sh_shade_impl(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  check_sh_inputs(normals, albedo, gamma, "sh_shade");
  const auto n = normals.contiguous(), a = albedo.contiguous(), g = gamma.contiguous();
  return Kernel(n, a, g);
}

template <auto Kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shade_backward_impl(const at::Tensor& grad_out,
                                                                      const at::Tensor& normals,
                                                                      const at::Tensor& albedo,
                                                                      const at::Tensor& gamma) {
  check_sh_inputs(normals, albedo, gamma, "sh_shade_backward");
  TORCH_CHECK(grad_out.sizes() == normals.sizes() && grad_out.scalar_type() == normals.scalar_type() &&
                  grad_out.device() == normals.device(),
              "sh_shade_backward: grad_out must match normals (", normals.sizes(), ", ", normals.scalar_type(), ", ",
              normals.device(), "), got ", grad_out.sizes(), ", ", grad_out.scalar_type(), ", ", grad_out.device());
  const auto go = grad_out.contiguous(), n = normals.contiguous(), a = albedo.contiguous(), g = gamma.contiguous();
  return Kernel(go, n, a, g);
}

}  // namespace

void register_sh_shade(torch::Library& m) {
  m.def("sh_shade(Tensor normals, Tensor albedo, Tensor gamma) -> Tensor");
  m.def("sh_shade_backward(Tensor grad_out, Tensor normals, Tensor albedo, Tensor gamma) -> (Tensor, Tensor, Tensor)");
}

void register_sh_shade_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("sh_shade", &sh_shade_impl<&occ::cpu::sh_shade_forward>);
    m.impl("sh_shade_backward", &sh_shade_backward_impl<&occ::cpu::sh_shade_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("sh_shade", &sh_shade_impl<&occ::cuda::sh_shade_forward>);
    m.impl("sh_shade_backward", &sh_shade_backward_impl<&occ::cuda::sh_shade_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(sh_shade)
