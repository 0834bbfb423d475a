// Tensor-level CUDA entry points (defined in ops_cuda.cpp, built only with OCCRECON_WITH_CUDA).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cuda {
#include "backend_ops.inc"
}  // namespace occ::cuda
