// CPU kernels, one function per op direction (defined in csrc/cpu/*.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cpu {
#include "backend_ops.inc"
}  // namespace occ::cpu
