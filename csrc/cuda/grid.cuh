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

namespace occ::cuda {

// Grid-stride loop over the B*H*W pixels of a batch: f(b, y, x, i) with i the flat pixel index.
template <typename F>
__device__ __forceinline__ void for_each_pixel(int64_t B, int H, int W, F&& f) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t n = B * plane;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / plane;
    const int64_t p = i - b * plane;
    f(b, static_cast<int>(p / W), static_cast<int>(p % W), i);
  }
}

}  // namespace occ::cuda
