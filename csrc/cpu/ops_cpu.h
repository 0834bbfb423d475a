// CPU kernels, one function per op direction. Inputs are validated and made contiguous by csrc/ops.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace occ::cpu {

std::tuple<at::Tensor, at::Tensor> neighbour_min_forward(const at::Tensor& target, const at::Tensor& render,
                                                         const at::Tensor& region, int64_t k);
std::tuple<at::Tensor, at::Tensor> neighbour_min_backward(const at::Tensor& grad_d2, const at::Tensor& target,
                                                          const at::Tensor& render, const at::Tensor& idx,
                                                          int64_t k);

// rasterize: pos [B,V,4] (instanced) or [V,4] with ranges [B,2] (range mode); tri [F,3] int32 (validated).
std::tuple<at::Tensor, at::Tensor> rasterize_forward(const at::Tensor& pos, const at::Tensor& tri, int64_t H,
                                                     int64_t W, const at::Tensor& ranges);
at::Tensor rasterize_backward(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                              const at::Tensor& grad_rast, const at::Tensor& grad_db);

// interpolate: attr [Ba,V,C] with Ba in {1, B}; diff = indices of attributes with image-space derivatives.
std::tuple<at::Tensor, at::Tensor> interpolate_forward(const at::Tensor& attr, const at::Tensor& rast,
                                                       const at::Tensor& tri, const at::Tensor& rast_db,
                                                       const std::vector<int32_t>& diff);
std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward(const at::Tensor& attr, const at::Tensor& rast,
                                                                    const at::Tensor& tri, const at::Tensor& rast_db,
                                                                    const std::vector<int32_t>& diff,
                                                                    const at::Tensor& grad_out,
                                                                    const at::Tensor& grad_da);

// antialias (csrc/common/antialias.h): topology [F, 3] int32, forward, backward (grad_color, grad_pos).
at::Tensor antialias_topology(const at::Tensor& tri);
at::Tensor antialias_forward(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                             const at::Tensor& tri, const at::Tensor& topo);
std::tuple<at::Tensor, at::Tensor> antialias_backward(const at::Tensor& grad_out, const at::Tensor& color,
                                                      const at::Tensor& rast, const at::Tensor& pos,
                                                      const at::Tensor& tri, const at::Tensor& topo);

// sh_shade (csrc/common/sh.h): normals [B,N,3], albedo [B or 1,N,3], gamma [B,9,3]; backward returns
// (grad_normals, grad_albedo (albedo's shape), grad_gamma).
at::Tensor sh_shade_forward(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma);
std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shade_backward(const at::Tensor& grad_out, const at::Tensor& normals,
                                                                 const at::Tensor& albedo, const at::Tensor& gamma);

}  // namespace occ::cpu
