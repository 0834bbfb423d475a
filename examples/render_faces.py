"""Render a batch of faces from random θ with a morphable model: PNGs and OBJs.

    python examples/render_faces.py [out_dir] [--model path/to/model.npz] [--batch 4]

Default model: ICT-FaceKit from the shared assets.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

import occrecon.render as dr
from occrecon import assets
from occrecon.morphable import load_model, write_obj


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="demo_out/faces")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    path = args.model or assets.shared_dir() / "assets" / "models" / "ict_face.npz"

    model = load_model(path)
    renderer = dr.FaceRenderer(model)  # Deep3D framing: focal 1015 px, 224 x 224
    lay = model.layout
    g = torch.Generator().manual_seed(args.seed)
    theta = torch.zeros(args.batch, lay.size)
    theta[:, lay.slice("id")] = torch.randn(args.batch, lay.slice("id").stop - lay.slice("id").start, generator=g)
    theta[:, lay.slice("angle")] = (torch.rand(args.batch, 3, generator=g) - 0.5) * 0.6  # up to ±17 degrees
    gamma = torch.zeros(args.batch, 27)
    gamma[:, [1, 10, 19]] = 0.2  # light from above
    theta[:, lay.slice("gamma")] = gamma
    with torch.no_grad():
        out = renderer(theta, background=torch.full((args.batch, 3, 224, 224), 0.3))
        verts, albedo = model(*(lay.split(theta)[k] for k in ("id", "exp", "tex")))

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(args.batch):
        png = out_dir / f"face{i}.png"
        Image.fromarray((out.image[i].clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()).save(png)
        obj = out_dir / f"face{i}.obj"
        write_obj(obj, verts[i], model.triangles, albedo[i].clamp(0, 1))
        written += [png, obj]
    print(f"wrote {len(written)} files to {out_dir} ({model.name}, {lay.size} parameters)")
    return written


if __name__ == "__main__":
    main()
