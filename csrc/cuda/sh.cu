// CUDA kernels for SH shading; the math is common/sh.h.
//
// Forward: one thread per element. Backward: one block per (batch entry, chunk of kShChunk elements); each thread
// writes its elements' normal and albedo gradients and accumulates its gamma partials, which the block adds with
// a fixed-shape tree in shared memory into partial[b][chunk][27]; a second kernel adds the chunks in order. No
// atomics: the results are deterministic run to run.
#include "common/sh.h"
#include "cuda/grid.cuh"
#include "cuda/sh_shade_launch.h"

namespace occ::cuda {
namespace {

constexpr int kShThreads = 256;
constexpr int64_t kShChunk = 4 * kShThreads;

template <typename S>
__global__ void sh_forward_kernel(const S* __restrict__ normals, const S* __restrict__ albedo, int64_t astride,
                                  const S* __restrict__ gamma, int64_t B, int64_t N, S* __restrict__ out) {
  const int64_t total = B * N;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / N, i = t - b * N;
    sh_shade_element(normals + 3 * t, albedo + b * astride + 3 * i, gamma + 27 * b, out + 3 * t);
  }
}

template <typename S>
__global__ void __launch_bounds__(kShThreads)
    sh_backward_kernel(const S* __restrict__ grad_out, const S* __restrict__ normals, const S* __restrict__ albedo,
                       int64_t astride, const S* __restrict__ gamma, int64_t B, int64_t N, int64_t chunks,
                       S* __restrict__ grad_normals, S* __restrict__ grad_albedo_full, S* __restrict__ partial) {
  __shared__ S buf[kShThreads];
  for (int64_t task = blockIdx.x; task < B * chunks; task += gridDim.x) {
    const int64_t b = task / chunks, j = task - b * chunks;
    const int64_t i0 = j * kShChunk;
    const int64_t i1 = i0 + kShChunk < N ? i0 + kShChunk : N;
    const S* g = gamma + 27 * b;
    S acc[27];
    for (int k = 0; k < 27; ++k) acc[k] = S(0);
    for (int64_t i = i0 + threadIdx.x; i < i1; i += kShThreads) {
      const int64_t e = b * N + i;
      sh_shade_backward_element(grad_out + 3 * e, normals + 3 * e, albedo + b * astride + 3 * i, g,
                                grad_normals + 3 * e, grad_albedo_full + 3 * e, false, acc);
    }
    for (int k = 0; k < 27; ++k) {  // fixed tree: the same additions in the same order on every run
      buf[threadIdx.x] = acc[k];
      __syncthreads();
      for (int s = kShThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
      }
      if (threadIdx.x == 0) partial[task * 27 + k] = buf[0];
      __syncthreads();
    }
  }
}

template <typename S>
__global__ void sh_gamma_reduce_kernel(const S* __restrict__ partial, int64_t B, int64_t chunks,
                                       S* __restrict__ grad_gamma) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < B * 27;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / 27, k = t - b * 27;
    S s = S(0);
    for (int64_t j = 0; j < chunks; ++j) s += partial[(b * chunks + j) * 27 + k];
    grad_gamma[t] = s;
  }
}

}  // namespace

int64_t sh_shade_chunks(int64_t N) { return (N + kShChunk - 1) / kShChunk; }

template <typename S>
cudaError_t launch_sh_shade_forward(const S* normals, const S* albedo, int64_t astride, const S* gamma, int64_t B,
                                    int64_t N, S* out, cudaStream_t stream) {
  const int64_t n = B * N;
  if (n == 0) return cudaSuccess;
  sh_forward_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(normals, albedo, astride, gamma, B, N, out);
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_sh_shade_backward(const S* grad_out, const S* normals, const S* albedo, int64_t astride,
                                     const S* gamma, int64_t B, int64_t N, S* grad_normals, S* grad_albedo_full,
                                     S* partial, S* grad_gamma, cudaStream_t stream) {
  if (B == 0) return cudaSuccess;
  const int64_t chunks = sh_shade_chunks(N);
  if (chunks > 0) {
    const int64_t tasks = B * chunks;
    const unsigned int grid = static_cast<unsigned int>(tasks < 65535LL * 32 ? tasks : 65535LL * 32);
    sh_backward_kernel<S><<<grid, kShThreads, 0, stream>>>(grad_out, normals, albedo, astride, gamma, B, N, chunks,
                                                           grad_normals, grad_albedo_full, partial);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  sh_gamma_reduce_kernel<S><<<blocks_for(B * 27), kThreads, 0, stream>>>(partial, B, chunks, grad_gamma);
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                                     \
  template cudaError_t launch_sh_shade_forward<T>(const T*, const T*, int64_t, const T*, int64_t, int64_t, T*, \
                                                  cudaStream_t);                                               \
  template cudaError_t launch_sh_shade_backward<T>(const T*, const T*, const T*, int64_t, const T*, int64_t,   \
                                                   int64_t, T*, T*, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
