# occrecon developer entry points. On a fresh machine `make demo` or `make test` does all set-up:
# a local virtual environment (.venv) with the pinned CPU toolchain, then the extension build.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NVCC   ?= nvcc
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90

.PHONY: demo test install bench bench-smoke train-smoke cuda-check cuda-build-check clean

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

clean:
	rm -rf build demo_out runs .pytest_cache .benchmarks
