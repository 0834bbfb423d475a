// Area-weighted vertex normals of a triangle mesh: per-element math shared by the CPU and CUDA kernels.
//
// For triangle f = (i0, i1, i2) with vertices p0, p1, p2 the face vector is c_f = (p1 - p0) x (p2 - p0) (its length
// is twice the area, hence the area weighting). A vertex sums the face vectors of its triangles,
//     acc_v = sum_{f adjacent to v} c_f,       r_v = |acc_v|,       n_v = acc_v / max(r_v, eps).
// The sum runs over the vertex's adjacency list in ascending face order (a CSR list built by the caller), so it
// is a gather: no atomics, the same additions in the same order on every device and thread count.
//
// Backward with upstream gradient g_v = dL/dn_v:
//     dL/dacc_v = (g_v - n_v (n_v . g_v)) / r_v     if r_v >= eps       (torch.clamp_min passes the gradient there)
//               = g_v / eps                         otherwise
//     dL/dc_f   = sum of dL/dacc_v over the three corners of f
//     c = e1 x e2 with e1 = p1 - p0, e2 = p2 - p0:   dL/de1 = e2 x dL/dc,   dL/de2 = dL/dc x e1,
//     corner gradients k1 = dL/de1, k2 = dL/de2, k0 = -(k1 + k2), gathered per vertex over its adjacency list.
//
// Adjacency entries are corner ids f * 3 + k (k = 0, 1, 2: the vertex's place in triangle f). The list builder
// (adjacency_count / adjacency_fill) leaves out every triangle with an index outside [0, V), so no kernel reads
// outside the vertex array whatever the caller passes.
#pragma once

#include <cmath>

#include "common/occ_hd.h"

namespace occ {

template <typename S>
OCC_HD void cross3(const S* a, const S* b, S* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// True when the three indices of a triangle name vertices of [0, V).
OCC_HD bool triangle_in_range(const int32_t* t, int64_t V) {
  return t[0] >= 0 && t[1] >= 0 && t[2] >= 0 && t[0] < V && t[1] < V && t[2] < V;
}

// Face vector c_f of triangle t over the vertices p (V x 3) of one batch entry; zero for a triangle with an index
// outside [0, V) (it is in no adjacency list either).
template <typename S>
OCC_HD void face_vector(const S* __restrict__ p, const int32_t* __restrict__ t, int64_t V, S* __restrict__ c) {
  if (!triangle_in_range(t, V)) {
    c[0] = c[1] = c[2] = S(0);
    return;
  }
  const S* p0 = p + 3 * static_cast<int64_t>(t[0]);
  const S* p1 = p + 3 * static_cast<int64_t>(t[1]);
  const S* p2 = p + 3 * static_cast<int64_t>(t[2]);
  const S e1[3] = {p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]};
  const S e2[3] = {p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]};
  cross3(e1, e2, c);
}

// n_v and r_v of one vertex: face vectors c (F x 3, one batch entry), adjacency entries adj[a0, a1) (corner ids).
template <typename S>
OCC_HD void vertex_normal_gather(const S* __restrict__ c, const int32_t* __restrict__ adj, int64_t a0, int64_t a1,
                                 S eps, S* __restrict__ n, S* __restrict__ r) {
  using std::sqrt;
  S acc[3] = {S(0), S(0), S(0)};
  for (int64_t e = a0; e < a1; ++e) {
    const S* cf = c + 3 * static_cast<int64_t>(adj[e] / 3);
    acc[0] += cf[0];
    acc[1] += cf[1];
    acc[2] += cf[2];
  }
  const S len = sqrt(acc[0] * acc[0] + acc[1] * acc[1] + acc[2] * acc[2]);
  const S d = len > eps ? len : eps;
  n[0] = acc[0] / d;
  n[1] = acc[1] / d;
  n[2] = acc[2] / d;
  *r = len;
}

// dL/dacc_v from dL/dn_v (g), n_v and r_v.
template <typename S>
OCC_HD void vertex_normal_grad_acc(const S* __restrict__ g, const S* __restrict__ n, S r, S eps, S* __restrict__ ga) {
  if (r >= eps) {
    const S dot = n[0] * g[0] + n[1] * g[1] + n[2] * g[2];
    ga[0] = (g[0] - n[0] * dot) / r;
    ga[1] = (g[1] - n[1] * dot) / r;
    ga[2] = (g[2] - n[2] * dot) / r;
  } else {
    ga[0] = g[0] / eps;
    ga[1] = g[1] / eps;
    ga[2] = g[2] / eps;
  }
}

// Corner gradients k (3 corners x 3) of triangle t from dL/dacc of its vertices (ga, V x 3, one batch entry);
// zero for a triangle with an index outside [0, V).
template <typename S>
OCC_HD void face_vector_backward(const S* __restrict__ p, const int32_t* __restrict__ t, int64_t V,
                                 const S* __restrict__ ga, S* __restrict__ k) {
  if (!triangle_in_range(t, V)) {
    for (int j = 0; j < 9; ++j) k[j] = S(0);
    return;
  }
  const S* g0 = ga + 3 * static_cast<int64_t>(t[0]);
  const S* g1 = ga + 3 * static_cast<int64_t>(t[1]);
  const S* g2 = ga + 3 * static_cast<int64_t>(t[2]);
  const S gc[3] = {g0[0] + g1[0] + g2[0], g0[1] + g1[1] + g2[1], g0[2] + g1[2] + g2[2]};
  const S* p0 = p + 3 * static_cast<int64_t>(t[0]);
  const S* p1 = p + 3 * static_cast<int64_t>(t[1]);
  const S* p2 = p + 3 * static_cast<int64_t>(t[2]);
  const S e1[3] = {p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]};
  const S e2[3] = {p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]};
  cross3(e2, gc, k + 3);  // dL/de1 = e2 x dL/dc
  cross3(gc, e1, k + 6);  // dL/de2 = dL/dc x e1
  for (int j = 0; j < 3; ++j) k[j] = -(k[3 + j] + k[6 + j]);
}

// dL/dp_v: the corner gradients (F x 9, one batch entry) of the vertex's adjacency entries, in list order.
template <typename S>
OCC_HD void vertex_gather_corners(const S* __restrict__ k, const int32_t* __restrict__ adj, int64_t a0, int64_t a1,
                                  S* __restrict__ gp) {
  S acc[3] = {S(0), S(0), S(0)};
  for (int64_t e = a0; e < a1; ++e) {
    const S* kc = k + 3 * static_cast<int64_t>(adj[e]);  // corner id f * 3 + j -> k[f][j][:]
    acc[0] += kc[0];
    acc[1] += kc[1];
    acc[2] += kc[2];
  }
  gp[0] = acc[0];
  gp[1] = acc[1];
  gp[2] = acc[2];
}

}  // namespace occ
