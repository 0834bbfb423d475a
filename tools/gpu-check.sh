#!/usr/bin/env bash
# GPU check (run on a CUDA machine, from the repo root): build the extension with CUDA kernels for this GPU, run
# the CUDA tests, then the CUDA benchmarks beside the references and, when a source tree is given, nvdiffrast.
#   OUT=results NVDIFFRAST_SRC=path/to/nvdiffrast bash tools/gpu-check.sh
# Writes $OUT/{build.log,tests.log,bench.json,bench.txt}. Uses the python3 that holds a CUDA build of torch.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
ARCH=${OCCRECON_CUDA_ARCHS:-$(python3 -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}')")}
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
if [ -n "$NVDIFFRAST_SRC" ]; then
  ( TORCH_CUDA_ARCH_LIST="${ARCH:0:1}.${ARCH:1}" MAX_JOBS=8 timeout 330 python3 -m pip install -q --no-build-isolation --no-deps \
      "$NVDIFFRAST_SRC" >"$OUT/nvdiffrast_build.log" 2>&1; echo "rc=$?" >>"$OUT/nvdiffrast_build.log" ) &
fi
t0=$(date +%s)
OCCRECON_CUDA=ON OCCRECON_CUDA_ARCHS=$ARCH CMAKE_BUILD_PARALLEL_LEVEL=8 python3 -m pip install --no-build-isolation \
  --no-deps -e . >"$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
echo "occrecon build: $(( $(date +%s) - t0 )) s"
python3 -c "import occrecon; print(occrecon.build_info())"
wait  # nvdiffrast (the peer) is built by now, for the drop-in comparison test
[ -f "$OUT/nvdiffrast_build.log" ] && tail -3 "$OUT/nvdiffrast_build.log"
TESTS=${TESTS:-tests/test_cuda.py tests/test_rasterize.py tests/test_antialias.py tests/test_neighbour_min.py \
tests/test_sh_shade.py tests/test_face_renderer.py}
for f in $TESTS; do  # one process per file: a crash loses one file only
  echo "== $f" | tee -a "$OUT/tests.log"
  timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -q -p no:cacheprovider --tb=short -rfE "$f" 2>&1 \
    | tee -a "$OUT/tests.log" | grep -E "passed|failed|FAILED|ERROR|Fatal|Segmentation|^E " | head -30
done
timeout "${BENCH_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider benchmarks/bench_cuda.py \
  --benchmark-max-time=0.5 --benchmark-columns=median,iqr,rounds --benchmark-sort=name \
  --benchmark-json="$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" | grep -v "^-\|^$" | cut -c1-150
