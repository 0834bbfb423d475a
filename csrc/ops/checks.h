// Argument checks shared by the ops (csrc/ops/*.cpp): the last line of defence for direct torch.ops.occrecon.*
// calls. Definitions in csrc/ops/checks.cpp.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cstdint>
#include <utility>

namespace occ::ops {

// (min, max) of an index tensor, memoised per tensor and version (see checks.cpp).
std::pair<int64_t, int64_t> index_range(const at::Tensor& index);
// float32 or float64, else an error naming op and argument.
void check_float(const at::Tensor& t, const char* op, const char* name);
// tri [F, 3] int32 on device with every index in [0, V).
void check_tri(const at::Tensor& tri, int64_t V, const at::Device& device, const char* op);
// rast [B, H, W, 4] float.
void check_rast(const at::Tensor& rast, const char* op, const char* name);

}  // namespace occ::ops

// The registration of an op file csrc/ops/<op>.cpp that defines register_<op>(library) (its schemas) and
// register_<op>_impl(library, key) (its kernels for DispatchKey::CPU and, in a CUDA build, ::CUDA).
#ifdef OCCRECON_WITH_CUDA
#define OCC_REGISTER_OP_CUDA(op) \
  TORCH_LIBRARY_IMPL(occrecon, CUDA, m) { occ::ops::register_##op##_impl(m, c10::DispatchKey::CUDA); }
#else
#define OCC_REGISTER_OP_CUDA(op)
#endif
#define OCC_REGISTER_OP(op)                                                                          \
  TORCH_LIBRARY_FRAGMENT(occrecon, m) { occ::ops::register_##op(m); }                                \
  TORCH_LIBRARY_IMPL(occrecon, CPU, m) { occ::ops::register_##op##_impl(m, c10::DispatchKey::CPU); } \
  OCC_REGISTER_OP_CUDA(op)
