#!/usr/bin/env bash
# The built wheel, installed into a fresh venv outside the source tree with no shared folder:
#   1. render-only: the wheel + its core requirements (torch, numpy) only; occrecon.render rasterizes;
#   2. with the [face] extra: `occrecon reconstruct` on a two-face photo with the bundled checkpoint, every output.
# Usage: tools/wheel-check.sh [PYTHON]   (from the repository root, after `make install`)
set -euo pipefail
ROOT=$(pwd)
PY=${1:-.venv/bin/python}
WORK=$(mktemp -d /tmp/occrecon-wheel.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "-- building the wheel"
"$PY" -m pip wheel --disable-pip-version-check -q --no-build-isolation --no-deps . -w "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/occrecon-*.whl)
unzip -l "$WHEEL" | grep -E "occrecon/(models|checkpoints)/" || { echo "the wheel lacks the shipped model/checkpoint"; exit 1; }
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
echo "-- render-only venv: $(basename "$WHEEL") + torch==$TORCH + numpy"
python3 -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/pip" install --disable-pip-version-check -q "$WHEEL"   # core requirements only: torch (pinned), numpy
cd "$WORK"
unset OCCRECON_SHARED
"$V/python" - <<'PY'
import importlib.util, sys
for name in ("PIL", "scipy", "dlib", "skimage", "yaml", "tqdm"):
    assert importlib.util.find_spec(name) is None, f"{name} was installed by the render-only install"
import torch, occrecon, occrecon.render as dr
assert occrecon.__file__.startswith(sys.prefix), occrecon.__file__
pos = torch.tensor([[[-0.8, -0.8, 0.0, 1.0], [0.8, -0.8, 0.0, 1.0], [0.0, 0.8, 0.0, 1.0]]])
tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
rast, _ = dr.rasterize(None, pos, tri, (16, 16))
assert (rast[..., 3] > 0).sum() > 50
print("render-only install: ok,", occrecon.__version__, "torch", torch.__version__)
PY
echo "-- [face] extra"
"$V/pip" install --disable-pip-version-check -q "$WHEEL[face]"
"$V/python" - "$ROOT" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root = Path(sys.argv[1])
dev = sorted((root.parent / "shared/assets/faces/dev").glob("*.jpg"))[:2]  # input photos only: the package never sees shared
a, b = (np.asarray(Image.open(p).convert("RGB")) for p in dev)
h = min(a.shape[0], b.shape[0])
Image.fromarray(np.concatenate([a[:h], b[:h]], 1)).save("two_faces.png")
PY
"$V/occrecon" --version
"$V/occrecon" reconstruct two_faces.png --out out --quiet
for f in two_faces_face0 two_faces_face1; do
  for ext in _overlay.png _mask.png _render.png .obj .ply .json; do
    [ -s "out/$f$ext" ] || { echo "missing out/$f$ext"; exit 1; }
  done
done
"$V/python" - <<'PY'
import json
m = [json.load(open(f"out/two_faces_face{k}.json")) for k in (0, 1)]
assert all(len(x["landmarks_detected"]) == 68 and len(x["landmarks_fitted"]) == 68 for x in m)
assert {x["faces_in_photo"] for x in m} == {2}
print("reconstruct from the wheel: 2 faces, every output;", [round(x["occlusion_fraction"], 3) for x in m])
PY
if "$V/occrecon" reconstruct missing.jpg --out out2 2> err.txt; then echo "a missing photo exited 0"; exit 1; fi
[ "$(wc -l < err.txt)" -eq 1 ] && ! grep -q Traceback err.txt || { cat err.txt; exit 1; }
echo "wheel check: ok"
