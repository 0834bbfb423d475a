// CPU texture sampling: at::parallel_for over pixels (forward) and over fixed pixel groups (backward).
// Backward: the uv / uv_da / bias gradients are per pixel. The texture gradients are scattered: with one texture
// per image each image owns its slice (images in parallel); with one texture shared by every image the pixels are
// split into G fixed groups (independent of the thread count), each scattering serially into its own buffer, and
// the buffers are summed in group order. Either way the result is deterministic and thread-count independent.
#include "cpu/texture.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/ops/sum.h>

#include <algorithm>

#include "common/texture.h"
#include "cpu/isa.h"
#include "ops/texture_stack.h"

namespace occ::cpu {
namespace {

// A shared texture's gradient gets one private buffer (a whole stack, zero-filled, then summed) per group of
// pixels: a group holds at least kMinGroupPixels pixels and at least as many pixels as the stack has texels (so
// filling and summing a buffer costs no more than the scatter it serves), at most kMaxGroups groups. The count
// depends on the sizes only, never on the thread count.
constexpr int64_t kMinGroupPixels = 65536;
constexpr int64_t kMaxGroups = 4;

using occ::ops::texture_stack;

// Pixels [q0, q1) of the batch (image q / P, tracked incrementally: no division per pixel).
template <int F, int BM, int CC, typename T>
OCC_CPU_CLONES void forward_range(const TexStack<T>& s, const T* uv, const T* da, const T* bias, int64_t P,
                                  int64_t q0, int64_t q1, T* out) {
  if (q0 >= q1) return;  // (also P = 0: an empty image)
  int64_t n = q0 / P, p = q0 - n * P;
  const int C = s.C;
  constexpr int U = kTexUV<BM>, D = kTexDA<BM>;
  for (int64_t q = q0; q < q1; ++q) {
    tex_forward_any<F, BM, CC>(s, n, uv + U * q, da ? da + D * q : nullptr, bias ? bias + q : nullptr, out + q * C);
    if (++p == P) {
      p = 0;
      ++n;
    }
  }
}

template <int F, int BM, int CC, typename T>
OCC_CPU_CLONES void backward_range(const TexStack<T>& s, const TexStack<T>& g, const T* uv, const T* da,
                                   const T* bias, const T* dy, int64_t P, int64_t q0, int64_t q1, T* guv, T* gda,
                                   T* gb) {
  if (q0 >= q1) return;  // (also P = 0: an empty image)
  int64_t n = q0 / P, p = q0 - n * P;
  const int C = s.C;
  constexpr int U = kTexUV<BM>, D = kTexDA<BM>;
  for (int64_t q = q0; q < q1; ++q) {
    tex_backward_any<F, BM, CC>(s, g, n, uv + U * q, da ? da + D * q : nullptr, bias ? bias + q : nullptr, dy + q * C,
                                guv + U * q, gda ? gda + D * q : nullptr, gb ? gb + q : nullptr, PlainAdd{});
    if (++p == P) {
      p = 0;
      ++n;
    }
  }
}

}  // namespace

at::Tensor texture_forward(const std::vector<at::Tensor>& levels, const at::Tensor& uv, const at::Tensor& uv_da,
                           const at::Tensor& bias, int64_t filter, int64_t boundary) {
  const int64_t N = uv.size(0), P = uv.size(1) * uv.size(2), C = levels[0].size(levels[0].dim() - 1);
  auto out = at::empty({N, uv.size(1), uv.size(2), C}, uv.options());
  AT_DISPATCH_FLOATING_TYPES(uv.scalar_type(), "texture_forward_cpu", [&] {
    const TexStack<scalar_t> s = texture_stack<scalar_t>(levels);
    const scalar_t* uvp = uv.const_data_ptr<scalar_t>();
    const scalar_t* dap = uv_da.defined() ? uv_da.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bp = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    tex_dispatch(static_cast<int>(filter), static_cast<int>(boundary), [&](auto F, auto BM) {
      tex_dispatch_channels(static_cast<int>(C), [&](auto CC) {
        at::parallel_for(0, N * P, 4096, [&](int64_t q0, int64_t q1) {
          forward_range<decltype(F)::value, decltype(BM)::value, decltype(CC)::value>(s, uvp, dap, bp, P, q0, q1, o);
        });
      });
    });
  });
  return out;
}

std::vector<at::Tensor> texture_backward(const std::vector<at::Tensor>& levels, const at::Tensor& uv,
                                         const at::Tensor& uv_da, const at::Tensor& bias, int64_t filter,
                                         int64_t boundary, const at::Tensor& grad_out) {
  const int64_t N = uv.size(0), P = uv.size(1) * uv.size(2), C = levels[0].size(levels[0].dim() - 1);
  const int64_t L = static_cast<int64_t>(levels.size());
  const bool shared = levels[0].size(0) == 1;
  // Levels a filter mode never reads get zeros, without a scatter buffer of their own.
  const int64_t used = (filter == kTexLinearMipNearest || filter == kTexLinearMipLinear) ? L : 1;
  int64_t texels = 0;
  for (int64_t l = 0; l < used; ++l) texels += levels[l].numel() / C;
  const int64_t per_group = std::max(kMinGroupPixels, texels);
  const int64_t G = shared ? std::clamp<int64_t>((N * P + per_group - 1) / per_group, 1, kMaxGroups) : 1;
  std::vector<at::Tensor> grads;
  std::vector<at::Tensor> buffers;  // [G, ...] per used level when shared, else the gradients themselves
  for (int64_t l = 0; l < L; ++l) {
    if (l < used && G > 1) {
      auto sizes = levels[l].sizes().vec();
      sizes[0] = G;
      buffers.push_back(at::zeros(sizes, levels[l].options()));
    } else {
      buffers.push_back(at::zeros_like(levels[l]));
    }
  }
  auto grad_uv = at::empty_like(uv);
  auto grad_da = uv_da.defined() ? at::empty_like(uv_da) : at::zeros({0}, uv.options());
  auto grad_bias = bias.defined() ? at::empty_like(bias) : at::zeros({0}, uv.options());
  AT_DISPATCH_FLOATING_TYPES(uv.scalar_type(), "texture_backward_cpu", [&] {
    const TexStack<scalar_t> s = texture_stack<scalar_t>(levels);
    const scalar_t* uvp = uv.const_data_ptr<scalar_t>();
    const scalar_t* dap = uv_da.defined() ? uv_da.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* bp = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* dy = grad_out.const_data_ptr<scalar_t>();
    scalar_t* guv = grad_uv.mutable_data_ptr<scalar_t>();
    scalar_t* gda = uv_da.defined() ? grad_da.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gb = bias.defined() ? grad_bias.mutable_data_ptr<scalar_t>() : nullptr;
    auto run = [&](int64_t q0, int64_t q1, const TexStack<scalar_t>& g) {
      tex_dispatch(static_cast<int>(filter), static_cast<int>(boundary), [&](auto F, auto BM) {
        tex_dispatch_channels(static_cast<int>(C), [&](auto CC) {
          backward_range<decltype(F)::value, decltype(BM)::value, decltype(CC)::value>(s, g, uvp, dap, bp, dy, P, q0,
                                                                                       q1, guv, gda, gb);
        });
      });
    };
    auto group_stack = [&](int64_t g) {
      TexStack<scalar_t> gs = s;
      for (int64_t l = 0; l < L; ++l) {
        scalar_t* base = buffers[l].mutable_data_ptr<scalar_t>();
        gs.level[l] = l < used ? base + (G > 1 ? g * levels[l].numel() : 0) : nullptr;
      }
      return gs;
    };
    if (!shared) {  // image n scatters only into texture n
      const TexStack<scalar_t> gs = group_stack(0);
      at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) { run(n0 * P, n1 * P, gs); });
    } else {
      at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) run(g * N * P / G, (g + 1) * N * P / G, group_stack(g));
      });
    }
  });
  for (int64_t l = 0; l < L; ++l) grads.push_back(l < used && G > 1 ? buffers[l].sum(0, /*keepdim=*/true) : buffers[l]);
  grads.push_back(grad_uv);
  grads.push_back(grad_da);
  grads.push_back(grad_bias);
  return grads;
}

}  // namespace occ::cpu
