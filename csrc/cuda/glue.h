// Helpers of the CUDA glue files (csrc/cuda/<op>.cpp): error checks and small host-to-device copies.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

namespace occ::cuda {

inline void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}

// A small host vector of indices as a device tensor (kept alive by the caller for the launch).
inline at::Tensor device_indices(const std::vector<int32_t>& v, const at::Device& device) {
  auto host = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(at::kInt));
  std::copy(v.begin(), v.end(), host.mutable_data_ptr<int32_t>());
  return host.to(device);
}

}  // namespace occ::cuda
