"""Demos: occlusion-robust reconstruction of real faces with the bundled checkpoint (the main job), and the
neighbourhood-min loss on one photo.

Reconstruction (:func:`run_reconstruction_demo`): the development photos and the astronaut are aligned, each is
reconstructed as it is and with random occluders pasted on (permissively licensed cut-outs and procedural ones,
exact ground-truth mask), and the UNet's mask is scored against that ground truth inside the rendered region.

Neighbourhood-min (:func:`run_neighbour_demo`): the "render" is the same photo shifted by a few pixels and partly covered by an occluder (sunglasses). A plain
per-pixel distance (k = 1) punishes the whole misaligned face; the neighbourhood-min distance (k = 5) forgives
the shift and leaves only the occluder, which is what lets the segmentation network single out occlusions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import assets
from .checkpoint import BUNDLED_CHECKPOINT
from .data.io import read_five_points, read_image
from .data.align import TEMPLATE_224
from .data.prepare import prepare_face
from .ops import neighbour_loss, neighbour_min

__all__ = ["run_neighbour_demo", "run_reconstruction_demo", "BUNDLED_CHECKPOINT"]

SIZE = 224
SHIFT = (2, -3)  # (dy, dx) of the misaligned "render", pixels
OCCLUDER = "sunglasses_noto.png"  # Apache-2.0 (Noto Emoji), see the occluders' README
#: The compact checkpoint shipped with the package (trained by configs/cpu_acceptance.yaml on permissively licensed
#: occluders only; face model: ICT-FaceKit narrow face, MIT). See occrecon/checkpoints/README.md.


def _paste_occluder(render: np.ndarray, occluder: Image.Image, eyes_y: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite the occluder over the eye band; returns the image and the occluder's alpha (H, W)."""
    h, w, _ = render.shape
    ow = int(0.8 * w)
    oh = max(1, round(occluder.height * ow / occluder.width))
    occ = np.asarray(occluder.convert("RGBA").resize((ow, oh), Image.BILINEAR), dtype=np.float32) / 255.0
    y0, x0 = max(0, eyes_y - oh // 2), (w - ow) // 2
    y1 = min(h, y0 + oh)
    alpha = np.zeros((h, w), dtype=np.float32)
    alpha[y0:y1, x0:x0 + ow] = occ[: y1 - y0, :, 3]
    rgb = np.zeros_like(render)
    rgb[y0:y1, x0:x0 + ow] = occ[: y1 - y0, :, :3]
    return render * (1 - alpha[..., None]) + rgb * alpha[..., None], alpha


def _heat(values: np.ndarray, vmax: float) -> np.ndarray:
    """Map (H, W) values in [0, vmax] to an RGB heat map (black - red - yellow - white)."""
    v = np.clip(values / max(vmax, 1e-12), 0.0, 1.0)
    return np.stack([np.clip(3 * v, 0, 1), np.clip(3 * v - 1, 0, 1), np.clip(3 * v - 2, 0, 1)], axis=-1)


def run_neighbour_demo(out_dir: Path, image: Path | None = None, points: Path | None = None) -> dict:
    """Run the demo, write ``neighbour_min.png`` into ``out_dir`` and return the numbers it prints."""
    if image is None:
        faces = assets.dev_faces()
        if not faces:
            raise FileNotFoundError("no development faces in the shared assets")
        image, points = faces[0]
    if points is None:
        raise ValueError("a 5-point detection file is needed with --image (x y per line: eyes, nose, mouth corners)")
    pts = read_five_points(points)
    # the one photo -> aligned face path (ImageReadError naming a missing or corrupt photo)
    face = prepare_face(read_image(image), SIZE, five=pts, redetect=False)
    target = face.crop.astype(np.float32) / 255.0

    dy, dx = SHIFT  # shift with edge replication (no wrap-around seam)
    padded = np.pad(target, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    shifted = padded[abs(dy) - dy:abs(dy) - dy + SIZE, abs(dx) - dx:abs(dx) - dx + SIZE]
    occluder = Image.open(assets.shared_dir() / "assets" / "occluders" / OCCLUDER)
    eyes_y = int(round(TEMPLATE_224[:2, 1].mean() * SIZE / 224))  # where the alignment puts the eyes
    render, alpha = _paste_occluder(shifted, occluder, eyes_y=eyes_y)

    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
    t, r = to_t(target), to_t(render)
    mask = torch.ones(1, 1, SIZE, SIZE)
    occluded = torch.from_numpy(alpha > 0.5)
    results = {"image": str(image)}
    maps = {}
    for k in (1, 3, 5):
        d2, _ = neighbour_min(t, r, k=k)
        d = d2[0].sqrt()
        maps[k] = d.numpy()
        results[f"loss_k{k}"] = float(neighbour_loss(t, r, mask, None, k=k))
        results[f"mean_dist_visible_k{k}"] = float(d[~occluded].mean())
        results[f"mean_dist_occluder_k{k}"] = float(d[occluded].mean()) if occluded.any() else 0.0

    vmax = float(np.percentile(maps[1], 99))
    panel = np.concatenate([target, render, _heat(maps[1], vmax), _heat(maps[5], vmax)], axis=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "neighbour_min.png"
    Image.fromarray((panel * 255).round().astype(np.uint8)).save(out)
    results["png"] = str(out)
    return results


def run_reconstruction_demo(out_dir: Path, checkpoint: Path | None = None, seed: int = 0, rows: int = 8,
                            fit: str | None = "fast", trusted: bool = False) -> dict:
    """Reconstruct the development faces and the astronaut, clean and with random occluders, with the encoder alone
    and with the encoder's prediction refined by the fitting engine; write ``reconstruction.png`` (per face: target |
    encoder render | encoder mask | fitted render | fitted mask, clean then occluded; occluded Φ pixels in red) and
    return per-face numbers: the occlusion fraction of the clean and the occluded crop, the F1 of each mask against
    the exact ground truth of the pasted occluders (inside Φ where the truth is known, positive class = visible face) beside the F1 of "all of
    Φ is face", and the landmark error (mean distance to dlib's points on the clean crop / outer-corner IOD).

    Args:
        out_dir: output folder.
        checkpoint: a training checkpoint (default :data:`BUNDLED_CHECKPOINT`).
        seed: occluder draw.
        rows: faces shown in the PNG (all faces are scored).
        fit: the fit preset (``"fast"``, ``"quality"``), or None for the encoder alone.
        trusted: read a checkpoint that needs a full unpickle (see :func:`occrecon.api.read_checkpoint`).
    """
    from .api import Reconstructor
    from .data.landmarks import DlibDetector
    from .data.occluders import OccluderLibrary
    from .data.synth import SynthConfig, labelled_region, load_real_faces, occlude, real_face_region
    from .eval.metrics import segmentation_metrics
    from .api import overlay

    checkpoint = Path(checkpoint) if checkpoint is not None else BUNDLED_CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint: {checkpoint} not found (train one: occrecon train CONFIG)")
    rec = Reconstructor.from_checkpoint(checkpoint, trusted=trusted)
    size = rec.image_size[0]
    faces = load_real_faces(size=size)
    library = OccluderLibrary(permissive_only=True)
    config = SynthConfig(size=size, occluded_fraction=1.0)
    detector = DlibDetector(fallback_thresholds=(-0.5, -1.0))
    clean, occluded, truth, known, lm_clean, lm_occ = [], [], [], [], [], []
    for i, face in enumerate(faces):
        region = real_face_region(face.landmarks, (size, size))
        rng = np.random.default_rng([seed, i])
        img8, alpha, mask, _, _ = occlude(rng, face.image.astype(np.float32) / 255.0, region, face.landmarks, config,
                                      library, None)
        clean.append(torch.from_numpy(face.image).permute(2, 0, 1).float() / 255.0)
        occluded.append(torch.from_numpy(img8).permute(2, 0, 1).float() / 255.0)
        truth.append(torch.from_numpy(mask)[None])
        known.append(torch.from_numpy(labelled_region(region, alpha))[None])
        lm_clean.append(torch.from_numpy(face.landmarks))
        found = detector(img8) if fit is not None else None  # as a user would: detect on the occluded photo
        lm_occ.append(torch.from_numpy(found.points) if found is not None else torch.full((68, 2), float("nan")))
    clean, occluded, truth, known = torch.stack(clean), torch.stack(occluded), torch.stack(truth), torch.stack(known)
    lm_clean, lm_occ = torch.stack(lm_clean), torch.stack(lm_occ)
    runs = {"encoder": (rec(clean, fit=None), rec(occluded, fit=None))}
    if fit is not None:
        runs["fit"] = (rec(clean, lm_clean, fit=fit), rec(occluded, lm_occ, fit=fit))
    iod = (lm_clean[:, 36] - lm_clean[:, 45]).norm(dim=-1)
    stats = {}
    for name, (o_clean, o_occ) in runs.items():
        scored = o_occ.region * known  # where the truth is known (labelled_region)
        stats[name] = {"f1": segmentation_metrics(o_occ.mask, truth, scored)["f1"],
                       "f1_all": segmentation_metrics(o_occ.region, truth, scored)["f1"],
                       "frac_clean": o_clean.occlusion_fraction, "frac_occ": o_occ.occlusion_fraction,
                       "lm": (o_clean.landmarks - lm_clean).norm(dim=-1).nanmean(1) / iod}
    rows_img = []
    for i in range(min(rows, len(faces))):
        cells = []
        for v, images in ((0, clean), (1, occluded)):
            cells.append(overlay(images, runs["encoder"][v], i))
            if fit is not None:
                cells.append(overlay(images, runs["fit"][v], i)[:, size:])
        rows_img.append(np.concatenate(cells, axis=1))
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "reconstruction.png"
    Image.fromarray(np.concatenate(rows_img, axis=0)).save(png)
    enc = stats["encoder"]
    per_face = []
    for i, f in enumerate(faces):
        row = {"face": f.name, "occlusion_fraction_clean": float(enc["frac_clean"][i]),
               "occlusion_fraction_occluded": float(enc["frac_occ"][i]), "f1_occluded": float(enc["f1"][i]),
               "f1_all_visible": float(enc["f1_all"][i]), "landmark_error": float(enc["lm"][i])}
        if fit is not None:
            fs = stats["fit"]
            row.update(fit_occlusion_fraction_clean=float(fs["frac_clean"][i]),
                       fit_occlusion_fraction_occluded=float(fs["frac_occ"][i]), fit_f1_occluded=float(fs["f1"][i]),
                       fit_f1_all_visible=float(fs["f1_all"][i]), fit_landmark_error=float(fs["lm"][i]))
        per_face.append(row)

    def mean(key):
        return float(np.nanmean([r[key] for r in per_face]))

    out = {"checkpoint": str(checkpoint), "png": str(png), "faces": per_face, "fit": fit,
           "mean_f1_occluded": mean("f1_occluded"), "mean_fraction_clean": mean("occlusion_fraction_clean"),
           "mean_fraction_occluded": mean("occlusion_fraction_occluded"), "mean_landmark_error": mean("landmark_error"),
           "mean_f1_all_visible": mean("f1_all_visible")}
    if fit is not None:
        out.update(fit_mean_f1_occluded=mean("fit_f1_occluded"), fit_mean_f1_all_visible=mean("fit_f1_all_visible"),
                   fit_mean_fraction_clean=mean("fit_occlusion_fraction_clean"),
                   fit_mean_fraction_occluded=mean("fit_occlusion_fraction_occluded"),
                   fit_mean_landmark_error=mean("fit_landmark_error"))
    return out
