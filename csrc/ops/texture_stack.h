// The TexStack (csrc/common/texture.h) of a list of validated, contiguous mip-level tensors, for the CPU loops and
// the CUDA glue alike: level l is [Nt, h_l, w_l, C] or, for a cube map, [Nt, 6, S_l, S_l, C].
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "common/texture.h"

namespace occ::ops {

// Levels from `used` on get a null pointer (a gradient stack whose levels the filter mode never writes).
template <typename T>
TexStack<T> texture_stack(const std::vector<at::Tensor>& levels, int used = kTexMaxLevels) {
  TexStack<T> s{};
  s.levels = static_cast<int>(levels.size());
  const int cube = levels[0].dim() == 5 ? 1 : 0;
  s.C = static_cast<int>(levels[0].size(3 + cube));
  s.shared = levels[0].size(0) == 1 ? 1 : 0;
  for (int l = 0; l < s.levels; ++l) {
    s.level[l] = l < used ? const_cast<T*>(levels[l].const_data_ptr<T>()) : nullptr;
    s.h[l] = static_cast<int>(levels[l].size(1 + cube));
    s.w[l] = static_cast<int>(levels[l].size(2 + cube));
  }
  return s;
}

}  // namespace occ::ops
