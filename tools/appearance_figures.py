"""The pictures of docs/appearance.md: the shipped model's albedo (mean, first modes at ±2σ) and fits of held-out faces
(published under a licence) with the Laplacian prior and with the learned albedo.

    .venv/bin/python tools/appearance_figures.py            # writes docs/images/albedo_*.jpg
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from occrecon import assets
from occrecon.data.faces import identity_split, read_face_folder
from occrecon.eval.fitting import prepare_cases
from occrecon.fit import fit_image
from occrecon.fit.appearance import albedo_gallery
from occrecon.morphable import default_model, load_model
from occrecon.render import FaceRenderer
from occrecon.render.camera import default_camera

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
ROWS = 6
SIZE = 128


def _tile(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def main() -> None:
    learned = default_model()
    albedo_gallery(learned, OUT / "albedo_modes.jpg", modes=3, size=160)
    laplacian = load_model(assets.shared_dir() / "assets" / "models" / "ict_narrowface.npz")
    records = read_face_folder()
    held = [r for r in identity_split(records)[1] if r.image_rights == "licensed" and "possibly_occluded" not in r.flags]
    chosen = [held[int(i)] for i in np.linspace(0, len(held) - 1, ROWS)]
    pairs, _ = prepare_cases(chosen, SIZE, seed=0)
    rows = []
    for clean, occ in pairs:
        if occ is None:
            continue
        tiles = []
        for case in (clean, occ):
            img = torch.from_numpy(case.crop).permute(2, 0, 1).float()[None] / 255
            lm = torch.from_numpy(case.landmarks)[None].float()
            tiles.append(_tile(img[0]))
            for model in (laplacian, learned):
                r = FaceRenderer(model, camera=default_camera(SIZE))
                res = fit_image(r, img, lm, config="fast")
                tiles.append(_tile(res.image[0] * res.region[0] + img[0] * (1 - res.region[0])))
            tiles.append(_tile(res.mask[0].expand(3, -1, -1)))
        rows.append(np.concatenate(tiles, 1))
    Image.fromarray(np.concatenate(rows, 0)).save(OUT / "albedo_fits.jpg", quality=88)
    ids = ", ".join(p[0].id for p in pairs if p[1] is not None)
    print(f"wrote {OUT / 'albedo_modes.jpg'} and {OUT / 'albedo_fits.jpg'} (held-out faces {ids})")


if __name__ == "__main__":
    main()
