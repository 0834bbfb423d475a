// Op schemas (TORCH_LIBRARY), the shared argument checks, the CPU/CUDA registrations, and the small pybind11
// module occrecon._C that reports how the extension was built.
//
// The Python layer (occrecon/ops) validates arguments first with messages that name them; the checks here are
// the last line of defence for direct torch.ops.occrecon.* calls: wrong input raises, never reads out of bounds.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <ATen/ops/aminmax.h>
#include <pybind11/pybind11.h>

#include <cfloat>
#include <cmath>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "common/triangle_id.h"
#include "cpu/ops_cpu.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/ops_cuda.h"
#endif

namespace {

void check_image_pair(const at::Tensor& target, const at::Tensor& render) {
  TORCH_CHECK(target.dim() == 4, "neighbour_min: target must be (B, C, H, W), got ", target.sizes());
  TORCH_CHECK(render.sizes() == target.sizes(), "neighbour_min: render ", render.sizes(), " must match target ",
              target.sizes());
  TORCH_CHECK(target.scalar_type() == at::kFloat || target.scalar_type() == at::kDouble,
              "neighbour_min: target must be float32 or float64, got ", target.scalar_type());
  TORCH_CHECK(render.scalar_type() == target.scalar_type(), "neighbour_min: render dtype ", render.scalar_type(),
              " must match target dtype ", target.scalar_type());
  TORCH_CHECK(render.device() == target.device(), "neighbour_min: render is on ", render.device(),
              " but target is on ", target.device());
  TORCH_CHECK(target.size(1) >= 1, "neighbour_min: target needs at least one channel");
  TORCH_CHECK(target.size(2) < (1 << 30) && target.size(3) < (1 << 30) && target.size(1) < (1 << 30),
              "neighbour_min: image dimensions too large");
}

void check_k(int64_t k, const at::Tensor& target) {
  TORCH_CHECK(k >= 1 && k % 2 == 1, "neighbour_min: k must be odd and >= 1, got ", k);
  TORCH_CHECK(k <= target.size(2) && k <= target.size(3), "neighbour_min: k = ", k, " is larger than the image ",
              target.size(2), "x", target.size(3));
}

std::tuple<at::Tensor, at::Tensor> neighbour_min_impl(const at::Tensor& target, const at::Tensor& render,
                                                      const std::optional<at::Tensor>& region, int64_t k) {
  check_image_pair(target, render);
  check_k(k, target);
  at::Tensor reg;
  if (region.has_value() && region->defined()) {
    reg = *region;
    TORCH_CHECK(reg.scalar_type() == at::kBool, "neighbour_min: region must be bool here, got ", reg.scalar_type());
    TORCH_CHECK(reg.dim() == 3 && reg.size(0) == target.size(0) && reg.size(1) == target.size(2) &&
                    reg.size(2) == target.size(3),
                "neighbour_min: region must be (B, H, W) = (", target.size(0), ", ", target.size(2), ", ",
                target.size(3), "), got ", reg.sizes());
    TORCH_CHECK(reg.device() == target.device(), "neighbour_min: region is on ", reg.device(), " but target is on ",
                target.device());
    reg = reg.contiguous();
  }
  const auto t = target.contiguous();
  const auto r = render.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (t.is_cuda()) return occ::cuda::neighbour_min_forward(t, r, reg, k);
#endif
  TORCH_CHECK(t.is_cpu(), "neighbour_min: no kernel for device ", t.device());
  return occ::cpu::neighbour_min_forward(t, r, reg, k);
}

std::tuple<at::Tensor, at::Tensor> neighbour_min_backward_impl(const at::Tensor& grad_d2, const at::Tensor& target,
                                                               const at::Tensor& render, const at::Tensor& idx,
                                                               int64_t k) {
  check_image_pair(target, render);
  check_k(k, target);
  const auto B = target.size(0), H = target.size(2), W = target.size(3);
  TORCH_CHECK(grad_d2.dim() == 3 && grad_d2.size(0) == B && grad_d2.size(1) == H && grad_d2.size(2) == W,
              "neighbour_min_backward: grad_d2 must be (B, H, W), got ", grad_d2.sizes());
  TORCH_CHECK(idx.sizes() == grad_d2.sizes(), "neighbour_min_backward: idx must be (B, H, W), got ", idx.sizes());
  TORCH_CHECK(idx.scalar_type() == at::kInt, "neighbour_min_backward: idx must be int32, got ", idx.scalar_type());
  TORCH_CHECK(grad_d2.scalar_type() == target.scalar_type(), "neighbour_min_backward: grad_d2 dtype mismatch");
  TORCH_CHECK(grad_d2.device() == target.device() && idx.device() == target.device(),
              "neighbour_min_backward: all tensors must be on ", target.device());
  const auto g = grad_d2.contiguous();
  const auto t = target.contiguous();
  const auto r = render.contiguous();
  const auto i = idx.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (t.is_cuda()) return occ::cuda::neighbour_min_backward(g, t, r, i, k);
#endif
  TORCH_CHECK(t.is_cpu(), "neighbour_min_backward: no kernel for device ", t.device());
  return occ::cpu::neighbour_min_backward(g, t, r, i, k);
}

// ----------------------------------------------------------------------------------------------- rasterizer
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

std::tuple<at::Tensor, at::Tensor> rasterize_impl(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                                                  int64_t width, const std::optional<at::Tensor>& ranges,
                                                  bool /*grad_db: used by the autograd formula only*/,
                                                  const std::optional<at::Tensor>& peel) {
  const char* op = "rasterize";
  TORCH_CHECK(pos.dim() == 3 || pos.dim() == 2, op, ": pos must be [B, V, 4] or [V, 4], got ", pos.sizes());
  TORCH_CHECK(pos.size(-1) == 4, op, ": pos must have 4 components (clip-space x, y, z, w), got ", pos.sizes());
  check_float(pos, op, "pos");
  TORCH_CHECK(height > 0 && width > 0 && height <= 16384 && width <= 16384, op,
              ": resolution must be in [1, 16384], got ", height, "x", width);
  const bool instanced = pos.dim() == 3;
  const int64_t V = pos.size(-2);
  check_tri(tri, V, pos.device(), op);
  at::Tensor rng;
  if (!instanced) {
    TORCH_CHECK(ranges.has_value() && ranges->defined(), op, ": range mode (pos [V, 4]) needs ranges [B, 2]");
    rng = ranges->contiguous();
    TORCH_CHECK(rng.dim() == 2 && rng.size(1) == 2 && rng.scalar_type() == at::kInt && rng.is_cpu(), op,
                ": ranges must be an int32 CPU tensor [B, 2], got ", rng.sizes(), " ", rng.scalar_type(), " on ",
                rng.device());
    const int32_t* r = rng.const_data_ptr<int32_t>();
    for (int64_t b = 0; b < rng.size(0); ++b)
      TORCH_CHECK(r[2 * b] >= 0 && r[2 * b + 1] >= 0 && int64_t(r[2 * b]) + r[2 * b + 1] <= tri.size(0), op,
                  ": ranges[", b, "] = (", r[2 * b], ", ", r[2 * b + 1], ") does not fit ", tri.size(0), " triangles");
  }
  at::Tensor prev;
  if (peel.has_value() && peel->defined()) {
    const int64_t B = instanced ? pos.size(0) : rng.size(0);
    TORCH_CHECK(peel->dim() == 4 && peel->size(0) == B && peel->size(1) == height && peel->size(2) == width &&
                    peel->size(3) == 4 && peel->scalar_type() == pos.scalar_type() && peel->device() == pos.device(),
                op, ": peel (the previous layer's rast) must be [", B, ", ", height, ", ", width, ", 4] ",
                pos.scalar_type(), " on ", pos.device(), ", got ", peel->sizes(), " ", peel->scalar_type(), " on ",
                peel->device());
    prev = peel->contiguous();
  }
  const auto p = pos.contiguous();
  const auto t = tri.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (p.is_cuda()) return occ::cuda::rasterize_forward(p, t, height, width, rng, prev);
#endif
  TORCH_CHECK(p.is_cpu(), op, ": no kernel for device ", p.device());
  return occ::cpu::rasterize_forward(p, t, height, width, rng, prev);
}

at::Tensor rasterize_backward_impl(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                                   const at::Tensor& grad_rast, const std::optional<at::Tensor>& grad_db) {
  const char* op = "rasterize_backward";
  TORCH_CHECK((pos.dim() == 3 || pos.dim() == 2) && pos.size(-1) == 4, op, ": pos must be [B, V, 4] or [V, 4]");
  check_float(pos, op, "pos");
  check_tri(tri, pos.size(-2), pos.device(), op);
  check_rast(rast, op, "rast");
  TORCH_CHECK(pos.dim() == 2 || pos.size(0) == rast.size(0), op, ": pos batch ", pos.size(0), " != rast batch ",
              rast.size(0));
  TORCH_CHECK(grad_rast.sizes() == rast.sizes(), op, ": grad_rast must match rast ", rast.sizes());
  at::Tensor gdb;
  if (grad_db.has_value() && grad_db->defined()) {
    TORCH_CHECK(grad_db->sizes() == rast.sizes() && grad_db->device() == pos.device(), op,
                ": grad_db must match rast ", rast.sizes(), " on ", pos.device(), ", got ", grad_db->sizes(), " on ",
                grad_db->device());
    check_float(*grad_db, op, "grad_db");
    gdb = grad_db->to(pos.scalar_type()).contiguous();
  }
  for (const auto* t : {&rast, &grad_rast})
    TORCH_CHECK(t->device() == pos.device() && t->scalar_type() == pos.scalar_type(), op,
                ": rast and gradients must have pos's dtype and device");
  const auto p = pos.contiguous(), t = tri.contiguous(), r = rast.contiguous(), g = grad_rast.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (p.is_cuda()) return occ::cuda::rasterize_backward(p, t, r, g, gdb);
#endif
  TORCH_CHECK(p.is_cpu(), op, ": no kernel for device ", p.device());
  return occ::cpu::rasterize_backward(p, t, r, g, gdb);
}

std::vector<int32_t> diff_list(c10::IntArrayRef diff_attrs, int64_t C, const char* op) {
  std::vector<int32_t> out;
  for (const int64_t c : diff_attrs) {
    TORCH_CHECK(c >= 0 && c < C, op, ": diff_attrs index ", c, " out of range for ", C, " attributes");
    out.push_back(static_cast<int32_t>(c));
  }
  return out;
}

void check_interpolate_args(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                            const std::optional<at::Tensor>& rast_db, bool need_db, const char* op) {
  TORCH_CHECK(attr.dim() == 3, op, ": attr must be [B or 1, V, C] here, got ", attr.sizes());
  check_float(attr, op, "attr");
  check_rast(rast, op, "rast");
  TORCH_CHECK(rast.scalar_type() == attr.scalar_type() && rast.device() == attr.device(), op,
              ": rast must have attr's dtype and device");
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == rast.size(0), op, ": attr batch ", attr.size(0),
              " must be 1 or rast's batch ", rast.size(0));
  check_tri(tri, attr.size(1), attr.device(), op);
  if (need_db) {
    TORCH_CHECK(rast_db.has_value() && rast_db->defined(), op, ": diff_attrs needs rast_db");
    TORCH_CHECK(rast_db->sizes() == rast.sizes() && rast_db->scalar_type() == attr.scalar_type() &&
                    rast_db->device() == attr.device(),
                op, ": rast_db must match rast ", rast.sizes(), " in shape, dtype and device");
  }
}

std::tuple<at::Tensor, at::Tensor> interpolate_impl(const at::Tensor& attr, const at::Tensor& rast,
                                                    const at::Tensor& tri, const std::optional<at::Tensor>& rast_db,
                                                    c10::IntArrayRef diff_attrs) {
  const char* op = "interpolate";
  check_interpolate_args(attr, rast, tri, rast_db, !diff_attrs.empty(), op);
  const auto diff = diff_list(diff_attrs, attr.size(2), op);
  const auto a = attr.contiguous(), r = rast.contiguous(), t = tri.contiguous();
  const auto db = diff.empty() ? at::Tensor() : rast_db->contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (a.is_cuda()) return occ::cuda::interpolate_forward(a, r, t, db, diff);
#endif
  TORCH_CHECK(a.is_cpu(), op, ": no kernel for device ", a.device());
  return occ::cpu::interpolate_forward(a, r, t, db, diff);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward_impl(
    const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri, const std::optional<at::Tensor>& rast_db,
    c10::IntArrayRef diff_attrs, const at::Tensor& grad_out, const std::optional<at::Tensor>& grad_da) {
  const char* op = "interpolate_backward";
  check_interpolate_args(attr, rast, tri, rast_db, !diff_attrs.empty(), op);
  const auto diff = diff_list(diff_attrs, attr.size(2), op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  TORCH_CHECK(grad_out.dim() == 4 && grad_out.size(0) == B && grad_out.size(1) == H && grad_out.size(2) == W &&
                  grad_out.size(3) == attr.size(2),
              op, ": grad_out must be [B, H, W, C] = [", B, ", ", H, ", ", W, ", ", attr.size(2), "], got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.device() == attr.device(), op, ": grad_out is on ", grad_out.device(), " but attr is on ",
              attr.device());
  check_float(grad_out, op, "grad_out");
  at::Tensor gda;
  if (!diff.empty() && grad_da.has_value() && grad_da->defined()) {
    const int64_t nd2 = 2 * static_cast<int64_t>(diff.size());
    TORCH_CHECK(grad_da->dim() == 4 && grad_da->size(0) == B && grad_da->size(1) == H && grad_da->size(2) == W &&
                    grad_da->size(3) == nd2,
                op, ": grad_da must be [B, H, W, 2 * len(diff_attrs)] = [", B, ", ", H, ", ", W, ", ", nd2, "], got ",
                grad_da->sizes());
    TORCH_CHECK(grad_da->device() == attr.device(), op, ": grad_da is on ", grad_da->device(), " but attr is on ",
                attr.device());
    check_float(*grad_da, op, "grad_da");
    gda = grad_da->to(attr.scalar_type()).contiguous();
  }
  const auto a = attr.contiguous(), r = rast.contiguous(), t = tri.contiguous();
  const auto g = grad_out.to(attr.scalar_type()).contiguous();
  const auto db = diff.empty() ? at::Tensor() : rast_db->contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (a.is_cuda()) return occ::cuda::interpolate_backward(a, r, t, db, diff, g, gda);
#endif
  TORCH_CHECK(a.is_cpu(), op, ": no kernel for device ", a.device());
  return occ::cpu::interpolate_backward(a, r, t, db, diff, g, gda);
}

}  // namespace

TORCH_LIBRARY(occrecon, m) {
  m.def("neighbour_min(Tensor target, Tensor render, Tensor? region, int k) -> (Tensor, Tensor)");
  m.def("neighbour_min_backward(Tensor grad_d2, Tensor target, Tensor render, Tensor idx, int k) -> (Tensor, Tensor)");
  // grad_db only tells the autograd formula whether rast_db's gradient flows into pos (nvdiffrast's flag).
  m.def("rasterize(Tensor pos, Tensor tri, int height, int width, Tensor? ranges, bool grad_db, Tensor? peel=None) "
        "-> (Tensor, Tensor)");
  m.def("rasterize_backward(Tensor pos, Tensor tri, Tensor rast, Tensor grad_rast, Tensor? grad_db) -> Tensor");
  m.def("interpolate(Tensor attr, Tensor rast, Tensor tri, Tensor? rast_db, int[] diff_attrs) -> (Tensor, Tensor)");
  m.def("interpolate_backward(Tensor attr, Tensor rast, Tensor tri, Tensor? rast_db, int[] diff_attrs, "
        "Tensor grad_out, Tensor? grad_da) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(occrecon, CPU, m) {
  m.impl("neighbour_min", &neighbour_min_impl);
  m.impl("neighbour_min_backward", &neighbour_min_backward_impl);
  m.impl("rasterize", &rasterize_impl);
  m.impl("rasterize_backward", &rasterize_backward_impl);
  m.impl("interpolate", &interpolate_impl);
  m.impl("interpolate_backward", &interpolate_backward_impl);
}

#ifdef OCCRECON_WITH_CUDA
TORCH_LIBRARY_IMPL(occrecon, CUDA, m) {
  m.impl("neighbour_min", &neighbour_min_impl);
  m.impl("neighbour_min_backward", &neighbour_min_backward_impl);
  m.impl("rasterize", &rasterize_impl);
  m.impl("rasterize_backward", &rasterize_backward_impl);
  m.impl("interpolate", &interpolate_impl);
  m.impl("interpolate_backward", &interpolate_backward_impl);
}
#endif

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "occrecon compiled kernels (ops are registered under torch.ops.occrecon on import)";
  mod.def("build_info", [] {
    pybind11::dict info;
    info["version"] = OCCRECON_VERSION;
    info["torch_version"] = OCCRECON_TORCH_VERSION;
#ifdef OCCRECON_WITH_CUDA
    info["with_cuda"] = true;
#else
    info["with_cuda"] = false;
#endif
    info["cuda_archs"] = OCCRECON_CUDA_ARCHS;
#ifdef OCCRECON_OPENMP
    info["openmp"] = true;  // CPU kernels run on torch's intra-op threads
#else
    info["openmp"] = false;
#endif
    info["compiler"] = OCCRECON_COMPILER;
    return info;
  });
}

// ------------------------------------------------------------------------------------------------ antialias
// nvdiffrast's analytic edge antialiasing (math in csrc/common/antialias.h). The kernels range-check every index
// they read from rast, tri and topology_hash, so the checks here are about shapes, dtypes and devices only.
namespace {

void check_aa_tri(const at::Tensor& tri, const char* op) {
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.size(0) >= 1, op, ": tri must be (F, 3) with F >= 1, got ",
              tri.sizes());
  TORCH_CHECK(tri.scalar_type() == at::kInt, op, ": tri must be int32, got ", tri.scalar_type());
  TORCH_CHECK(tri.size(0) < (1LL << 29), op, ": too many triangles (", tri.size(0), ")");
}

void check_aa_inputs(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
                     const at::Tensor& topo, const char* op) {
  TORCH_CHECK(color.dim() == 4 && color.size(0) >= 1 && color.size(1) >= 1 && color.size(2) >= 1 &&
                  color.size(3) >= 1,
              op, ": color must be (B, H, W, C) with all sizes >= 1, got ", color.sizes());
  TORCH_CHECK(color.scalar_type() == at::kFloat || color.scalar_type() == at::kDouble, op,
              ": color must be float32 or float64, got ", color.scalar_type());
  TORCH_CHECK(color.size(1) < (1 << 30) && color.size(2) < (1 << 30) && color.size(3) < (1 << 30), op,
              ": image dimensions too large");
  TORCH_CHECK(rast.dim() == 4 && rast.size(0) == color.size(0) && rast.size(1) == color.size(1) &&
                  rast.size(2) == color.size(2) && rast.size(3) == 4,
              op, ": rast must be (B, H, W, 4) = (", color.size(0), ", ", color.size(1), ", ", color.size(2),
              ", 4), got ", rast.sizes());
  TORCH_CHECK(rast.scalar_type() == at::kFloat, op, ": rast must be float32, got ", rast.scalar_type());
  const bool instanced = pos.dim() == 3;
  TORCH_CHECK((instanced && pos.size(0) == color.size(0) && pos.size(2) == 4) || (pos.dim() == 2 && pos.size(1) == 4),
              op, ": pos must be (B, V, 4) with B = ", color.size(0), " or (V, 4), got ", pos.sizes());
  const int64_t V = pos.size(instanced ? 1 : 0);
  TORCH_CHECK(V >= 1 && V < (1LL << 31), op, ": pos must hold 1 to 2^31 - 1 vertices, got ", V);
  TORCH_CHECK(pos.scalar_type() == color.scalar_type(), op, ": pos dtype ", pos.scalar_type(),
              " must match color dtype ", color.scalar_type());
  check_aa_tri(tri, op);
  TORCH_CHECK(topo.dim() == 2 && topo.size(0) == tri.size(0) && topo.size(1) == 3 && topo.scalar_type() == at::kInt,
              op, ": topology_hash must be int32 (F, 3) = (", tri.size(0), ", 3), got ", topo.scalar_type(), " ",
              topo.sizes());
  for (const at::Tensor* t : {&rast, &pos, &tri, &topo})
    TORCH_CHECK(t->device() == color.device(), op, ": all inputs must be on ", color.device(), ", one is on ",
                t->device());
}

at::Tensor antialias_topology_impl(const at::Tensor& tri) {
  check_aa_tri(tri, "antialias_construct_topology_hash");
  const auto t = tri.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (t.is_cuda()) return occ::cuda::antialias_topology(t);
#endif
  TORCH_CHECK(t.is_cpu(), "antialias_construct_topology_hash: no kernel for device ", t.device());
  return occ::cpu::antialias_topology(t);
}

at::Tensor antialias_impl(const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos,
                          const at::Tensor& tri, const at::Tensor& topo, double /*pos_gradient_boost: backward only*/) {
  check_aa_inputs(color, rast, pos, tri, topo, "antialias");
  const auto c = color.contiguous(), r = rast.contiguous(), p = pos.contiguous(), t = tri.contiguous(),
             o = topo.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (c.is_cuda()) return occ::cuda::antialias_forward(c, r, p, t, o);
#endif
  TORCH_CHECK(c.is_cpu(), "antialias: no kernel for device ", c.device());
  return occ::cpu::antialias_forward(c, r, p, t, o);
}

std::tuple<at::Tensor, at::Tensor> antialias_backward_impl(const at::Tensor& grad_out, const at::Tensor& color,
                                                           const at::Tensor& rast, const at::Tensor& pos,
                                                           const at::Tensor& tri, const at::Tensor& topo) {
  check_aa_inputs(color, rast, pos, tri, topo, "antialias_backward");
  TORCH_CHECK(grad_out.sizes() == color.sizes() && grad_out.scalar_type() == color.scalar_type() &&
                  grad_out.device() == color.device(),
              "antialias_backward: grad_out must match color (", color.sizes(), ", ", color.scalar_type(), ", ",
              color.device(), "), got ", grad_out.sizes(), ", ", grad_out.scalar_type(), ", ", grad_out.device());
  const auto g = grad_out.contiguous(), c = color.contiguous(), r = rast.contiguous(), p = pos.contiguous(),
             t = tri.contiguous(), o = topo.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (c.is_cuda()) return occ::cuda::antialias_backward(g, c, r, p, t, o);
#endif
  TORCH_CHECK(c.is_cpu(), "antialias_backward: no kernel for device ", c.device());
  return occ::cpu::antialias_backward(g, c, r, p, t, o);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(occrecon, m) {
  m.def("antialias_construct_topology_hash(Tensor tri) -> Tensor");
  m.def("antialias(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor topology_hash, "
        "float pos_gradient_boost=1.0) -> Tensor");
  m.def("antialias_backward(Tensor grad_out, Tensor color, Tensor rast, Tensor pos, Tensor tri, "
        "Tensor topology_hash) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(occrecon, CPU, m) {
  m.impl("antialias_construct_topology_hash", &antialias_topology_impl);
  m.impl("antialias", &antialias_impl);
  m.impl("antialias_backward", &antialias_backward_impl);
}

#ifdef OCCRECON_WITH_CUDA
TORCH_LIBRARY_IMPL(occrecon, CUDA, m) {
  m.impl("antialias_construct_topology_hash", &antialias_topology_impl);
  m.impl("antialias", &antialias_impl);
  m.impl("antialias_backward", &antialias_backward_impl);
}
#endif

// ------------------------------------------------------------------------------------------------- sh_shade
// Spherical-harmonics Lambertian shading (math in csrc/common/sh.h): normals [B,N,3], albedo [B or 1,N,3],
// gamma [B,9,3] (band function, RGB).
namespace {

void check_sh_inputs(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma, const char* op) {
  TORCH_CHECK(normals.dim() == 3 && normals.size(2) == 3, op, ": normals must be (B, N, 3), got ", normals.sizes());
  TORCH_CHECK(normals.scalar_type() == at::kFloat || normals.scalar_type() == at::kDouble, op,
              ": normals must be float32 or float64, got ", normals.scalar_type());
  const int64_t B = normals.size(0), N = normals.size(1);
  TORCH_CHECK(albedo.dim() == 3 && (albedo.size(0) == B || albedo.size(0) == 1) && albedo.size(1) == N &&
                  albedo.size(2) == 3,
              op, ": albedo must be (B or 1, N, 3) with B = ", B, ", N = ", N, ", got ", albedo.sizes());
  TORCH_CHECK(gamma.dim() == 3 && gamma.size(0) == B && gamma.size(1) == 9 && gamma.size(2) == 3, op,
              ": gamma must be (B, 9, 3) = (", B, ", 9, 3), got ", gamma.sizes());
  for (const at::Tensor* t : {&albedo, &gamma}) {
    TORCH_CHECK(t->scalar_type() == normals.scalar_type(), op, ": albedo and gamma must have normals' dtype ",
                normals.scalar_type(), ", got ", t->scalar_type());
    TORCH_CHECK(t->device() == normals.device(), op, ": all inputs must be on ", normals.device(), ", one is on ",
                t->device());
  }
}

at::Tensor sh_shade_impl(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  check_sh_inputs(normals, albedo, gamma, "sh_shade");
  const auto n = normals.contiguous(), a = albedo.contiguous(), g = gamma.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (n.is_cuda()) return occ::cuda::sh_shade_forward(n, a, g);
#endif
  TORCH_CHECK(n.is_cpu(), "sh_shade: no kernel for device ", n.device());
  return occ::cpu::sh_shade_forward(n, a, g);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shade_backward_impl(const at::Tensor& grad_out,
                                                                      const at::Tensor& normals,
                                                                      const at::Tensor& albedo,
                                                                      const at::Tensor& gamma) {
  check_sh_inputs(normals, albedo, gamma, "sh_shade_backward");
  TORCH_CHECK(grad_out.sizes() == normals.sizes() && grad_out.scalar_type() == normals.scalar_type() &&
                  grad_out.device() == normals.device(),
              "sh_shade_backward: grad_out must match normals (", normals.sizes(), ", ", normals.scalar_type(), ", ",
              normals.device(), "), got ", grad_out.sizes(), ", ", grad_out.scalar_type(), ", ", grad_out.device());
  const auto go = grad_out.contiguous(), n = normals.contiguous(), a = albedo.contiguous(), g = gamma.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (n.is_cuda()) return occ::cuda::sh_shade_backward(go, n, a, g);
#endif
  TORCH_CHECK(n.is_cpu(), "sh_shade_backward: no kernel for device ", n.device());
  return occ::cpu::sh_shade_backward(go, n, a, g);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(occrecon, m) {
  m.def("sh_shade(Tensor normals, Tensor albedo, Tensor gamma) -> Tensor");
  m.def("sh_shade_backward(Tensor grad_out, Tensor normals, Tensor albedo, Tensor gamma) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(occrecon, CPU, m) {
  m.impl("sh_shade", &sh_shade_impl);
  m.impl("sh_shade_backward", &sh_shade_backward_impl);
}

#ifdef OCCRECON_WITH_CUDA
TORCH_LIBRARY_IMPL(occrecon, CUDA, m) {
  m.impl("sh_shade", &sh_shade_impl);
  m.impl("sh_shade_backward", &sh_shade_backward_impl);
}
#endif

// ------------------------------------------------------------------------------------------- vertex_normals
// Area-weighted vertex normals (math in csrc/common/normals.h): vertices [B,V,3], tri [F,3] int32. The kernels
// skip triangles with an index outside [0, V) by themselves (they never read out of bounds); the range check
// here turns such a mesh into an error for direct calls.
namespace {

void check_normals_inputs(const at::Tensor& vertices, const at::Tensor& tri, double eps, const char* op) {
  TORCH_CHECK(vertices.dim() == 3 && vertices.size(2) == 3, op, ": vertices must be (B, V, 3), got ",
              vertices.sizes());
  check_float(vertices, op, "vertices");
  TORCH_CHECK(vertices.size(1) < (int64_t(1) << 31) - 1, op, ": too many vertices");
  TORCH_CHECK(tri.size(0) < (int64_t(1) << 29), op, ": too many triangles");
  check_tri(tri, vertices.size(1), vertices.device(), op);
  TORCH_CHECK(eps > 0 && std::isfinite(eps), op, ": eps must be positive and finite, got ", eps);
  // the kernels use eps in the vertices' dtype: it must stay a normal number there (1e-300 is 0 in float32)
  const bool f32 = vertices.scalar_type() == at::kFloat;
  const double tiny = f32 ? double(FLT_MIN) : DBL_MIN, huge = f32 ? double(FLT_MAX) : DBL_MAX;
  TORCH_CHECK(eps >= tiny && eps <= huge, op, ": eps = ", eps, " is not a normal ", vertices.scalar_type(),
              " number (must lie in [", tiny, ", ", huge, "])");
}

void check_like(const at::Tensor& t, const at::Tensor& ref, at::IntArrayRef sizes, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == sizes && t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), op, ": ",
              name, " must be ", sizes, " ", ref.scalar_type(), " on ", ref.device(), ", got ", t.sizes(), " ",
              t.scalar_type(), " on ", t.device());
}

std::tuple<at::Tensor, at::Tensor> vertex_normals_impl(const at::Tensor& vertices, const at::Tensor& tri, double eps) {
  check_normals_inputs(vertices, tri, eps, "vertex_normals");
  const auto v = vertices.contiguous(), t = tri.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (v.is_cuda()) return occ::cuda::vertex_normals_forward(v, t, eps);
#endif
  TORCH_CHECK(v.is_cpu(), "vertex_normals: no kernel for device ", v.device());
  return occ::cpu::vertex_normals_forward(v, t, eps);
}

at::Tensor vertex_normals_backward_impl(const at::Tensor& grad_normals, const at::Tensor& vertices,
                                        const at::Tensor& tri, const at::Tensor& normals, const at::Tensor& norms,
                                        double eps) {
  const char* op = "vertex_normals_backward";
  check_normals_inputs(vertices, tri, eps, op);
  check_like(grad_normals, vertices, vertices.sizes(), op, "grad_normals");
  check_like(normals, vertices, vertices.sizes(), op, "normals");
  check_like(norms, vertices, {vertices.size(0), vertices.size(1)}, op, "norms");
  const auto g = grad_normals.contiguous(), v = vertices.contiguous(), t = tri.contiguous(),
             n = normals.contiguous(), r = norms.contiguous();
#ifdef OCCRECON_WITH_CUDA
  if (v.is_cuda()) return occ::cuda::vertex_normals_backward(g, v, t, n, r, eps);
#endif
  TORCH_CHECK(v.is_cpu(), op, ": no kernel for device ", v.device());
  return occ::cpu::vertex_normals_backward(g, v, t, n, r, eps);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(occrecon, m) {
  m.def("vertex_normals(Tensor vertices, Tensor tri, float eps) -> (Tensor, Tensor)");
  m.def("vertex_normals_backward(Tensor grad_normals, Tensor vertices, Tensor tri, Tensor normals, Tensor norms, "
        "float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(occrecon, CPU, m) {
  m.impl("vertex_normals", &vertex_normals_impl);
  m.impl("vertex_normals_backward", &vertex_normals_backward_impl);
}

#ifdef OCCRECON_WITH_CUDA
TORCH_LIBRARY_IMPL(occrecon, CUDA, m) {
  m.impl("vertex_normals", &vertex_normals_impl);
  m.impl("vertex_normals_backward", &vertex_normals_backward_impl);
}
#endif
