// CPU kernels, one function per op direction. Inputs are validated and made contiguous by csrc/ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace occ::cpu {

std::tuple<at::Tensor, at::Tensor> neighbour_min_forward(const at::Tensor& target, const at::Tensor& render,
                                                         const at::Tensor& region, int64_t k);
std::tuple<at::Tensor, at::Tensor> neighbour_min_backward(const at::Tensor& grad_d2, const at::Tensor& target,
                                                          const at::Tensor& render, const at::Tensor& idx,
                                                          int64_t k);

}  // namespace occ::cpu
