// Torch-free CUDA launchers of texture sampling (csrc/cuda/texture.cu over csrc/common/texture.h); the glue in
// csrc/cuda/texture.cpp turns tensors into a TexStack and pointers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/texture.h"

namespace occ::cuda {

// One thread per output pixel: N images of P pixels, C = s.C channels; da / bias nullptr when absent.
template <typename T>
cudaError_t launch_texture_forward(TexStack<T> s, const T* uv, const T* da, const T* bias, int64_t N, int64_t P,
                                   int filter, int boundary, T* out, cudaStream_t stream);

// One thread per pixel; texture gradients (g: zero-filled, same shapes as s; a level pointer may be nullptr) by
// atomicAdd, so their rounding may vary run to run. guv [N P 2], gda [N P 4] / gbias [N P] when da / bias.
template <typename T>
cudaError_t launch_texture_backward(TexStack<T> s, TexStack<T> g, const T* uv, const T* da, const T* bias,
                                    const T* grad_out, int64_t N, int64_t P, int filter, int boundary, T* guv, T* gda,
                                    T* gbias, cudaStream_t stream);

}  // namespace occ::cuda
