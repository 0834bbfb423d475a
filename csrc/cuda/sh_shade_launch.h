// Torch-free CUDA launchers of sh_shade: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/sh_shade.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace occ::cuda {

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

}  // namespace occ::cuda
