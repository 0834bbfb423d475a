// Torch-free CUDA launchers of vertex_normals: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/vertex_normals.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace occ::cuda {

// vertex_normals (csrc/common/normals.h). Adjacency: keys (3F int64) = the vertex of each corner, V for corners of
// triangles with an index outside [0, V); the glue sorts them stably into adj (corner ids) and offsets (V + 1).
// faces: scratch B * F * 3; grad_acc: scratch B * V * 3; corners: scratch B * F * 9.
cudaError_t launch_normals_adjacency_keys(const int32_t* tri, int64_t F, int64_t V, int64_t* keys,
                                          cudaStream_t stream);
template <typename S>
cudaError_t launch_vertex_normals_forward(const S* vertices, const int32_t* tri, const int64_t* offsets,
                                          const int32_t* adj, int64_t B, int64_t V, int64_t F, S eps, S* faces,
                                          S* normals, S* norms, cudaStream_t stream);
template <typename S>
cudaError_t launch_vertex_normals_backward(const S* grad_normals, const S* vertices, const int32_t* tri,
                                           const int64_t* offsets, const int32_t* adj, const S* normals,
                                           const S* norms, int64_t B, int64_t V, int64_t F, S eps, S* grad_acc,
                                           S* corners, S* grad_vertices, cudaStream_t stream);

}  // namespace occ::cuda
