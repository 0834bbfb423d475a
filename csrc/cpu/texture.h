// CPU texture kernels (csrc/cpu/texture.cpp over csrc/common/texture.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace occ::cpu {
#include "ops/texture_kernels.inc"
}  // namespace occ::cpu
