// The texture op (nvdiffrast's texture, 2D and cube maps): its schema, its argument checks and its registration for CPU and CUDA
// (dispatch by key: each back end's impl calls its kernels directly). Math: csrc/common/texture.h; kernels:
// csrc/cpu/texture.cpp, csrc/cuda/texture.cu (+ glue csrc/cuda/texture.cpp).
//
//   texture(Tensor[] levels, Tensor uv, Tensor? uv_da, Tensor? bias, int filter, int boundary) -> Tensor
//   texture_backward(..., Tensor grad_out) -> Tensor[]  (grad of each level, uv, uv_da or [0], bias or [0])
//
// levels: the mip stack, levels[0] the base texture [Nt, H, W, C], level l [Nt, max(H >> l, 1), max(W >> l, 1), C];
// uv [N, h, w, 2] with Nt in {1, N}; uv_da [N, h, w, 4]; bias [N, h, w]; filter 0 nearest, 1 linear,
// 2 linear-mipmap-nearest, 3 linear-mipmap-linear; boundary 1 wrap, 2 clamp, 3 zero, or 0 cube: then the levels
// are [Nt, 6, S_l, S_l, C], uv [N, h, w, 3] a direction and uv_da [N, h, w, 6]. The Python layer
// (occrecon/render/texture.py) checks first with messages naming the arguments; these checks are the last line
// of defence for direct torch.ops.occrecon.texture calls.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "common/texture.h"
#include "ops/checks.h"
#include "cpu/texture.h"
#ifdef OCCRECON_WITH_CUDA
#include "cuda/texture.h"
#endif

namespace occ::ops {
namespace {

struct TextureArgs {
  std::vector<at::Tensor> levels;
  at::Tensor uv, uv_da, bias;
};

bool present(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined() && t->numel() > 0; }

TextureArgs check_texture(const char* op, const std::vector<at::Tensor>& levels, const at::Tensor& uv,
                          const std::optional<at::Tensor>& uv_da, const std::optional<at::Tensor>& bias,
                          int64_t filter, int64_t boundary) {
  TORCH_CHECK(filter >= kTexNearest && filter <= kTexLinearMipLinear, op, ": filter must be 0..3, got ", filter);
  TORCH_CHECK(boundary >= kTexCube && boundary <= kTexZero, op,
              ": boundary must be 0 (cube), 1 (wrap), 2 (clamp) or 3 (zero), got ", boundary);
  TORCH_CHECK(!levels.empty() && static_cast<int>(levels.size()) <= kTexMaxLevels, op, ": levels must hold 1 to ",
              kTexMaxLevels, " tensors, got ", levels.size());
  const bool cube = boundary == kTexCube;
  const int64_t dims = cube ? 5 : 4, uvc = cube ? 3 : 2, dac = cube ? 6 : 4;
  const at::Tensor& t0 = levels[0];
  bool sizes_ok = t0.dim() == dims;
  for (int64_t d = 0; sizes_ok && d < dims; ++d) sizes_ok = t0.size(d) > 0;
  if (cube && sizes_ok) sizes_ok = t0.size(1) == 6 && t0.size(2) == t0.size(3);
  TORCH_CHECK(sizes_ok, op, ": tex must be ", cube ? "[>0, 6, S, S, >0] (cube map, square faces)" : "[>0, >0, >0, >0]",
              ", got ", t0.sizes());
  TORCH_CHECK(t0.scalar_type() == at::kFloat || t0.scalar_type() == at::kDouble, op,
              ": tex must be float32 or float64, got ", t0.scalar_type());
  const int64_t Nt = t0.size(0), H = t0.size(dims - 3), W = t0.size(dims - 2), C = t0.size(dims - 1);
  TORCH_CHECK(H <= 65536 && W <= 65536, op, ": texture size too large: ", t0.sizes());
  TORCH_CHECK(C <= (int64_t(1) << 20), op, ": too many channels: ", C);
  TextureArgs a;
  for (size_t l = 0; l < levels.size(); ++l) {
    const at::Tensor& t = levels[l];
    const int64_t hl = std::max<int64_t>(H >> l, 1), wl = std::max<int64_t>(W >> l, 1);
    std::vector<int64_t> want = cube ? std::vector<int64_t>{Nt, 6, hl, wl, C} : std::vector<int64_t>{Nt, hl, wl, C};
    TORCH_CHECK(t.sizes() == at::IntArrayRef(want), op, ": mip level ", l, " must be ", at::IntArrayRef(want),
                ", got ", t.sizes());
    TORCH_CHECK(t.scalar_type() == t0.scalar_type() && t.device() == t0.device(), op, ": mip level ", l,
                " must be ", t0.scalar_type(), " on ", t0.device(), ", got ", t.scalar_type(), " on ", t.device());
    a.levels.push_back(t.contiguous());
  }
  TORCH_CHECK(uv.dim() == 4 && uv.size(3) == uvc && uv.size(0) > 0, op, ": uv must be [N, h, w, ", uvc, "], got ",
              uv.sizes());
  TORCH_CHECK(uv.scalar_type() == t0.scalar_type() && uv.device() == t0.device(), op, ": uv must be ",
              t0.scalar_type(), " on ", t0.device(), ", got ", uv.scalar_type(), " on ", uv.device());
  const int64_t N = uv.size(0);
  TORCH_CHECK(Nt == 1 || Nt == N, op, ": minibatch size mismatch between tex (", Nt, ") and uv (", N, ")");
  a.uv = uv.contiguous();
  auto like = [&](const std::optional<at::Tensor>& t, std::vector<int64_t> sizes, const char* name) {
    if (!present(t)) return at::Tensor();
    TORCH_CHECK(t->sizes() == at::IntArrayRef(sizes) && t->scalar_type() == uv.scalar_type() &&
                    t->device() == uv.device(),
                op, ": ", name, " must be ", at::IntArrayRef(sizes), " ", uv.scalar_type(), " on ", uv.device(),
                ", got ", t->sizes(), " ", t->scalar_type(), " on ", t->device());
    return t->contiguous();
  };
  const bool mip = filter == kTexLinearMipNearest || filter == kTexLinearMipLinear;
  if (mip) {
    a.uv_da = like(uv_da, {N, uv.size(1), uv.size(2), dac}, "uv_da");
    a.bias = like(bias, {N, uv.size(1), uv.size(2)}, "mip_level_bias");
    TORCH_CHECK(a.uv_da.defined() || a.bias.defined(), op,
                ": mipmapping filter mode requires uv_da and/or mip_level_bias input");
  }
  return a;
}

void check_grad(const char* op, const at::Tensor& grad_out, const TextureArgs& a) {
  const auto& uv = a.uv;
  const std::vector<int64_t> sizes = {uv.size(0), uv.size(1), uv.size(2), a.levels[0].size(a.levels[0].dim() - 1)};
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef(sizes) && grad_out.scalar_type() == uv.scalar_type() &&
                  grad_out.device() == uv.device(),
              op, ": grad_out must be ", at::IntArrayRef(sizes), " ", uv.scalar_type(), " on ", uv.device(),
              ", got ", grad_out.sizes(), " ", grad_out.scalar_type(), " on ", grad_out.device());
}

using Forward = at::Tensor (*)(const std::vector<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&, int64_t, int64_t);
using Backward = std::vector<at::Tensor> (*)(const std::vector<at::Tensor>&, const at::Tensor&, const at::Tensor&,
                                             const at::Tensor&, int64_t, int64_t, const at::Tensor&);

// One back end's impls: the checks, then its kernels (the dispatch key chose the back end).
template <Forward kernel>
at::Tensor texture_impl(const std::vector<at::Tensor>& levels, const at::Tensor& uv,
                        const std::optional<at::Tensor>& uv_da, const std::optional<at::Tensor>& bias, int64_t filter,
                        int64_t boundary) {
  const auto a = check_texture("texture", levels, uv, uv_da, bias, filter, boundary);
  return kernel(a.levels, a.uv, a.uv_da, a.bias, filter, boundary);
}

template <Backward kernel>
std::vector<at::Tensor> texture_backward_impl(const std::vector<at::Tensor>& levels, const at::Tensor& uv,
                                              const std::optional<at::Tensor>& uv_da,
                                              const std::optional<at::Tensor>& bias, int64_t filter,
                                              int64_t boundary, const at::Tensor& grad_out) {
  const auto a = check_texture("texture_backward", levels, uv, uv_da, bias, filter, boundary);
  check_grad("texture_backward", grad_out, a);
  return kernel(a.levels, a.uv, a.uv_da, a.bias, filter, boundary, grad_out.contiguous());
}

}  // namespace

// The op's schema fragment.
void register_texture(torch::Library& m) {
  m.def("texture(Tensor[] levels, Tensor uv, Tensor? uv_da, Tensor? bias, int filter, int boundary) -> Tensor");
  m.def("texture_backward(Tensor[] levels, Tensor uv, Tensor? uv_da, Tensor? bias, int filter, int boundary, "
        "Tensor grad_out) -> Tensor[]");
}

// Its kernels, per dispatch key.
void register_texture_impl(torch::Library& m, c10::DispatchKey key) {
  if (key == c10::DispatchKey::CPU) {
    m.impl("texture", &texture_impl<&occ::cpu::texture_forward>);
    m.impl("texture_backward", &texture_backward_impl<&occ::cpu::texture_backward>);
  }
#ifdef OCCRECON_WITH_CUDA
  if (key == c10::DispatchKey::CUDA) {
    m.impl("texture", &texture_impl<&occ::cuda::texture_forward>);
    m.impl("texture_backward", &texture_backward_impl<&occ::cuda::texture_backward>);
  }
#endif
}

}  // namespace occ::ops

OCC_REGISTER_OP(texture)
