// Torch-free CUDA launchers of antialias: raw pointers and a stream in, a cudaError_t out (the glue in
// csrc/cuda/antialias.cpp turns tensors into pointers; nvcc compile-checks the .cu files without a CUDA torch).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/antialias.h"

namespace occ::cuda {

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

}  // namespace occ::cuda
