// CPU loops for the antialias op. The math is common/antialias.h; here we only choose the loop order.
//
// Each pass first writes one record per segment, then gathers per pixel; both steps run at::parallel_for over
// image rows, with a cheap fast path (compare ids; copy rows) and the element functions only where ids differ
// or a hit touches a pixel. Forward and colour gradient are deterministic gathers. The position gradient is a
// scatter from segments into vertices, made deterministic by a serial scatter per image in a fixed order (rows,
// then columns, then horizontal before vertical segment), with images in parallel. Instanced mode scatters
// straight into the image's own slice of grad_pos; range mode (one vertex set for all images) scatters into
// per-image partial buffers that are then summed over images in index order. Results are bit-identical from
// run to run and independent of the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <cstring>

#include "common/antialias.h"
#include "cpu/antialias.h"

namespace occ::cpu {
namespace {

// Rows per task: most pixels cost a few comparisons; a task of 16 rows amortises the scheduling.
constexpr int64_t kAaRowGrain = 16;

// f(b, y) for every image row, in parallel.
template <typename S, typename Fn>
void parallel_rows(const AaBatch<S>& a, Fn&& f) {
  at::parallel_for(0, a.B * a.H, kAaRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) f(row / a.H, static_cast<int>(row % a.H));
  });
}

// The analysis, out of line: the row loops below stay small and call it only where ids differ.
template <typename S>
[[gnu::noinline]] S segment_record(const AaBatch<S>& a, int64_t b, int x, int y, int d) {
  return aa_segment_record(a, b, x, y, d);
}

// One record per segment (common/antialias.h), (B, H, W, 2). Row loop: compare ids, analyse where they differ.
template <typename S>
at::Tensor segment_records(const AaBatch<S>& a, const at::TensorOptions& options) {
  at::Tensor seg = at::empty({a.B, a.H, a.W, 2}, options);
  S* rec = seg.mutable_data_ptr<S>();
  parallel_rows(a, [&](int64_t b, int y) {
    const float* ids = a.rast_of(b) + static_cast<int64_t>(y) * a.W * 4 + 3;  // stride 4
    S* out = rec + 2 * (b * a.pixels() + static_cast<int64_t>(y) * a.W);
    const bool has_up = y + 1 < a.H;
    for (int x = 0; x < a.W; ++x) {
      const float id = ids[4 * x];
      const bool right = x + 1 < a.W && !(id == ids[4 * x + 4]);  // NaN ids differ (as in aa_segment)
      const bool up = has_up && !(id == ids[4 * (x + static_cast<int64_t>(a.W))]);
      out[2 * x] = right ? segment_record(a, b, x, y, 0) : S(kAaNoHit);
      out[2 * x + 1] = up ? segment_record(a, b, x, y, 1) : S(kAaNoHit);
    }
  });
  return seg;
}

// f(b, y, x) for every pixel touched by a hit segment, after copying each row of src to dst (color-shaped):
// the gathers of common/antialias.h then run only where something happens.
template <typename S, typename Fn>
void copy_rows_then_touched(const AaBatch<S>& a, const S* seg, const S* src, S* dst, Fn&& f) {
  parallel_rows(a, [&](int64_t b, int y) {
    const int64_t row = a.image_offset(b) + static_cast<int64_t>(y) * a.W * a.C;
    std::memcpy(dst + row, src + row, sizeof(S) * a.W * a.C);
    for (int x = 0; x < a.W; ++x)
      if (aa_pixel_touched(a, seg, b, x, y)) f(b, y, x);
  });
}

// Serial scatter of every segment's position gradient of image b into gpos (that image's vertex set).
template <typename S>
void scatter_pos_grad_image(const AaBatch<S>& a, const S* seg, const S* grad_out, int64_t b, S* gpos) {
  const S* rec = seg + 2 * b * a.pixels();
  for (int y = 0; y < a.H; ++y)
    for (int x = 0; x < a.W; ++x)
      for (int d = 0; d < 2; ++d) {
        if (!aa_is_hit(rec[2 * (static_cast<int64_t>(y) * a.W + x) + d])) continue;  // records: inside only
        AaEdgeGrad<S> e;
        if (!aa_segment_pos_grad(a, seg, grad_out, b, x, y, d, e)) continue;
        for (int k = 0; k < 2; ++k) {
          S* dst = gpos + 4 * static_cast<int64_t>(e.v[k]);
          dst[0] += e.g[k][0];
          dst[1] += e.g[k][1];
          dst[3] += e.g[k][2];
        }
      }
}

}  // namespace

at::Tensor antialias_topology(const at::Tensor& tri) {
  const int64_t n = tri.size(0) * 3;
  auto topo = at::empty({tri.size(0), 3}, tri.options());
  if (n == 0) return topo;
  const int32_t* t = tri.const_data_ptr<int32_t>();
  auto keys = at::empty({n}, tri.options().dtype(at::kLong));
  int64_t* k = keys.mutable_data_ptr<int64_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) k[h] = aa_half_edge_key(t, h);
  });
  // A stable sort keeps equal keys in triangle order: the stored pair is then the same on every run.
  const auto [skeys, perm] = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto pair = at::empty({n, 2}, tri.options());
  const int64_t* sk = skeys.const_data_ptr<int64_t>();
  const int64_t* pm = perm.const_data_ptr<int64_t>();
  int32_t* pr = pair.mutable_data_ptr<int32_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) aa_group_pair(t, sk, pm, n, i, pr);
  });
  int32_t* out = topo.mutable_data_ptr<int32_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) out[h] = aa_opposite_vertex(t, sk, pr, n, h);
  });
  return topo;
}

at::Tensor antialias_forward(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                             const at::Tensor& tri, const at::Tensor& topo) {
  auto out = at::empty_like(color);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_forward_cpu", [&] {
    const auto a = aa_batch<scalar_t>(color, rast, pos, tri, topo);
    const auto seg = segment_records(a, color.options());
    const scalar_t* rec = seg.const_data_ptr<scalar_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    copy_rows_then_touched(a, rec, a.color, dst,
                           [&](int64_t b, int y, int x) { aa_forward_pixel(a, rec, b, x, y, dst); });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> antialias_backward(const at::Tensor& grad_out, const at::Tensor& color,
                                                      const at::Tensor& rast, const at::Tensor& pos,
                                                      const at::Tensor& tri, const at::Tensor& topo) {
  auto grad_color = at::empty_like(color);
  auto grad_pos = at::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_backward_cpu", [&] {
    const auto a = aa_batch<scalar_t>(color, rast, pos, tri, topo);
    const auto seg = segment_records(a, color.options());
    const scalar_t* rec = seg.const_data_ptr<scalar_t>();
    const scalar_t* g = grad_out.const_data_ptr<scalar_t>();
    scalar_t* gc = grad_color.mutable_data_ptr<scalar_t>();
    copy_rows_then_touched(a, rec, g, gc, [&](int64_t b, int y, int x) { aa_grad_color_pixel(a, rec, g, b, x, y, gc); });

    // Position gradient: one serial scatter per image. Range mode with several images needs one buffer each.
    const bool partials = a.pos_stride == 0 && a.B > 1;
    const int64_t m = static_cast<int64_t>(a.V) * 4;
    at::Tensor buf = partials ? at::zeros({a.B, a.V, 4}, pos.options()) : grad_pos;
    scalar_t* gp = buf.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, a.B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) scatter_pos_grad_image(a, rec, g, b, gp + b * (partials ? m : a.pos_stride));
    });
    if (partials) {  // sum over images in index order, whatever the thread count
      scalar_t* dst = grad_pos.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, m, 4096, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          scalar_t acc = gp[i];
          for (int64_t b = 1; b < a.B; ++b) acc += gp[b * m + i];
          dst[i] = acc;
        }
      });
    }
  });
  return {grad_color, grad_pos};
}

}  // namespace occ::cpu
