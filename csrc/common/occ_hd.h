// Portability macros shared by every per-element kernel function.
// Headers in csrc/common are torch-free and allocation-free: they compile for the host (CPU loops) and, under
// nvcc, for the device (CUDA kernels), so both back ends run the very same arithmetic.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define OCC_HD __host__ __device__ __forceinline__
#else
#define OCC_HD inline __attribute__((always_inline))
#endif

namespace occ {

template <typename T>
OCC_HD bool is_nan(T v) {
  return v != v;  // true only for NaN; works for float and double on host and device
}

}  // namespace occ
