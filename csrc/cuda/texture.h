// CUDA texture kernels' tensor entry points (glue: csrc/cuda/texture.cpp; kernels: csrc/cuda/texture.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace occ::cuda {
#include "ops/texture_kernels.inc"
}  // namespace occ::cuda
