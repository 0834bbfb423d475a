// Torch-free CUDA launchers: raw pointers and a stream in, a cudaError_t out. The glue in ops_cuda.cpp turns
// tensors into pointers; nvcc compile-checks the .cu files without any CUDA build of torch.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/antialias.h"

namespace occ::cuda {

template <typename scalar_t>
cudaError_t launch_neighbour_min_forward(const scalar_t* target, const scalar_t* render, const uint8_t* region,
                                         int64_t B, int C, int H, int W, int k, scalar_t* d2, int32_t* idx,
                                         cudaStream_t stream);

template <typename scalar_t>
cudaError_t launch_neighbour_min_backward(const scalar_t* grad_d2, const scalar_t* target, const scalar_t* render,
                                          const int32_t* idx, int64_t B, int C, int H, int W, int k,
                                          scalar_t* grad_target, scalar_t* grad_render, cudaStream_t stream);

// rasterize: ranges_dev = device copy of ranges [B, 2] (range mode) or nullptr (instanced: every image draws
// triangles [0, F)); V = vertices per image (the kernels skip triangles naming a vertex outside [0, V)); max_count = the largest per-image triangle count; vstride = B-stride of pos (V * 4 or 0);
// keys = scratch of B * H * W 64-bit words.
template <typename scalar_t>
cudaError_t launch_rasterize_forward(const scalar_t* pos, const int32_t* tri, int64_t F, int64_t V,
                                     const int32_t* ranges_dev,
                                     int64_t max_count, int64_t vstride, int64_t B, int H, int W,
                                     const scalar_t* peel, unsigned long long* peel_keys,
                                     unsigned long long* keys, scalar_t* rast, scalar_t* db, cudaStream_t stream);

// grad_pos must be zero-initialised; grad_db may be nullptr.
template <typename scalar_t>
cudaError_t launch_rasterize_backward(const scalar_t* pos, const int32_t* tri, int64_t F, int64_t V, int64_t vstride,
                                      const scalar_t* rast, const scalar_t* grad_rast, const scalar_t* grad_db,
                                      int64_t B, int H, int W, scalar_t* grad_pos, cudaStream_t stream);

// interpolate: V = attr's vertex count; astride = B-stride of attr (V * C, or 0 when broadcast); diff_dev = device copy of the nd indices.
template <typename scalar_t>
cudaError_t launch_interpolate_forward(const scalar_t* attr, int64_t astride, const scalar_t* rast,
                                       const scalar_t* rast_db, const int32_t* tri, int64_t F, int64_t V,
                                       const int32_t* diff_dev, int nd, int64_t B, int H, int W, int C, scalar_t* out, scalar_t* out_da,
                                       cudaStream_t stream);

// grad_attr, grad_rast and grad_db must be zero-initialised; grad_da may be nullptr.
template <typename scalar_t>
cudaError_t launch_interpolate_backward(const scalar_t* attr, int64_t astride, const scalar_t* rast,
                                        const scalar_t* rast_db, const int32_t* tri, int64_t F, int64_t V,
                                        const int32_t* diff_dev, int nd, int64_t B, int H, int W, int C,
                                        const scalar_t* grad_out, const scalar_t* grad_da, scalar_t* grad_attr,
                                        scalar_t* grad_rast, scalar_t* grad_db, cudaStream_t stream);

// antialias (csrc/common/antialias.h): AaBatch holds device pointers to contiguous buffers.
//
// Topology: keys of the 3F half-edges; after a stable sort of the keys (perm = the sort's indices), pair
// (scratch, 3F*2 int32) and topo (3F int32) are filled.
cudaError_t launch_antialias_topology_keys(const int32_t* tri, int64_t F, int64_t* keys, cudaStream_t stream);
cudaError_t launch_antialias_topology_resolve(const int32_t* tri, int64_t F, const int64_t* sorted_keys,
                                              const int64_t* perm, int32_t* pair, int32_t* topo,
                                              cudaStream_t stream);

// seg: scratch for one record per segment, B*H*W*2 elements.
template <typename S>
cudaError_t launch_antialias_forward(const AaBatch<S>& a, S* seg, S* out, cudaStream_t stream);

// grad_pos must be zeroed; it is accumulated with atomicAdd.
template <typename S>
cudaError_t launch_antialias_backward(const AaBatch<S>& a, S* seg, const S* grad_out, S* grad_color, S* grad_pos,
                                      cudaStream_t stream);

// sh_shade (csrc/common/sh.h). astride = B-stride of albedo (3N, or 0 when shared by the batch).
template <typename S>
cudaError_t launch_sh_shade_forward(const S* normals, const S* albedo, int64_t astride, const S* gamma, int64_t B,
                                    int64_t N, S* out, cudaStream_t stream);

// partial: scratch of B * sh_shade_chunks(N) * 27 elements. grad_albedo_full: [B, N, 3] (per-entry albedo
// gradient; the caller sums it over the batch for a shared albedo).
int64_t sh_shade_chunks(int64_t N);
template <typename S>
cudaError_t launch_sh_shade_backward(const S* grad_out, const S* normals, const S* albedo, int64_t astride,
                                     const S* gamma, int64_t B, int64_t N, S* grad_normals, S* grad_albedo_full,
                                     S* partial, S* grad_gamma, cudaStream_t stream);

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
