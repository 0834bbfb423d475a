// CUDA rasterize kernels' tensor entry points (glue: csrc/cuda/rasterize.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/rasterize_kernels.inc"
}  // namespace occ::cuda
