// Torch-free CUDA launchers of rasterize: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/rasterize.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace occ::cuda {

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

}  // namespace occ::cuda
