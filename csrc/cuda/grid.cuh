// Thread-to-index mapping shared by the CUDA launchers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace occ::cuda {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  // Grid-stride loops cover the rest; 65535 * 32 blocks keeps every launch legal.
  return static_cast<unsigned int>(b < 65535LL * 32 ? (b > 0 ? b : 1) : 65535LL * 32);
}

}  // namespace occ::cuda
