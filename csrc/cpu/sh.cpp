// CPU loops for SH shading. The math is common/sh.h; here we only choose the loop order.
//
// Elements are split into fixed chunks of kShChunk (a constant, never the thread count). The forward runs the
// (batch, chunk) tasks in parallel. The backward runs chunks in parallel, each task looping over the batch: the
// gamma gradient of chunk j of batch entry b is a partial sum in element order, and the partials are added in
// chunk order afterwards; a batch-shared albedo's gradient is summed over b in batch order inside the task. So
// every result is bit-identical for any number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>

#include "common/sh.h"
#include "cpu/isa.h"
#include "cpu/sh_shade.h"

namespace occ::cpu {
namespace {

constexpr int64_t kShChunk = 1024;

template <typename S>
OCC_CPU_CLONES void sh_forward_range(const S* n, const S* a, const S* g, S* out, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) sh_shade_element(n + 3 * i, a + 3 * i, g, out + 3 * i);
}

template <typename S>
OCC_CPU_CLONES void sh_backward_range(const S* go, const S* n, const S* a, const S* g, S* gn, S* ga, bool acc_a,
                                      S* gg, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i)
    sh_shade_backward_element(go + 3 * i, n + 3 * i, a + 3 * i, g, gn + 3 * i, ga + 3 * i, acc_a, gg);
}

}  // namespace

at::Tensor sh_shade_forward(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  const int64_t B = normals.size(0), N = normals.size(1);
  const int64_t astride = albedo.size(0) == 1 ? 0 : 3 * N;
  auto out = at::empty({B, N, 3}, normals.options());
  const int64_t chunks = (N + kShChunk - 1) / kShChunk;
  if (B * chunks == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shade_forward_cpu", [&] {
    const scalar_t* n = normals.const_data_ptr<scalar_t>();
    const scalar_t* a = albedo.const_data_ptr<scalar_t>();
    const scalar_t* g = gamma.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / chunks, j = t % chunks;
        const int64_t i0 = j * kShChunk, i1 = std::min(N, i0 + kShChunk);
        sh_forward_range(n + b * 3 * N, a + b * astride, g + b * 27, o + b * 3 * N, i0, i1);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shade_backward(const at::Tensor& grad_out, const at::Tensor& normals,
                                                                 const at::Tensor& albedo, const at::Tensor& gamma) {
  const int64_t B = normals.size(0), N = normals.size(1);
  const bool shared = albedo.size(0) == 1 && B != 1;
  const int64_t astride = albedo.size(0) == 1 ? 0 : 3 * N;
  auto grad_n = at::empty_like(normals);
  auto grad_a = shared ? at::zeros_like(albedo) : at::empty_like(albedo);
  auto grad_g = at::zeros({B, 9, 3}, gamma.options());
  const int64_t chunks = (N + kShChunk - 1) / kShChunk;
  if (B * chunks == 0) return {grad_n, grad_a, grad_g};
  // partial[b][j][27]: the gamma gradient of chunk j of batch entry b.
  auto partial = at::zeros({B, chunks, 27}, gamma.options());
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shade_backward_cpu", [&] {
    const scalar_t* go = grad_out.const_data_ptr<scalar_t>();
    const scalar_t* n = normals.const_data_ptr<scalar_t>();
    const scalar_t* a = albedo.const_data_ptr<scalar_t>();
    const scalar_t* g = gamma.const_data_ptr<scalar_t>();
    scalar_t* gn = grad_n.mutable_data_ptr<scalar_t>();
    scalar_t* ga = grad_a.mutable_data_ptr<scalar_t>();
    scalar_t* part = partial.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t i0 = j * kShChunk, i1 = std::min(N, i0 + kShChunk);
        for (int64_t b = 0; b < B; ++b) {  // batch order: a shared albedo's gradient is summed b = 0, 1, ...
          const int64_t off = b * 3 * N;
          sh_backward_range(go + off, n + off, a + b * astride, g + b * 27, gn + off,
                            ga + (shared ? 0 : b * astride), shared, part + (b * chunks + j) * 27, i0, i1);
        }
      }
    });
    scalar_t* gg = grad_g.mutable_data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)  // chunk order: fixed, independent of the threads
      for (int64_t j = 0; j < chunks; ++j)
        for (int k = 0; k < 27; ++k) gg[b * 27 + k] += part[(b * chunks + j) * 27 + k];
  });
  return {grad_n, grad_a, grad_g};
}

}  // namespace occ::cpu
