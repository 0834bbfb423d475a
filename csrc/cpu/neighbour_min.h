// CPU neighbour_min kernels' tensor entry points (csrc/cpu/*.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cpu {
#include "ops/neighbour_min_kernels.inc"
}  // namespace occ::cpu
