// CUDA vertex_normals kernels' tensor entry points (glue: csrc/cuda/vertex_normals.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "ops/vertex_normals_kernels.inc"
}  // namespace occ::cuda
