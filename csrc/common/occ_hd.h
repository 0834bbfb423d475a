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

// Accumulation policy for gradient scatters: plain += (CPU loops that own their output) ...
struct PlainAdd {
  template <typename T>
  OCC_HD void operator()(T* p, T v) const {
    *p += v;
  }
};

#if defined(__CUDACC__)
// ... or atomicAdd (CUDA kernels whose threads share outputs; the order of additions, hence rounding, may vary).
struct AtomicAdd {
  template <typename T>
  __device__ __forceinline__ void operator()(T* p, T v) const {
    atomicAdd(p, v);
  }
};
#endif

}  // namespace occ
