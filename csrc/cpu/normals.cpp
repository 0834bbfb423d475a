// CPU loops for vertex normals; the math is common/normals.h.
//
// The vertex -> corner adjacency (CSR, ascending face order) is built by a serial counting sort on every call
// (O(F + V), a few tens of microseconds for a face mesh): it is never cached, so a mesh edited in place cannot
// leave a stale list behind. Triangles with an index outside [0, V) are left out of it. Then, per batch entry
// in parallel over fixed chunks: face vectors, per-vertex gathers. Every result is bitwise independent of the
// thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <vector>

#include "common/normals.h"
#include "cpu/isa.h"
#include "cpu/vertex_normals.h"

namespace occ::cpu {
namespace {

constexpr int64_t kGrain = 2048;

struct Adjacency {
  std::vector<int64_t> offsets;  // V + 1
  std::vector<int32_t> corners;  // corner ids f * 3 + k, grouped by vertex, ascending f within a vertex
};

Adjacency build_adjacency(const int32_t* tri, int64_t F, int64_t V) {
  Adjacency a;
  a.offsets.assign(V + 1, 0);
  for (int64_t f = 0; f < F; ++f) {
    const int32_t* t = tri + 3 * f;
    if (!triangle_in_range(t, V)) continue;
    for (int k = 0; k < 3; ++k) ++a.offsets[t[k] + 1];
  }
  for (int64_t v = 0; v < V; ++v) a.offsets[v + 1] += a.offsets[v];
  a.corners.resize(a.offsets[V]);
  std::vector<int64_t> fill(a.offsets.begin(), a.offsets.end() - 1);
  for (int64_t f = 0; f < F; ++f) {
    const int32_t* t = tri + 3 * f;
    if (!triangle_in_range(t, V)) continue;
    for (int k = 0; k < 3; ++k) a.corners[fill[t[k]]++] = static_cast<int32_t>(3 * f + k);
  }
  return a;
}

template <typename S>
OCC_CPU_CLONES void faces_range(const S* p, const int32_t* tri, int64_t V, S* c, int64_t f0, int64_t f1) {
  for (int64_t f = f0; f < f1; ++f) face_vector(p, tri + 3 * f, V, c + 3 * f);
}

template <typename S>
OCC_CPU_CLONES void gather_range(const S* c, const Adjacency& a, S eps, S* n, S* r, int64_t v0, int64_t v1) {
  for (int64_t v = v0; v < v1; ++v)
    vertex_normal_gather(c, a.corners.data(), a.offsets[v], a.offsets[v + 1], eps, n + 3 * v, r + v);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> vertex_normals_forward(const at::Tensor& vertices, const at::Tensor& tri,
                                                          double eps) {
  const int64_t B = vertices.size(0), V = vertices.size(1), F = tri.size(0);
  auto normals = at::empty({B, V, 3}, vertices.options());
  auto norms = at::empty({B, V}, vertices.options());
  if (B * V == 0) return {normals, norms};
  const Adjacency adj = build_adjacency(tri.const_data_ptr<int32_t>(), F, V);
  auto faces = at::empty({B, F, 3}, vertices.options());
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_forward_cpu", [&] {
    const scalar_t* p = vertices.const_data_ptr<scalar_t>();
    const int32_t* t = tri.const_data_ptr<int32_t>();
    scalar_t* c = faces.mutable_data_ptr<scalar_t>();
    scalar_t* n = normals.mutable_data_ptr<scalar_t>();
    scalar_t* r = norms.mutable_data_ptr<scalar_t>();
    const scalar_t e = static_cast<scalar_t>(eps);
    const int64_t fchunks = (F + kGrain - 1) / kGrain, vchunks = (V + kGrain - 1) / kGrain;
    at::parallel_for(0, B * fchunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / fchunks, j = task % fchunks;
        faces_range(p + b * 3 * V, t, V, c + b * 3 * F, j * kGrain, std::min(F, (j + 1) * kGrain));
      }
    });
    at::parallel_for(0, B * vchunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / vchunks, j = task % vchunks;
        gather_range(c + b * 3 * F, adj, e, n + b * 3 * V, r + b * V, j * kGrain, std::min(V, (j + 1) * kGrain));
      }
    });
  });
  return {normals, norms};
}

at::Tensor vertex_normals_backward(const at::Tensor& grad_normals, const at::Tensor& vertices, const at::Tensor& tri,
                                   const at::Tensor& normals, const at::Tensor& norms, double eps) {
  const int64_t B = vertices.size(0), V = vertices.size(1), F = tri.size(0);
  auto grad_v = at::empty({B, V, 3}, vertices.options());
  if (B * V == 0) return grad_v;
  const Adjacency adj = build_adjacency(tri.const_data_ptr<int32_t>(), F, V);
  auto grad_acc = at::empty({B, V, 3}, vertices.options());
  auto corners = at::empty({B, F, 9}, vertices.options());
  AT_DISPATCH_FLOATING_TYPES(vertices.scalar_type(), "vertex_normals_backward_cpu", [&] {
    const scalar_t* g = grad_normals.const_data_ptr<scalar_t>();
    const scalar_t* p = vertices.const_data_ptr<scalar_t>();
    const int32_t* t = tri.const_data_ptr<int32_t>();
    const scalar_t* n = normals.const_data_ptr<scalar_t>();
    const scalar_t* r = norms.const_data_ptr<scalar_t>();
    scalar_t* ga = grad_acc.mutable_data_ptr<scalar_t>();
    scalar_t* k = corners.mutable_data_ptr<scalar_t>();
    scalar_t* gp = grad_v.mutable_data_ptr<scalar_t>();
    const scalar_t e = static_cast<scalar_t>(eps);
    at::parallel_for(0, B * V, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) vertex_normal_grad_acc(g + 3 * i, n + 3 * i, r[i], e, ga + 3 * i);
    });
    at::parallel_for(0, B * F, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / F, f = i - b * F;
        face_vector_backward(p + b * 3 * V, t + 3 * f, V, ga + b * 3 * V, k + 9 * i);
      }
    });
    at::parallel_for(0, B * V, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t b = i / V, v = i - b * V;
        vertex_gather_corners(k + b * 9 * F, adj.corners.data(), adj.offsets[v], adj.offsets[v + 1], gp + 3 * i);
      }
    });
  });
  return grad_v;
}

}  // namespace occ::cpu
