// CUDA sh_shade kernels' tensor entry points (glue: csrc/cuda/sh_shade.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/sh_shade_kernels.inc"
}  // namespace occ::cuda
