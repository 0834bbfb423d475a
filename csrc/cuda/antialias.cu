// CUDA kernels for the antialias op: one thread per pixel (or half-edge); the math is common/antialias.h.
//
// Each pass writes one record per segment, then gathers per pixel: forward and colour gradient are deterministic. The position gradient is a scatter from
// segments into vertices with atomicAdd: its float sums may differ in the last bits from run to run (the order
// of the additions is not fixed). The topology kernels are deterministic given the stably sorted keys.
#include "common/antialias.h"
#include "cuda/grid.cuh"
#include "cuda/antialias_launch.h"

namespace occ::cuda {
namespace {

// Grid-stride loop over n elements: f(i).
template <typename F>
__device__ __forceinline__ void for_each_index(int64_t n, F&& f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(i);
}

__global__ void aa_topology_keys_kernel(const int32_t* __restrict__ tri, int64_t n, int64_t* __restrict__ keys) {
  for_each_index(n, [&](int64_t h) { keys[h] = aa_half_edge_key(tri, h); });
}

__global__ void aa_topology_pairs_kernel(const int32_t* __restrict__ tri, const int64_t* __restrict__ skeys,
                                         const int64_t* __restrict__ perm, int64_t n, int32_t* __restrict__ pair) {
  for_each_index(n, [&](int64_t i) { aa_group_pair(tri, skeys, perm, n, i, pair); });
}

__global__ void aa_topology_resolve_kernel(const int32_t* __restrict__ tri, const int64_t* __restrict__ skeys,
                                           const int32_t* __restrict__ pair, int64_t n, int32_t* __restrict__ topo) {
  for_each_index(n, [&](int64_t h) { topo[h] = aa_opposite_vertex(tri, skeys, pair, n, h); });
}

template <typename S>
__global__ void aa_records_kernel(AaBatch<S> a, S* __restrict__ seg) {
  for_each_pixel(a.B, a.H, a.W, [&](int64_t b, int y, int x, int64_t) { aa_record_pixel(a, b, x, y, seg); });
}

template <typename S>
__global__ void aa_forward_kernel(AaBatch<S> a, const S* __restrict__ seg, S* __restrict__ out) {
  for_each_pixel(a.B, a.H, a.W, [&](int64_t b, int y, int x, int64_t) { aa_forward_pixel(a, seg, b, x, y, out); });
}

template <typename S>
__global__ void aa_grad_color_kernel(AaBatch<S> a, const S* __restrict__ seg, const S* __restrict__ grad_out,
                                     S* __restrict__ grad_color) {
  for_each_pixel(a.B, a.H, a.W, [&](int64_t b, int y, int x, int64_t) {
    aa_grad_color_pixel(a, seg, grad_out, b, x, y, grad_color);
  });
}

// grad_pos must be zeroed by the caller. Range mode (pos_stride = 0): every image adds into the one vertex set.
template <typename S>
__global__ void aa_grad_pos_kernel(AaBatch<S> a, const S* __restrict__ seg, const S* __restrict__ grad_out,
                                   S* __restrict__ grad_pos) {
  for_each_pixel(a.B, a.H, a.W, [&](int64_t b, int y, int x, int64_t) {
    for (int d = 0; d < 2; ++d) {
      AaEdgeGrad<S> e;
      if (!aa_segment_inside(a.H, a.W, x, y, d) || !aa_segment_pos_grad(a, seg, grad_out, b, x, y, d, e)) continue;
      for (int k = 0; k < 2; ++k) {
        S* dst = grad_pos + b * a.pos_stride + 4 * static_cast<int64_t>(e.v[k]);
        atomicAdd(dst + 0, e.g[k][0]);
        atomicAdd(dst + 1, e.g[k][1]);
        atomicAdd(dst + 3, e.g[k][2]);
      }
    }
  });
}

}  // namespace

cudaError_t launch_antialias_topology_keys(const int32_t* tri, int64_t F, int64_t* keys, cudaStream_t stream) {
  const int64_t n = 3 * F;
  if (n == 0) return cudaSuccess;
  aa_topology_keys_kernel<<<blocks_for(n), kThreads, 0, stream>>>(tri, n, keys);
  return cudaGetLastError();
}

cudaError_t launch_antialias_topology_resolve(const int32_t* tri, int64_t F, const int64_t* sorted_keys,
                                              const int64_t* perm, int32_t* pair, int32_t* topo,
                                              cudaStream_t stream) {
  const int64_t n = 3 * F;
  if (n == 0) return cudaSuccess;
  aa_topology_pairs_kernel<<<blocks_for(n), kThreads, 0, stream>>>(tri, sorted_keys, perm, n, pair);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  aa_topology_resolve_kernel<<<blocks_for(n), kThreads, 0, stream>>>(tri, sorted_keys, pair, n, topo);
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_antialias_forward(const AaBatch<S>& a, S* seg, S* out, cudaStream_t stream) {
  const int64_t n = a.B * a.H * static_cast<int64_t>(a.W);
  if (n == 0) return cudaSuccess;
  aa_records_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(a, seg);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  aa_forward_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(a, seg, out);
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_antialias_backward(const AaBatch<S>& a, S* seg, const S* grad_out, S* grad_color, S* grad_pos,
                                      cudaStream_t stream) {
  const int64_t n = a.B * a.H * static_cast<int64_t>(a.W);
  if (n == 0) return cudaSuccess;
  aa_records_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(a, seg);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  aa_grad_color_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(a, seg, grad_out, grad_color);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  aa_grad_pos_kernel<S><<<blocks_for(n), kThreads, 0, stream>>>(a, seg, grad_out, grad_pos);
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                               \
  template cudaError_t launch_antialias_forward<T>(const AaBatch<T>&, T*, T*, cudaStream_t);            \
  template cudaError_t launch_antialias_backward<T>(const AaBatch<T>&, T*, const T*, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
