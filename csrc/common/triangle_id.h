// Triangle ids in rast[..., 3]: one encoding for every kernel that writes or reads them (rasterize, interpolate,
// antialias, their gradients), the same as nvdiffrast's.
//
// The channel holds id + 1 (0 = empty pixel). float32 holds every integer up to 2^24 exactly, and those are stored
// as plain values; a larger id + 1 is stored as the float whose bit pattern is 0x4a800000 + id + 1 (a unique,
// finite float above 2^24; monotone in the id). The largest id + 1 that stays finite is kMaxFloatTriangles =
// 889192447, so float32 rasterization refuses larger meshes. float64 holds every id + 1 below 2^53 as its value.
// Reading is the inverse, and it never trusts the value: anything that is not a positive, finite encoding (0,
// negative, NaN, inf) reads as empty; fractional values truncate (as in nvdiffrast).
#pragma once

#include <cstring>

#include "common/occ_hd.h"

namespace occ {

constexpr int64_t kMaxFloatTriangles = 889192447 - 1;  // ids 0 .. kMaxFloatTriangles - 1 survive float32
constexpr uint32_t kTriangleIdBias = 0x4a800000u;

OCC_HD float triangle_id_to_rast(int64_t one_based, float) {
  if (one_based <= 16777216) return static_cast<float>(one_based);
  const uint32_t bits = kTriangleIdBias + static_cast<uint32_t>(one_based);
  float v;
  memcpy(&v, &bits, sizeof(v));
  return v;
}

OCC_HD double triangle_id_to_rast(int64_t one_based, double) { return static_cast<double>(one_based); }

// id + 1 read from a rast value, 0 for an empty pixel or a value that is no encoding.
OCC_HD int64_t rast_to_triangle_id(float v) {
  if (!(v >= 1.0f) || v - v != 0.0f) return 0;  // 0, negative, NaN, inf
  if (v <= 16777216.0f) return static_cast<int64_t>(v);
  uint32_t bits;
  memcpy(&bits, &v, sizeof(bits));
  return static_cast<int64_t>(bits - kTriangleIdBias);
}

OCC_HD int64_t rast_to_triangle_id(double v) {
  if (!(v >= 1.0 && v < 9007199254740992.0)) return 0;  // 0, negative, NaN, inf, beyond 2^53
  return static_cast<int64_t>(v);
}

}  // namespace occ
