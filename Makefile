# occrecon developer entry points. On a fresh machine `make demo` or `make test` does all set-up:
# a local virtual environment (.venv) with the pinned CPU toolchain, then the extension build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NVCC   ?= nvcc
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

.PHONY: demo test install bench bench-smoke train-smoke cuda-check cuda-build-check fuzz sanitize-check wheel-check clean

$(BIN)/.deps-installed: requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements/cpu.txt
	touch $@

# Incremental: the CMake/ninja build dir (build/) is kept, so an unchanged tree rebuilds nothing.
install: $(BIN)/.deps-installed
	$(BIN)/pip install --disable-pip-version-check -q --no-build-isolation -e .

demo: install
	$(BIN)/occrecon demo

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/pytest benchmarks --benchmark-columns=median,iqr,rounds --benchmark-sort=name

bench-smoke: install
	OCCRECON_BENCH_SMOKE=1 $(BIN)/pytest benchmarks -q --benchmark-disable

# The whole pipeline on a tiny scale (CI): occlusion data, every training stage (configs/tiny.yaml), a resume of the
# finished run (nothing left to do, same checkpoint), and the evaluation table.
train-smoke: install
	rm -rf runs/data/tiny runs/tiny
	$(BIN)/occrecon data synth --out runs/data/tiny --synthetic 12 --real 4 --seed 0 --permissive-only --workers 1
	$(BIN)/occrecon train configs/tiny.yaml
	$(BIN)/occrecon train configs/tiny.yaml --resume
	$(BIN)/occrecon evaluate --data runs/data/tiny --checkpoint Pretrained=runs/tiny/init.pt:pseudo \
	  --checkpoint MoFA=runs/tiny/mofa.pt --checkpoint Proposed=runs/tiny/em.pt

# Compile-check every CUDA source (torch-free by design) for sm_80 and sm_90; a compile error fails.
cuda-check:
	@if command -v $(NVCC) >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d); status=0; \
	  for f in csrc/cuda/*.cu; do \
	    echo "nvcc $$f"; \
	    $(NVCC) -std=c++20 -O2 --fmad=false -Icsrc $(CUDA_GENCODE) -c $$f -o $$tmp/out.o || status=1; \
	  done; rm -rf $$tmp; exit $$status; \
	else echo "nvcc not found: CUDA compile check skipped"; fi

# Full CUDA build (torch 2.14.1+cu130 in .venv-cuda, OCCRECON_CUDA=ON): proves the tensor glue compiles and links
# and the CPU tests pass in a CUDA build. No GPU needed. Needs nvcc and ~12 GB of disk; skipped without nvcc.
CUDA_VENV ?= .venv-cuda
# The built wheel in a fresh venv outside the tree, no shared folder: render-only, then reconstruct with [face].
wheel-check: install
	tools/wheel-check.sh $(BIN)/python

cuda-build-check:
	@if ! command -v $(NVCC) >/dev/null 2>&1; then echo "nvcc not found: CUDA build check skipped"; exit 0; fi; \
	if [ $$(df -Pk . | awk 'NR==2 {print $$4}') -lt 12000000 ]; then \
	  echo "less than 12 GB free: CUDA build check skipped"; exit 0; fi; \
	set -e; \
	[ -x $(CUDA_VENV)/bin/python ] || $(PYTHON) -m venv $(CUDA_VENV); \
	$(CUDA_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/cuda.txt; \
	OCCRECON_CUDA=ON $(CUDA_VENV)/bin/pip install --disable-pip-version-check -q --no-build-isolation \
	  --config-settings=build-dir=build/cuda -e .; \
	$(CUDA_VENV)/bin/python -c "import occrecon, sys; i = occrecon.build_info(); print(i); sys.exit(0 if i['with_cuda'] else 1)"; \
	$(CUDA_VENV)/bin/pytest -q -p no:cacheprovider

# The long randomized run over every public op and every torch.ops.occrecon op (tests/fuzz, docs/testing.md): each
# case must end in a result or a clean Python exception; a crash, hang or broken invariant names its seed and case.
FUZZ_CASES ?= 20000
FUZZ_SEED ?= 1
FUZZ_JOBS ?= 2
fuzz: install
	$(BIN)/python -m tests.fuzz --cases $(FUZZ_CASES) --seed $(FUZZ_SEED) --jobs $(FUZZ_JOBS)

# AddressSanitizer + UBSan build of the CPU kernels (OCCRECON_SANITIZE) in its own .venv-asan and build/asan (the
# normal .venv and build/ are never touched), then the kernel tests and the fuzz slice under it. Any sanitizer
# report is fatal (halt_on_error, -fno-sanitize-recover=all) and is also written under build/asan/reports/: a
# report there fails the target even if a test swallowed the exit status of the process that made it.
ASAN_VENV ?= .venv-asan
ASAN_BUILD ?= build/asan
SANITIZE ?= address,undefined
CXX_FOR_ASAN ?= g++
KERNEL_TESTS ?= tests/test_rasterize.py tests/test_reference_raster.py tests/test_antialias.py \
  tests/test_neighbour_min.py tests/test_sh_shade.py tests/test_vertex_normals.py tests/test_face_renderer.py \
  tests/test_kernel_hardening.py tests/test_texture.py tests/test_depth_peeling.py tests/test_fragments_pytorch3d.py
ASAN_REPORTS := $(ASAN_BUILD)/reports
ASAN_FUZZ_CASES ?= 3000
# libstdc++ is preloaded too: python links none, and ASan must find __cxa_throw when it starts.
ASAN_ENV = OCCRECON_FUZZ_CASES=$(ASAN_FUZZ_CASES) LD_PRELOAD=$$($(CXX_FOR_ASAN) -print-file-name=libasan.so):$$($(CXX_FOR_ASAN) -print-file-name=libstdc++.so) \
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=8192:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$(CURDIR)/$(ASAN_REPORTS)/asan:log_exe_name=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$(CURDIR)/$(ASAN_REPORTS)/ubsan:log_exe_name=1
$(ASAN_VENV)/bin/.deps-installed: requirements/cpu.txt
	$(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/pip install --disable-pip-version-check -q -r requirements/cpu.txt
	touch $@

sanitize-check: $(ASAN_VENV)/bin/.deps-installed
	OCCRECON_CUDA=OFF $(ASAN_VENV)/bin/pip install --disable-pip-version-check -q --no-build-isolation \
	  --config-settings=build-dir=$(ASAN_BUILD) --config-settings=cmake.define.OCCRECON_SANITIZE=$(SANITIZE) -e .
	@so=$$(ls $(ASAN_VENV)/lib/python*/site-packages/occrecon/_C*.so); \
	  if ! grep -q __asan_init $$so; then echo "$$so is not an ASan build" >&2; exit 1; fi; echo "ASan build: $$so"
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	$(ASAN_ENV) $(ASAN_VENV)/bin/pytest -q -p no:cacheprovider $(KERNEL_TESTS) tests/fuzz; status=$$?; \
	  reports=$$(grep -lE "ERROR: [A-Za-z]*Sanitizer|runtime error:|Sanitizer: CHECK failed" $(ASAN_REPORTS)/* \
	    2>/dev/null); \
	  for f in $$reports; do echo "== sanitizer report $$f"; cat "$$f"; done; \
	  if [ -n "$$reports" ]; then echo "sanitizer reports: $$(echo $$reports | wc -w)"; exit 1; fi; \
	  echo "sanitizer reports: 0"; exit $$status

clean:
	rm -rf build demo_out runs .pytest_cache .benchmarks
