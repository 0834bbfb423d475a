// CUDA kernels for vertex normals; the math is common/normals.h. One thread per face (face vectors, corner
// gradients) or per vertex (gathers over the CSR adjacency built by the glue with a stable sort). Gathers only,
// no atomics: results are deterministic run to run.
#include "common/normals.h"
#include "cuda/grid.cuh"
#include "cuda/vertex_normals_launch.h"

namespace occ::cuda {
namespace {

template <typename S>
__global__ void faces_kernel(const S* __restrict__ p, const int32_t* __restrict__ tri, int64_t B, int64_t V,
                             int64_t F, S* __restrict__ c) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * F;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / F, f = i - b * F;
    face_vector(p + b * 3 * V, tri + 3 * f, V, c + 3 * i);
  }
}

template <typename S>
__global__ void gather_kernel(const S* __restrict__ c, const int64_t* __restrict__ offsets,
                              const int32_t* __restrict__ adj, int64_t B, int64_t V, int64_t F, S eps,
                              S* __restrict__ n, S* __restrict__ r) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * V;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / V, v = i - b * V;
    vertex_normal_gather(c + b * 3 * F, adj, offsets[v], offsets[v + 1], eps, n + 3 * i, r + i);
  }
}

template <typename S>
__global__ void grad_acc_kernel(const S* __restrict__ g, const S* __restrict__ n, const S* __restrict__ r,
                                int64_t total, S eps, S* __restrict__ ga) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    vertex_normal_grad_acc(g + 3 * i, n + 3 * i, r[i], eps, ga + 3 * i);
}

template <typename S>
__global__ void corners_kernel(const S* __restrict__ p, const int32_t* __restrict__ tri, const S* __restrict__ ga,
                               int64_t B, int64_t V, int64_t F, S* __restrict__ k) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * F;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / F, f = i - b * F;
    face_vector_backward(p + b * 3 * V, tri + 3 * f, V, ga + b * 3 * V, k + 9 * i);
  }
}

template <typename S>
__global__ void gather_corners_kernel(const S* __restrict__ k, const int64_t* __restrict__ offsets,
                                      const int32_t* __restrict__ adj, int64_t B, int64_t V, int64_t F,
                                      S* __restrict__ gp) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < B * V;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / V, v = i - b * V;
    vertex_gather_corners(k + b * 9 * F, adj, offsets[v], offsets[v + 1], gp + 3 * i);
  }
}

}  // namespace

template <typename S>
cudaError_t launch_vertex_normals_forward(const S* vertices, const int32_t* tri, const int64_t* offsets,
                                          const int32_t* adj, int64_t B, int64_t V, int64_t F, S eps, S* faces,
                                          S* normals, S* norms, cudaStream_t stream) {
  if (B * V == 0) return cudaSuccess;
  if (B * F > 0) faces_kernel<S><<<blocks_for(B * F), kThreads, 0, stream>>>(vertices, tri, B, V, F, faces);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  gather_kernel<S><<<blocks_for(B * V), kThreads, 0, stream>>>(faces, offsets, adj, B, V, F, eps, normals, norms);
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch_vertex_normals_backward(const S* grad_normals, const S* vertices, const int32_t* tri,
                                           const int64_t* offsets, const int32_t* adj, const S* normals,
                                           const S* norms, int64_t B, int64_t V, int64_t F, S eps, S* grad_acc,
                                           S* corners, S* grad_vertices, cudaStream_t stream) {
  if (B * V == 0) return cudaSuccess;
  grad_acc_kernel<S><<<blocks_for(B * V), kThreads, 0, stream>>>(grad_normals, normals, norms, B * V, eps, grad_acc);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (B * F > 0) corners_kernel<S><<<blocks_for(B * F), kThreads, 0, stream>>>(vertices, tri, grad_acc, B, V, F, corners);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  gather_corners_kernel<S><<<blocks_for(B * V), kThreads, 0, stream>>>(corners, offsets, adj, B, V, F, grad_vertices);
  return cudaGetLastError();
}

namespace {
__global__ void adjacency_keys_kernel(const int32_t* __restrict__ tri, int64_t F, int64_t V, int64_t* __restrict__ keys) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < 3 * F;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t* t = tri + 3 * (i / 3);
    keys[i] = triangle_in_range(t, V) ? static_cast<int64_t>(tri[i]) : V;  // out-of-range triangles sort last
  }
}
}  // namespace

cudaError_t launch_normals_adjacency_keys(const int32_t* tri, int64_t F, int64_t V, int64_t* keys,
                                          cudaStream_t stream) {
  if (F == 0) return cudaSuccess;
  adjacency_keys_kernel<<<blocks_for(3 * F), kThreads, 0, stream>>>(tri, F, V, keys);
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                                        \
  template cudaError_t launch_vertex_normals_forward<T>(const T*, const int32_t*, const int64_t*, const int32_t*, \
                                                        int64_t, int64_t, int64_t, T, T*, T*, T*, cudaStream_t);  \
  template cudaError_t launch_vertex_normals_backward<T>(const T*, const T*, const int32_t*, const int64_t*,      \
                                                         const int32_t*, const T*, const T*, int64_t, int64_t,    \
                                                         int64_t, T, T*, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
