// Tensor-level CUDA entry points (defined in ops_cuda.cpp, built only with OCCRECON_WITH_CUDA).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace occ::cuda {

std::tuple<at::Tensor, at::Tensor> neighbour_min_forward(const at::Tensor& target, const at::Tensor& render,
                                                         const at::Tensor& region, int64_t k);
std::tuple<at::Tensor, at::Tensor> neighbour_min_backward(const at::Tensor& grad_d2, const at::Tensor& target,
                                                          const at::Tensor& render, const at::Tensor& idx,
                                                          int64_t k);

}  // namespace occ::cuda
