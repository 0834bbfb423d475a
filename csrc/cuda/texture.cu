// CUDA kernels of texture sampling: the per-pixel math is csrc/common/texture.h; a thread per pixel.
#include "cuda/grid.cuh"
#include "cuda/texture_launch.h"

namespace occ::cuda {
namespace {

template <int filter, int boundary, typename T>
__global__ void texture_forward_kernel(TexStack<T> s, const T* __restrict__ uv, const T* __restrict__ da,
                                       const T* __restrict__ bias, int64_t N, int64_t P, T* __restrict__ out) {
  const int64_t n = N * P;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < n;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tex_forward_any<filter, boundary, 0>(s, q / P, uv + kTexUV<boundary> * q,
                                         da ? da + kTexDA<boundary> * q : nullptr,
                                         bias ? bias + q : nullptr, out + q * s.C);
}

template <int filter, int boundary, typename T>
__global__ void texture_backward_kernel(TexStack<T> s, TexStack<T> g, const T* __restrict__ uv,
                                        const T* __restrict__ da, const T* __restrict__ bias,
                                        const T* __restrict__ grad_out, int64_t N, int64_t P, T* __restrict__ guv,
                                        T* __restrict__ gda, T* __restrict__ gbias) {
  const int64_t n = N * P;
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < n;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tex_backward_any<filter, boundary, 0>(s, g, q / P, uv + kTexUV<boundary> * q,
                                          da ? da + kTexDA<boundary> * q : nullptr,
                                          bias ? bias + q : nullptr, grad_out + q * s.C,
                                          guv + kTexUV<boundary> * q,
                                          gda ? gda + kTexDA<boundary> * q : nullptr,
                                          gbias ? gbias + q : nullptr, AtomicAdd{});
}

}  // namespace

template <typename T>
cudaError_t launch_texture_forward(TexStack<T> s, const T* uv, const T* da, const T* bias, int64_t N, int64_t P,
                                   int filter, int boundary, T* out, cudaStream_t stream) {
  if (N * P == 0) return cudaSuccess;
  tex_dispatch(filter, boundary, [&](auto F, auto BM) {
    texture_forward_kernel<decltype(F)::value, decltype(BM)::value, T>
        <<<blocks_for(N * P), kThreads, 0, stream>>>(s, uv, da, bias, N, P, out);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_texture_backward(TexStack<T> s, TexStack<T> g, const T* uv, const T* da, const T* bias,
                                    const T* grad_out, int64_t N, int64_t P, int filter, int boundary, T* guv, T* gda,
                                    T* gbias, cudaStream_t stream) {
  if (N * P == 0) return cudaSuccess;
  tex_dispatch(filter, boundary, [&](auto F, auto BM) {
    texture_backward_kernel<decltype(F)::value, decltype(BM)::value, T>
        <<<blocks_for(N * P), kThreads, 0, stream>>>(s, g, uv, da, bias, grad_out, N, P, guv, gda, gbias);
  });
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                                       \
  template cudaError_t launch_texture_forward<T>(TexStack<T>, const T*, const T*, const T*, int64_t, int64_t, int, \
                                                 int, T*, cudaStream_t);                                         \
  template cudaError_t launch_texture_backward<T>(TexStack<T>, TexStack<T>, const T*, const T*, const T*,        \
                                                  const T*, int64_t, int64_t, int, int, T*, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
