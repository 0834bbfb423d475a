// Argument checks shared by the ops (declarations and contracts: csrc/ops/checks.h).
#include "ops/checks.h"

#include <ATen/ops/aminmax.h>

#include <deque>
#include <mutex>

#include "common/triangle_id.h"

namespace occ::ops {

// (min, max) of an index tensor, for the error message of a bad mesh. On CUDA reading them back synchronises the
// device, on every call, although a mesh's triangles rarely change: the result is remembered per tensor (TensorImpl)
// and version counter (bumped by in-place writes through PyTorch, shared by views; inference tensors have none and
// are always re-read). Memory safety never depends on it: writes that bypass the version counter (`tri.data[...]`,
// a NumPy view) make it stale, and the kernels themselves skip any triangle with an index outside [0, V)
// (common/rasterize.h, rast_tri_vertices). The cache holds weak references: it never keeps a tensor's storage alive
// (a weak reference keeps only the TensorImpl's memory, so its address is not reused while cached). Same rule as
// the Python-side occrecon.ops._checks.index_range.
std::pair<int64_t, int64_t> index_range(const at::Tensor& index) {
  using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
  struct Entry {
    WeakImpl tensor;
    uint32_t version;
    int64_t lo, hi;
  };
  static std::mutex mutex;
  // most recent first; never destroyed, so nothing is released after the CUDA runtime has shut down at exit
  static auto& cache = *new std::deque<Entry>();
  constexpr size_t kCacheSize = 8;
  const bool tracked = !index.is_inference();
  const c10::TensorImpl* impl = index.unsafeGetTensorImpl();
  auto same = [&](const Entry& e) { return !e.tensor.expired() && e.tensor._unsafe_get_target() == impl; };
  if (tracked) {
    const uint32_t version = index._version();
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = cache.begin(); it != cache.end(); ++it)
      if (same(*it) && it->version == version) {
        const Entry e = *it;
        cache.erase(it);
        cache.push_front(e);
        return {e.lo, e.hi};
      }
  }
  const auto mm = index.aminmax();
  const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
  if (tracked) {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = cache.begin(); it != cache.end();)
      it = (it->tensor.expired() || same(*it)) ? cache.erase(it) : std::next(it);
    cache.push_front({WeakImpl(index.getIntrusivePtr()), static_cast<uint32_t>(index._version()), lo, hi});
    if (cache.size() > kCacheSize) cache.pop_back();
  }
  return {lo, hi};
}

void check_float(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

// tri [F,3] int32 with every index in [0, V); the kernels index pos and attr with it unchecked.
void check_tri(const at::Tensor& tri, int64_t V, const at::Device& device, const char* op) {
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3, op, ": tri must be [F, 3], got ", tri.sizes());
  TORCH_CHECK(tri.scalar_type() == at::kInt, op, ": tri must be int32, got ", tri.scalar_type());
  TORCH_CHECK(tri.device() == device, op, ": tri is on ", tri.device(), " but expected ", device);
  // triangle ids must survive rast's float32 encoding (common/triangle_id.h): at most 889,192,446 triangles
  TORCH_CHECK(tri.size(0) <= occ::kMaxFloatTriangles, op, ": too many triangles (", tri.size(0), "); rast's "
              "triangle ids hold at most ", occ::kMaxFloatTriangles);
  if (tri.numel() > 0) {
    const auto [lo, hi] = index_range(tri);
    TORCH_CHECK(lo >= 0 && hi < V, op, ": tri indices must lie in [0, ", V, "), got [", lo, ", ", hi, "]");
  }
}

void check_rast(const at::Tensor& rast, const char* op, const char* name) {
  TORCH_CHECK(rast.dim() == 4 && rast.size(3) == 4, op, ": ", name, " must be [B, H, W, 4], got ", rast.sizes());
  check_float(rast, op, name);
}

}  // namespace occ::ops
