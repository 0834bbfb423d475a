// CUDA interpolate kernels' tensor entry points (glue: csrc/cuda/interpolate.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/interpolate_kernels.inc"
}  // namespace occ::cuda
