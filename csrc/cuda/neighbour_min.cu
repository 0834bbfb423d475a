// CUDA kernels for the neighbourhood-min op: one thread per pixel; the math is common/neighbour_min.h.
#include "common/neighbour_min.h"
#include "cuda/grid.cuh"
#include "cuda/neighbour_min_launch.h"

namespace occ::cuda {
namespace {

template <int NC, typename scalar_t>
__global__ void neighbour_min_forward_kernel(const scalar_t* __restrict__ target, const scalar_t* __restrict__ render,
                                             const uint8_t* __restrict__ region, int64_t B, int C, int H, int W, int k,
                                             scalar_t* __restrict__ d2, int32_t* __restrict__ idx) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for_each_pixel(B, H, W, [&](int64_t b, int y, int x, int64_t i) {
    neighbour_min_pixel<NC, scalar_t>(target + b * C * plane, render + b * C * plane,
                                      region ? region + b * plane : nullptr, C, H, W, k, y, x, d2 + i, idx + i);
  });
}

template <typename scalar_t>
__global__ void neighbour_min_backward_kernel(const scalar_t* __restrict__ grad_d2, const scalar_t* __restrict__ target,
                                              const scalar_t* __restrict__ render, const int32_t* __restrict__ idx,
                                              int64_t B, int C, int H, int W, int k,
                                              scalar_t* __restrict__ grad_target, scalar_t* __restrict__ grad_render) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  for_each_pixel(B, H, W, [&](int64_t b, int y, int x, int64_t) {
    const int64_t img = b * C * plane;
    neighbour_min_backward_pixel<scalar_t>(grad_d2 + b * plane, target + img, render + img, idx + b * plane, C, H, W,
                                           k, y, x, grad_target + img, grad_render + img);
  });
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_neighbour_min_forward(const scalar_t* target, const scalar_t* render, const uint8_t* region,
                                         int64_t B, int C, int H, int W, int k, scalar_t* d2, int32_t* idx,
                                         cudaStream_t stream) {
  const int64_t n = B * H * static_cast<int64_t>(W);
  if (n == 0) return cudaSuccess;
  if (C == 3)  // RGB gets a compile-time channel loop, as on the CPU
    neighbour_min_forward_kernel<3, scalar_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(target, render, region, B, C, H, W, k, d2, idx);
  else
    neighbour_min_forward_kernel<0, scalar_t>
        <<<blocks_for(n), kThreads, 0, stream>>>(target, render, region, B, C, H, W, k, d2, idx);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_neighbour_min_backward(const scalar_t* grad_d2, const scalar_t* target, const scalar_t* render,
                                          const int32_t* idx, int64_t B, int C, int H, int W, int k,
                                          scalar_t* grad_target, scalar_t* grad_render, cudaStream_t stream) {
  const int64_t n = B * H * static_cast<int64_t>(W);
  if (n == 0) return cudaSuccess;
  neighbour_min_backward_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
      grad_d2, target, render, idx, B, C, H, W, k, grad_target, grad_render);
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                                      \
  template cudaError_t launch_neighbour_min_forward<T>(const T*, const T*, const uint8_t*, int64_t, int, int, int, \
                                                       int, T*, int32_t*, cudaStream_t);                        \
  template cudaError_t launch_neighbour_min_backward<T>(const T*, const T*, const T*, const int32_t*, int64_t, \
                                                        int, int, int, int, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
