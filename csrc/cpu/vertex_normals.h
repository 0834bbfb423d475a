// CPU vertex_normals kernels' tensor entry points (csrc/cpu/*.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cpu {
#include "ops/vertex_normals_kernels.inc"
}  // namespace occ::cpu
