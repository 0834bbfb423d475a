// CUDA kernels for rasterize and interpolate. The math is common/rasterize.h and common/interpolate.h.
//
// rasterize: one thread per (image, triangle) draws into a per-pixel 64-bit key (depth key << 32 | triangle id)
// with atomicMin, so the nearest fragment wins and exact ties go to the lower id: the same order as the CPU
// loops, and deterministic. A second pass, one thread per pixel, resolves (u, v, z/w, id) and rast_db. Large
// triangles make the per-triangle loop long (no tiling yet); face meshes cover about a pixel per triangle.
// Gradients accumulate with atomicAdd (the order of additions, hence the last bits, may vary between runs).
#include "common/interpolate.h"
#include "common/rasterize.h"
#include "cuda/grid.cuh"
#include "cuda/rasterize_launch.h"
#include "cuda/interpolate_launch.h"

namespace occ::cuda {
namespace {

struct RangeView {  // triangles of image b: [first, first + count); its V vertices at pos + b * vstride
  const int32_t* ranges;  // device copy of ranges [B, 2], or nullptr in instanced mode
  int64_t F, V, vstride;
  __device__ void get(int64_t b, int64_t& first, int64_t& count) const {
    if (ranges) {
      first = ranges[2 * b];
      count = ranges[2 * b + 1];
    } else {
      first = 0;
      count = F;
    }
  }
};

template <typename scalar_t>
__global__ void draw_kernel(const scalar_t* __restrict__ pos, const int32_t* __restrict__ tri, RangeView rv,
                            int64_t B, int64_t max_count, int H, int W,
                            const unsigned long long* __restrict__ peel, unsigned long long* __restrict__ keys) {
  const int64_t n = B * max_count;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = k / max_count, local = k - b * max_count;
    int64_t first, count;
    rv.get(b, first, count);
    if (local >= count) continue;
    const int64_t t = first + local;
    int64_t v[3];
    if (!rast_tri_vertices(tri, t, rv.V, v)) continue;  // an index outside [0, V): never drawn
    const scalar_t* pb = pos + b * rv.vstride;
    const scalar_t* p0 = pb + 4 * v[0];
    const scalar_t* p1 = pb + 4 * v[1];
    const scalar_t* p2 = pb + 4 * v[2];
    RastTriSetup s;
    if (!rast_setup(p0, p1, p2, H, W, s)) continue;
    unsigned long long* kb = keys + b * static_cast<int64_t>(H) * W;
    const unsigned long long* pk = peel ? peel + b * static_cast<int64_t>(H) * W : nullptr;
    for (int j = s.y0; j <= s.y1; ++j) {
      const int64_t sy = rast_sample_fixed(j, H);
      const scalar_t fy = rast_ndc<scalar_t>(j, H);
      for (int i = s.x0; i <= s.x1; ++i) {
        if (!rast_covers(s, rast_sample_fixed(i, W), sy)) continue;
        const scalar_t z = rast_depth(p0, p1, p2, rast_ndc<scalar_t>(i, W), fy);
        if (!rast_depth_visible(z)) continue;
        const unsigned long long key =
            (static_cast<unsigned long long>(rast_depth_key(static_cast<float>(z))) << 32) | static_cast<uint32_t>(t);
        const int64_t p = static_cast<int64_t>(j) * W + i;
        if (pk && key <= pk[p]) continue;  // depth peeling: at or in front of the previous layer
        atomicMin(kb + p, key);
      }
    }
  }
}

template <typename scalar_t>
__global__ void peel_keys_kernel(const scalar_t* __restrict__ prev, int64_t F, int64_t P,
                                 unsigned long long* __restrict__ out) {
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < P;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[q] = rast_peel_key(prev + 4 * q, F);
}

template <typename scalar_t>
__global__ void resolve_kernel(const scalar_t* __restrict__ pos, const int32_t* __restrict__ tri, int64_t V,
                               int64_t vstride,
                               const unsigned long long* __restrict__ keys, int64_t B, int H, int W,
                               scalar_t* __restrict__ rast, scalar_t* __restrict__ db) {
  for_each_pixel(B, H, W, [&](int64_t b, int j, int i, int64_t q) {
    const unsigned long long key = keys[q];
    scalar_t* rp = rast + 4 * q;
    scalar_t* dp = db + 4 * q;
    const int64_t t = static_cast<int64_t>(key & 0xffffffffull);
    int64_t v[3];
    if (key == ~0ull || !rast_tri_vertices(tri, t, V, v)) {
      rp[0] = rp[1] = rp[2] = rp[3] = scalar_t(0);
      dp[0] = dp[1] = dp[2] = dp[3] = scalar_t(0);
      return;
    }
    const scalar_t* pb = pos + b * vstride;
    rast_resolve(pb + 4 * v[0], pb + 4 * v[1], pb + 4 * v[2], static_cast<int32_t>(t), rast_ndc<scalar_t>(i, W),
                 rast_ndc<scalar_t>(j, H), H, W, rp, dp);
  });
}

template <typename scalar_t>
__global__ void rasterize_backward_kernel(const scalar_t* __restrict__ pos, const int32_t* __restrict__ tri,
                                          int64_t F, int64_t V, int64_t vstride, const scalar_t* __restrict__ rast,
                                          const scalar_t* __restrict__ grad_rast, const scalar_t* __restrict__ grad_db,
                                          int64_t B, int H, int W, scalar_t* __restrict__ grad_pos) {
  for_each_pixel(B, H, W, [&](int64_t b, int j, int i, int64_t q) {
    const int32_t t = rast_triangle(rast + 4 * q, F);
    int64_t v[3];
    if (t < 0 || !rast_tri_vertices(tri, t, V, v)) return;
    const int64_t v0 = v[0], v1 = v[1], v2 = v[2];
    const scalar_t* pb = pos + b * vstride;
    scalar_t* gb = grad_pos + b * vstride;
    rast_backward(pb + 4 * v0, pb + 4 * v1, pb + 4 * v2, rast_ndc<scalar_t>(i, W), rast_ndc<scalar_t>(j, H), H, W,
                  grad_rast[4 * q], grad_rast[4 * q + 1],
                  grad_db ? grad_db + 4 * q : nullptr, gb + 4 * v0, gb + 4 * v1, gb + 4 * v2, AtomicAdd{});
  });
}

template <typename scalar_t>
__global__ void interpolate_forward_kernel(const scalar_t* __restrict__ attr, int64_t astride,
                                           const scalar_t* __restrict__ rast, const scalar_t* __restrict__ rast_db,
                                           const int32_t* __restrict__ tri, int64_t F, int64_t V,
                                           const int32_t* __restrict__ diff, int nd, int64_t B, int H, int W, int C, scalar_t* __restrict__ out,
                                           scalar_t* __restrict__ out_da) {
  for_each_pixel(B, H, W, [&](int64_t b, int, int, int64_t q) {
    const int32_t t = rast_triangle(rast + 4 * q, F);
    scalar_t* o = out + q * C;
    scalar_t* oda = out_da + q * 2 * nd;
    int64_t v[3];
    if (t < 0 || !rast_tri_vertices(tri, t, V, v)) {
      for (int c = 0; c < C; ++c) o[c] = scalar_t(0);
      for (int k = 0; k < 2 * nd; ++k) oda[k] = scalar_t(0);
      return;
    }
    const scalar_t* ab = attr + b * astride;
    interp_forward(rast + 4 * q, rast_db ? rast_db + 4 * q : nullptr, ab + C * v[0], ab + C * v[1], ab + C * v[2], C,
                   diff, nd, o, oda);
  });
}

template <typename scalar_t>
__global__ void interpolate_backward_kernel(const scalar_t* __restrict__ attr, int64_t astride,
                                            const scalar_t* __restrict__ rast, const scalar_t* __restrict__ rast_db,
                                            const int32_t* __restrict__ tri, int64_t F, int64_t V,
                                            const int32_t* __restrict__ diff, int nd, int64_t B, int H, int W, int C,
                                            const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ grad_da,
                                            scalar_t* __restrict__ grad_attr, scalar_t* __restrict__ grad_rast,
                                            scalar_t* __restrict__ grad_db) {
  for_each_pixel(B, H, W, [&](int64_t b, int, int, int64_t q) {
    const int32_t t = rast_triangle(rast + 4 * q, F);
    int64_t v[3];
    if (t < 0 || !rast_tri_vertices(tri, t, V, v)) return;  // gradients were zero-initialised
    const int64_t v0 = v[0], v1 = v[1], v2 = v[2];
    const scalar_t* ab = attr + b * astride;
    scalar_t* gab = grad_attr + b * astride;
    interp_backward(rast + 4 * q, rast_db ? rast_db + 4 * q : nullptr, ab + C * v0, ab + C * v1, ab + C * v2, C, diff,
                    grad_da ? nd : 0, grad_out + q * C, grad_da ? grad_da + q * 2 * nd : nullptr, gab + C * v0,
                    gab + C * v1, gab + C * v2, grad_rast + 4 * q, grad_db ? grad_db + 4 * q : nullptr, AtomicAdd{});
  });
}

}  // namespace

template <typename scalar_t>
cudaError_t launch_rasterize_forward(const scalar_t* pos, const int32_t* tri, int64_t F, int64_t V,
                                     const int32_t* ranges_dev,
                                     int64_t max_count, int64_t vstride, int64_t B, int H, int W,
                                     const scalar_t* peel, unsigned long long* peel_keys,
                                     unsigned long long* keys, scalar_t* rast, scalar_t* db, cudaStream_t stream) {
  const int64_t P = B * H * static_cast<int64_t>(W);
  if (P == 0) return cudaSuccess;
  cudaError_t err = cudaMemsetAsync(keys, 0xff, sizeof(unsigned long long) * P, stream);
  if (err != cudaSuccess) return err;
  if (peel) {
    peel_keys_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(peel, F, P, peel_keys);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  if (B * max_count > 0) {
    draw_kernel<scalar_t><<<blocks_for(B * max_count), kThreads, 0, stream>>>(
        pos, tri, RangeView{ranges_dev, F, V, vstride}, B, max_count, H, W, peel ? peel_keys : nullptr, keys);
    if ((err = cudaGetLastError()) != cudaSuccess) return err;
  }
  resolve_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(pos, tri, V, vstride, keys, B, H, W, rast,
                                                                     db);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_rasterize_backward(const scalar_t* pos, const int32_t* tri, int64_t F, int64_t V, int64_t vstride,
                                      const scalar_t* rast, const scalar_t* grad_rast, const scalar_t* grad_db,
                                      int64_t B, int H, int W, scalar_t* grad_pos, cudaStream_t stream) {
  const int64_t P = B * H * static_cast<int64_t>(W);
  if (P == 0) return cudaSuccess;
  rasterize_backward_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(pos, tri, F, V, vstride, rast,
                                                                             grad_rast, grad_db, B, H, W, grad_pos);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_interpolate_forward(const scalar_t* attr, int64_t astride, const scalar_t* rast,
                                       const scalar_t* rast_db, const int32_t* tri, int64_t F, int64_t V,
                                       const int32_t* diff_dev, int nd, int64_t B, int H, int W, int C, scalar_t* out,
                                       scalar_t* out_da, cudaStream_t stream) {
  const int64_t P = B * H * static_cast<int64_t>(W);
  if (P == 0) return cudaSuccess;
  interpolate_forward_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(attr, astride, rast, rast_db, tri, F,
                                                                              V, diff_dev, nd, B, H, W, C, out,
                                                                              out_da);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_interpolate_backward(const scalar_t* attr, int64_t astride, const scalar_t* rast,
                                        const scalar_t* rast_db, const int32_t* tri, int64_t F, int64_t V,
                                        const int32_t* diff_dev, int nd, int64_t B, int H, int W, int C,
                                        const scalar_t* grad_out, const scalar_t* grad_da, scalar_t* grad_attr,
                                        scalar_t* grad_rast, scalar_t* grad_db, cudaStream_t stream) {
  const int64_t P = B * H * static_cast<int64_t>(W);
  if (P == 0) return cudaSuccess;
  interpolate_backward_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(
      attr, astride, rast, rast_db, tri, F, V, diff_dev, nd, B, H, W, C, grad_out, grad_da, grad_attr, grad_rast,
      grad_db);
  return cudaGetLastError();
}

#define OCC_INSTANTIATE(T)                                                                                        \
  template cudaError_t launch_rasterize_forward<T>(const T*, const int32_t*, int64_t, int64_t, const int32_t*,   \
                                                   int64_t, int64_t, int64_t, int, int, const T*,                 \
                                                   unsigned long long*, unsigned long long*, T*, T*, cudaStream_t); \
  template cudaError_t launch_rasterize_backward<T>(const T*, const int32_t*, int64_t, int64_t, int64_t,          \
                                                    const T*, const T*, const T*, int64_t, int, int, T*,          \
                                                    cudaStream_t);                                                \
  template cudaError_t launch_interpolate_forward<T>(const T*, int64_t, const T*, const T*, const int32_t*,       \
                                                     int64_t, int64_t, const int32_t*, int, int64_t, int, int,    \
                                                     int, T*, T*, cudaStream_t);                                  \
  template cudaError_t launch_interpolate_backward<T>(const T*, int64_t, const T*, const T*, const int32_t*,      \
                                                      int64_t, int64_t, const int32_t*, int, int64_t, int, int,   \
                                                      int, const T*, const T*, T*, T*, T*, cudaStream_t);
OCC_INSTANTIATE(float)
OCC_INSTANTIATE(double)
#undef OCC_INSTANTIATE

}  // namespace occ::cuda
