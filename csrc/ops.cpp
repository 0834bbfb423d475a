// The extension's library declaration (TORCH_LIBRARY: each op adds its schemas with a fragment in its own file,
// csrc/ops/<op>.cpp, and registers its kernels per dispatch key there) and the small pybind11 module occrecon._C
// that reports how the extension was built.
#include <torch/library.h>

#include <pybind11/pybind11.h>

// The namespace's one definition; the schemas are the fragments of csrc/ops/*.cpp.
TORCH_LIBRARY(occrecon, m) { (void)m; }

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
