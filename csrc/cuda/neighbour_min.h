// CUDA neighbour_min kernels' tensor entry points (glue: csrc/cuda/neighbour_min.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/neighbour_min_kernels.inc"
}  // namespace occ::cuda
