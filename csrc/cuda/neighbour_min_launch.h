// Torch-free CUDA launchers of neighbour_min: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/neighbour_min.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace occ::cuda {

template <typename scalar_t>
cudaError_t launch_neighbour_min_forward(const scalar_t* target, const scalar_t* render, const uint8_t* region,
                                         int64_t B, int C, int H, int W, int k, scalar_t* d2, int32_t* idx,
                                         cudaStream_t stream);

template <typename scalar_t>
cudaError_t launch_neighbour_min_backward(const scalar_t* grad_d2, const scalar_t* target, const scalar_t* render,
                                          const int32_t* idx, int64_t B, int C, int H, int W, int k,
                                          scalar_t* grad_target, scalar_t* grad_render, cudaStream_t stream);

}  // namespace occ::cuda
