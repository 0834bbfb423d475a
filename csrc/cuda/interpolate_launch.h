// Torch-free CUDA launchers of interpolate: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/interpolate.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace occ::cuda {

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

}  // namespace occ::cuda
