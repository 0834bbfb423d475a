// CUDA antialias kernels' tensor entry points (glue: csrc/cuda/antialias.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/antialias_kernels.inc"
}  // namespace occ::cuda
