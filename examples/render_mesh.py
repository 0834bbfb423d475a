"""Render a mesh to a PNG with occrecon's nvdiffrast-compatible rasterizer (CPU or CUDA).

    python examples/render_mesh.py [out.png] [--mesh path/to/model.npz] [--size 512]

The default mesh is the ICT-FaceKit mean face from the shared assets (a UV sphere if they are absent), shaded with
a headlight from interpolated vertex normals.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import occrecon.render as dr
from occrecon import assets
from occrecon.render.meshes import perspective_clip, uv_sphere


def load_mesh(path: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    shared = assets.shared_dir(required=False)
    if path is None and shared is not None:
        path = shared / "assets" / "models" / "ict_face.npz"
    if path is None:
        return uv_sphere(64, 64)
    d = np.load(path)
    return torch.tensor(d["mean"], dtype=torch.float32), torch.tensor(d["tris"].astype(np.int32))


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="demo_out/mesh.png")
    ap.add_argument("--mesh", type=Path, help="an .npz with 'mean' (V, 3) and 'tris' (F, 3)")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)

    v, tri = load_mesh(args.mesh)
    v = (v - v.mean(0)) / (v.max(0).values - v.min(0).values).max() * 2  # centre, fit in [-1, 1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pos = perspective_clip(v, distance=3.0, focal=2.6)[None].to(device)  # [1, V, 4] clip space
    tri = tri.to(device)
    normals = dr.vertex_normals(v, tri.cpu())[None].to(device)

    ctx = dr.RasterizeCudaContext()
    rast, _ = dr.rasterize(ctx, pos, tri, resolution=(args.size, args.size))
    n, _ = dr.interpolate(normals, rast, tri)
    shade = torch.nn.functional.normalize(n, dim=-1)[..., 2:3].abs()  # headlight (camera on +z)
    colour = (0.15 + 0.85 * shade) * torch.tensor([0.85, 0.72, 0.62], device=device)
    image = torch.where(rast[..., 3:] > 0, colour, torch.ones_like(colour))  # white background
    image = image[0].flip(0)  # rasterizer row 0 is the bottom row; PNG row 0 is the top
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.clamp(0, 1) * 255).round().byte().cpu().numpy()).save(out)
    print(f"wrote {out} ({int((rast[..., 3] > 0).sum())} face pixels, {tri.shape[0]} triangles, {device})")
    return out


if __name__ == "__main__":
    main()
