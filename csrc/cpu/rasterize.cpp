// CPU loops for rasterize (forward and position gradient). The math is common/rasterize.h.
//
// Forward: a vertex pass snaps the vertices; triangles are drawn into a per-pixel 64-bit (depth key, id) buffer
// keeping the minimum (the same order as the CUDA atomicMin); a per-pixel pass resolves (u, v, z/w, id) and rast_db.
// With at least as many images as threads, each thread renders whole images; otherwise each image's triangles are
// split into one chunk per thread, each with its own key buffer, and the resolve keeps the minimum over chunks.
// The minimum does not depend on the split, so the result does not depend on the thread count. Backward: per-image serial scatter into that image's gradient (instanced mode) or into
// a private per-image buffer summed in image order (range mode): deterministic.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <vector>

#include "common/rasterize.h"
#include "cpu/isa.h"
#include "cpu/rasterize.h"

namespace occ::cpu {
namespace {

constexpr int64_t kTrianglesPerChunk = 2048;  // smallest chunk worth a thread
constexpr uint64_t kEmptyKey = ~uint64_t(0);
// Fixed number of partial position gradients in range mode (enough to keep every thread busy).
constexpr int64_t kGradGroups = 8;

// Triangles [first, first + count) of image b, and where its vertices start.
struct ImageRange {
  int64_t first, count, vertex_offset;
};

ImageRange image_range(int64_t b, bool instanced, int64_t F, int64_t V, const int32_t* ranges) {
  if (instanced) return {0, F, b * V * 4};
  return {ranges[2 * b], ranges[2 * b + 1], 0};
}

// Snapped vertices of one image (the vertex pass).
struct SnappedVertices {
  std::vector<int32_t> X, Y;
  std::vector<uint32_t> code;
  void resize(int64_t V) {
    X.resize(V);
    Y.resize(V);
    code.resize(V);
  }
};

template <typename scalar_t>
OCC_CPU_CLONES void snap_vertices(const scalar_t* __restrict__ pos, int64_t v0, int64_t v1, int H, int W,
                                  SnappedVertices& sv) {
  int32_t* __restrict__ X = sv.X.data();
  int32_t* __restrict__ Y = sv.Y.data();
  uint32_t* __restrict__ code = sv.code.data();
  for (int64_t v = v0; v < v1; ++v) code[v] = rast_vertex(pos + 4 * v, H, W, X[v], Y[v]);
}

template <typename scalar_t>
OCC_CPU_CLONES void draw_chunk(const scalar_t* pos, const int32_t* tri, int64_t V, const SnappedVertices& sv,
                               int64_t first, int64_t last, int H, int W, const scalar_t* ndc_x, const scalar_t* ndc_y,
                               const uint64_t* __restrict__ peel, uint64_t* __restrict__ keys) {
  for (int64_t t = first; t < last; ++t) {
    int64_t v[3];
    if (!rast_tri_vertices(tri, t, V, v)) continue;  // an index outside [0, V): never drawn
    const int32_t X[3] = {sv.X[v[0]], sv.X[v[1]], sv.X[v[2]]};
    const int32_t Y[3] = {sv.Y[v[0]], sv.Y[v[1]], sv.Y[v[2]]};
    const uint32_t codes[3] = {sv.code[v[0]], sv.code[v[1]], sv.code[v[2]]};
    RastTriSetup s;
    if (!rast_setup_snapped(X, Y, codes, H, W, s)) continue;
    const scalar_t* p0 = pos + 4 * static_cast<int64_t>(v[0]);
    const scalar_t* p1 = pos + 4 * static_cast<int64_t>(v[1]);
    const scalar_t* p2 = pos + 4 * static_cast<int64_t>(v[2]);
    for (int j = s.y0; j <= s.y1; ++j) {
      const int64_t sy = rast_sample_fixed(j, H);
      const scalar_t fy = ndc_y[j];
      uint64_t* row = keys + static_cast<int64_t>(j) * W;
      const uint64_t* peel_row = peel ? peel + static_cast<int64_t>(j) * W : nullptr;
      for (int i = s.x0; i <= s.x1; ++i) {
        if (!rast_covers(s, rast_sample_fixed(i, W), sy)) continue;
        const scalar_t z = rast_depth(p0, p1, p2, ndc_x[i], fy);
        if (!rast_depth_visible(z)) continue;
        const uint64_t key = (static_cast<uint64_t>(rast_depth_key(static_cast<float>(z))) << 32) |
                             static_cast<uint32_t>(t);
        if (key < row[i] && (!peel_row || key > peel_row[i])) row[i] = key;
      }
    }
  }
}

}  // namespace

namespace {

// NDC of the pixel centres, once per call: the per-pixel loops then never divide by W or H.
template <typename scalar_t>
struct NdcTable {
  std::vector<scalar_t> x, y;
  NdcTable(int H, int W) : x(W), y(H) {
    for (int i = 0; i < W; ++i) x[i] = rast_ndc<scalar_t>(i, W);
    for (int j = 0; j < H; ++j) y[j] = rast_ndc<scalar_t>(j, H);
  }
};

// Reused scratch (thread_local: no reallocation and no page faults from one call to the next).
struct Workspace {
  std::vector<uint64_t> keys, peel;
  SnappedVertices sv;
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// Keep the smallest key over the chunks and write rast and rast_db for rows [j0, j1) of one image.
template <typename scalar_t>
OCC_CPU_CLONES void resolve_rows(const scalar_t* pb, const int32_t* tr, int64_t V, const uint64_t* keys,
                                 int64_t nchunks, int64_t j0, int64_t j1, int H, int W, const scalar_t* ndc_x, const scalar_t* ndc_y,
                                 scalar_t* ob, scalar_t* dbb) {
  const int64_t P = static_cast<int64_t>(H) * W;
  for (int64_t j = j0; j < j1; ++j) {
    for (int64_t i = 0; i < W; ++i) {
      const int64_t p = j * W + i;
      uint64_t best = keys[p];
      for (int64_t c = 1; c < nchunks; ++c) best = std::min(best, keys[c * P + p]);
      scalar_t* rp = ob + 4 * p;
      scalar_t* dp = dbb + 4 * p;
      const int64_t t = static_cast<int64_t>(best & 0xffffffffu);
      int64_t v[3];
      // (the re-check costs nothing here and keeps this read safe even if tri changed since the draw)
      if (best == kEmptyKey || !rast_tri_vertices(tr, t, V, v)) {
        rp[0] = rp[1] = rp[2] = rp[3] = scalar_t(0);
        dp[0] = dp[1] = dp[2] = dp[3] = scalar_t(0);
        continue;
      }
      rast_resolve(pb + 4 * v[0], pb + 4 * v[1], pb + 4 * v[2], static_cast<int32_t>(t), ndc_x[i], ndc_y[j], H, W,
                   rp, dp);
    }
  }
}

// The peel keys of image b's pixels [p0, p1) from the previous layer's rast.
template <typename scalar_t>
void peel_keys(const scalar_t* prev, int64_t F, int64_t p0, int64_t p1, uint64_t* out) {
  for (int64_t p = p0; p < p1; ++p) out[p] = rast_peel_key(prev + 4 * p, F);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rasterize_forward(const at::Tensor& pos, const at::Tensor& tri, int64_t H,
                                                     int64_t W, const at::Tensor& ranges, const at::Tensor& peel) {
  const bool instanced = pos.dim() == 3;
  const int64_t B = instanced ? pos.size(0) : ranges.size(0);
  const int64_t V = instanced ? pos.size(1) : pos.size(0);
  const int64_t F = tri.size(0);
  const int64_t P = H * W;
  const int h = static_cast<int>(H), w = static_cast<int>(W);
  auto rast = at::empty({B, H, W, 4}, pos.options());
  auto db = at::empty({B, H, W, 4}, pos.options());
  const int32_t* rng = instanced ? nullptr : ranges.const_data_ptr<int32_t>();
  const int32_t* tr = tri.const_data_ptr<int32_t>();
  const int64_t threads = at::get_num_threads();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_forward_cpu", [&] {
    const scalar_t* ps = pos.const_data_ptr<scalar_t>();
    const scalar_t* prev = peel.defined() ? peel.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = rast.mutable_data_ptr<scalar_t>();
    scalar_t* out_db = db.mutable_data_ptr<scalar_t>();
    const NdcTable<scalar_t> ndc(h, w);
    if (B >= threads) {
      // Enough images for every thread: each task renders whole images with its own scratch, no inner sync.
      at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
        Workspace& ws = workspace();
        ws.sv.resize(V);
        ws.keys.resize(static_cast<size_t>(P));
        if (prev) ws.peel.resize(static_cast<size_t>(P));
        for (int64_t b = b0; b < b1; ++b) {
          const ImageRange r = image_range(b, instanced, F, V, rng);
          const scalar_t* pb = ps + r.vertex_offset;
          std::fill(ws.keys.begin(), ws.keys.end(), kEmptyKey);
          if (prev) peel_keys(prev + b * P * 4, F, 0, P, ws.peel.data());
          snap_vertices(pb, 0, V, h, w, ws.sv);
          draw_chunk(pb, tr, V, ws.sv, r.first, r.first + r.count, h, w, ndc.x.data(), ndc.y.data(),
                     prev ? ws.peel.data() : nullptr, ws.keys.data());
          resolve_rows(pb, tr, V, ws.keys.data(), 1, 0, H, h, w, ndc.x.data(), ndc.y.data(), out + b * P * 4,
                       out_db + b * P * 4);
        }
      });
      return;
    }
    // Few images: parallel within each image. The triangles are split into contiguous chunks (one per thread),
    // each drawn into its own key buffer; the resolve keeps the minimum over the chunks.
    Workspace& ws = workspace();
    ws.sv.resize(V);
    for (int64_t b = 0; b < B; ++b) {
      const ImageRange r = image_range(b, instanced, F, V, rng);
      const scalar_t* pb = ps + r.vertex_offset;
      const int64_t nchunks = std::clamp<int64_t>((r.count + kTrianglesPerChunk - 1) / kTrianglesPerChunk, 1,
                                                  threads);
      const int64_t per = (r.count + nchunks - 1) / nchunks;
      ws.keys.assign(static_cast<size_t>(nchunks * P), kEmptyKey);
      if (prev) {
        ws.peel.resize(static_cast<size_t>(P));
        at::parallel_for(0, P, 16384, [&](int64_t p0, int64_t p1) {
          peel_keys(prev + b * P * 4, F, p0, p1, ws.peel.data());
        });
      }
      at::parallel_for(0, V, 4096, [&](int64_t v0, int64_t v1) { snap_vertices(pb, v0, v1, h, w, ws.sv); });
      at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t first = r.first + c * per, last = std::min(r.first + r.count, first + per);
          draw_chunk(pb, tr, V, ws.sv, first, last, h, w, ndc.x.data(), ndc.y.data(), prev ? ws.peel.data() : nullptr,
                     ws.keys.data() + c * P);
        }
      });
      at::parallel_for(0, H, 8, [&](int64_t j0, int64_t j1) {
        resolve_rows(pb, tr, V, ws.keys.data(), nchunks, j0, j1, h, w, ndc.x.data(), ndc.y.data(), out + b * P * 4,
                     out_db + b * P * 4);
      });
    }
  });
  return {rast, db};
}

at::Tensor rasterize_backward(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                              const at::Tensor& grad_rast, const at::Tensor& grad_db) {
  const bool instanced = pos.dim() == 3;
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t V = instanced ? pos.size(1) : pos.size(0);
  const int64_t F = tri.size(0);
  const int64_t P = H * W;
  // Instanced: each image scatters into its own slice of the gradient. Range mode: images may share vertices, so
  // the images are split into G fixed groups, each scattering serially into its own buffer, summed in order.
  const int64_t G = instanced ? B : std::min<int64_t>(B, kGradGroups);
  auto grad = instanced ? at::zeros_like(pos) : at::zeros({std::max<int64_t>(G, 1), V, 4}, pos.options());
  const bool with_db = grad_db.defined();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    const scalar_t* ps = pos.const_data_ptr<scalar_t>();
    const int32_t* tr = tri.const_data_ptr<int32_t>();
    const scalar_t* rs = rast.const_data_ptr<scalar_t>();
    const scalar_t* gr = grad_rast.const_data_ptr<scalar_t>();
    const scalar_t* gd = with_db ? grad_db.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* g = grad.mutable_data_ptr<scalar_t>();
    const NdcTable<scalar_t> ndc(static_cast<int>(H), static_cast<int>(W));
    at::parallel_for(0, G, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t grp = g0; grp < g1; ++grp) {
        scalar_t* gb = g + grp * V * 4;
        for (int64_t b = grp * B / G; b < (grp + 1) * B / G; ++b) {
          const scalar_t* pb = instanced ? ps + b * V * 4 : ps;
          for (int64_t p = 0; p < P; ++p) {
            const int64_t q = b * P + p;
            const int32_t t = rast_triangle(rs + 4 * q, F);
            if (t < 0) continue;
            const scalar_t gu = gr[4 * q], gv = gr[4 * q + 1];
            const scalar_t* gdb = gd ? gd + 4 * q : nullptr;
            if (gu == scalar_t(0) && gv == scalar_t(0) &&
                (gdb == nullptr || (gdb[0] == scalar_t(0) && gdb[1] == scalar_t(0) && gdb[2] == scalar_t(0) &&
                                    gdb[3] == scalar_t(0))))
              continue;
            int64_t v[3];
            if (!rast_tri_vertices(tr, t, V, v)) continue;
            rast_backward(pb + 4 * v[0], pb + 4 * v[1], pb + 4 * v[2], ndc.x[p % W], ndc.y[p / W],
                          static_cast<int>(H), static_cast<int>(W), gu, gv, gdb, gb + 4 * v[0], gb + 4 * v[1],
                          gb + 4 * v[2], PlainAdd{});
          }
        }
      }
    });
  });
  if (instanced) return grad;
  return G > 1 ? grad.sum(0) : grad[0];
}

}  // namespace occ::cpu
