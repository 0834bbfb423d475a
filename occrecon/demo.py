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


#: The demo's methods, in table order, and its per-face metrics (see :func:`run_reconstruction_demo`).
DEMO_METHODS = ("mean face (θ=0)", "encoder", "encoder + fit")
DEMO_METRICS = ("lm", "rmse", "kept", "acc", "f1", "all_acc", "all_f1", "eq9_acc", "eq9_f1", "frac_clean", "frac_occ")


def run_reconstruction_demo(out_dir: Path, checkpoint: Path | None = None, seed: int = 0, rows: int = 8,
                            fit: str | None = "fast", trusted: bool = False) -> dict:
    """Reconstruct the development faces and the astronaut (real photos no training saw), clean and with random
    occluders pasted on (exact ground truth), with the mean face (θ = 0: the trivial baseline), the encoder + UNet
    alone, and the encoder's prediction refined by the fitting engine; score each as the acceptance of the shipped
    model does, write ``reconstruction.png`` (the medians on top; per face: target | render | mask of each method,
    clean then occluded, occluded Φ pixels in red, its F1 scores beside) and ``reconstruction.json``.

    Per face and method (``DEMO_METRICS``): ``lm`` the landmark error on the clean photo (mean distance to dlib's
    points over the mapped landmarks / outer-corner IOD); ``rmse`` the visible-skin RMSE (0-255) on the clean photo
    (Φ ∩ the landmark face region); ``kept`` Σ M / Σ Φ on the clean photo; ``acc``, ``f1`` of the mask on the
    occluded photo against the exact ground truth (inside Φ where the truth is known,
    :func:`occrecon.data.synth.labelled_region`; positive class = visible face), beside ``all_*`` ("everything in
    Φ is face") and ``eq9_*`` (the eq. 9 pseudo-mask of the method's render, ξ = 0.17); ``frac_clean`` /
    ``frac_occ`` the occluded share 1 − Σ M / Σ Φ of the clean / occluded photo.

    Args:
        out_dir: output folder.
        checkpoint: a training checkpoint (default :data:`BUNDLED_CHECKPOINT`).
        seed: occluder draw.
        rows: faces shown in the PNG (all faces are scored).
        fit: the fit preset (``"fast"``, ``"quality"``), or None for the encoder alone.
        trusted: read a checkpoint that needs a full unpickle (see :func:`occrecon.api.read_checkpoint`).

    Returns:
        ``{"checkpoint", "png", "json", "fit", "methods", "faces": [{"face", method: {metric: value}}],
        "median": {method: {metric: value}}, "paired": {method: {"f1_vs_all", "acc_vs_all", "f1_vs_eq9"}:
        (mean, standard error)}}``.
    """
    import json

    from .api import ReconOutput, Reconstructor, overlay
    from .data.landmarks import DlibDetector
    from .data.occluders import OccluderLibrary
    from .data.synth import SynthConfig, labelled_region, load_real_faces, occlude, real_face_region
    from .eval.metrics import paired_difference, reconstruction_errors, segmentation_metrics
    from .losses.robust import PAPER_XI, pseudo_mask

    checkpoint = Path(checkpoint) if checkpoint is not None else BUNDLED_CHECKPOINT
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint: {checkpoint} not found (train one: occrecon train CONFIG)")
    rec = Reconstructor.from_checkpoint(checkpoint, trusted=trusted)
    size = rec.image_size[0]
    faces = load_real_faces(size=size)
    library = OccluderLibrary(permissive_only=True)
    config = SynthConfig(size=size, occluded_fraction=1.0)
    detector = DlibDetector(fallback_thresholds=(-0.5, -1.0))
    clean, occluded, truth, known, face_region, lm_clean, lm_occ = [], [], [], [], [], [], []
    for i, face in enumerate(faces):
        region = real_face_region(face.landmarks, (size, size))
        rng = np.random.default_rng([seed, i])
        img8, alpha, mask, _, _ = occlude(rng, face.image.astype(np.float32) / 255.0, region, face.landmarks, config,
                                      library, None)
        clean.append(torch.from_numpy(face.image).permute(2, 0, 1).float() / 255.0)
        occluded.append(torch.from_numpy(img8).permute(2, 0, 1).float() / 255.0)
        truth.append(torch.from_numpy(mask)[None])
        known.append(torch.from_numpy(labelled_region(region, alpha))[None])
        face_region.append(torch.from_numpy(region)[None])
        lm_clean.append(torch.from_numpy(face.landmarks))
        found = detector(img8) if fit is not None else None  # as a user would: detect on the occluded photo
        lm_occ.append(torch.from_numpy(found.points) if found is not None else torch.full((68, 2), float("nan")))
    clean, occluded, truth, known = torch.stack(clean), torch.stack(occluded), torch.stack(truth), torch.stack(known)
    face_region, lm_clean, lm_occ = torch.stack(face_region).float(), torch.stack(lm_clean), torch.stack(lm_occ)
    with torch.no_grad():
        theta0 = rec.layout.zeros(len(faces))
        r0 = rec.renderer(theta0)
    zero = ReconOutput(theta0, r0.image, r0.region, r0.region, r0.landmarks)  # its mask: all of Φ
    runs = {"mean face (θ=0)": (zero, zero), "encoder": (rec(clean, fit=None), rec(occluded, fit=None))}
    if fit is not None:
        runs["encoder + fit"] = (rec(clean, lm_clean, fit=fit), rec(occluded, lm_occ, fit=fit))
    iod = (lm_clean[:, 36] - lm_clean[:, 45]).norm(dim=-1)
    mapped = rec.model.landmarks >= 0
    stats: dict[str, dict[str, np.ndarray]] = {}
    for name, (o_clean, o_occ) in runs.items():
        m_clean, m_occ = o_clean.mask, o_occ.mask
        scored = o_occ.region * known  # where the truth is known (labelled_region)
        seg = segmentation_metrics(m_occ.clamp(0, 1), truth, scored)
        every = segmentation_metrics(o_occ.region, truth, scored)
        eq9 = segmentation_metrics(pseudo_mask(occluded, o_occ.image, o_occ.region, PAPER_XI), truth, scored)
        phi_c, phi_o = o_clean.region.sum((1, 2, 3)).clamp_min(1), o_occ.region.sum((1, 2, 3)).clamp_min(1)
        kept = m_clean.clamp(0, 1).sum((1, 2, 3)) / phi_c
        lm = (o_clean.landmarks - lm_clean).norm(dim=-1)[:, mapped].nanmean(1) / iod
        rmse = reconstruction_errors(clean, o_clean.image.clamp(0, 1), face_region * o_clean.region)["rmse"]
        vals = {"lm": lm, "rmse": rmse, "kept": kept, "acc": seg["acc"], "f1": seg["f1"], "all_acc": every["acc"],
                "all_f1": every["f1"], "eq9_acc": eq9["acc"], "eq9_f1": eq9["f1"], "frac_clean": 1 - kept,
                "frac_occ": 1 - m_occ.clamp(0, 1).sum((1, 2, 3)) / phi_o}
        stats[name] = {k: v.detach().double().numpy() for k, v in vals.items()}
    methods = list(runs)
    median = {m: {k: float(np.nanmedian(stats[m][k])) for k in DEMO_METRICS} for m in methods}

    def paired(a, b):  # (mean, standard error) of the per-face differences
        d = paired_difference(a, b)
        return d.mean, d.sem

    pairs = {m: {"f1_vs_all": paired(stats[m]["f1"], stats[m]["all_f1"]),
                 "acc_vs_all": paired(stats[m]["acc"], stats[m]["all_acc"]),
                 "f1_vs_eq9": paired(stats[m]["f1"], stats[m]["eq9_f1"])} for m in methods[1:]}
    if fit is not None:
        pairs["encoder + fit"]["rmse_vs_encoder"] = paired(stats["encoder + fit"]["rmse"], stats["encoder"]["rmse"])

    # the picture: the medians on top, then one row per face with its F1 scores beside
    shown = methods[1:]
    rows_img, labels = [], []
    for i in range(min(rows, len(faces))):
        cells = []
        for v, images in ((0, clean), (1, occluded)):
            for j, name in enumerate(shown):
                cell = overlay(images, runs[name][v], i)
                cells.append(cell if j == 0 else cell[:, size:])  # the photo once per version
        rows_img.append(np.concatenate(cells, axis=1))
        labels.append(f"{faces[i].name[:14]}: " + " | ".join(
            f"{name} lm {stats[name]['lm'][i]:.3f} F1 {stats[name]['f1'][i]:.3f} (all-Φ {stats[name]['all_f1'][i]:.3f})"
            for name in shown))
    header = [f"occrecon demo: {checkpoint.name}, {len(faces)} real photos no training saw (medians); columns per "
              "method: render | mask (red = rejected), clean photo then occluded"] + \
        format_demo_table(median, methods).splitlines()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "reconstruction.png"
    Image.fromarray(_annotated(rows_img, labels, header)).save(png)
    per_face = [{"face": f.name, **{m: {k: float(stats[m][k][i]) for k in DEMO_METRICS} for m in methods}}
                for i, f in enumerate(faces)]
    out = {"checkpoint": str(checkpoint), "png": str(png), "json": str(out_dir / "reconstruction.json"), "fit": fit,
           "methods": methods, "faces": per_face, "median": median, "paired": pairs}
    (out_dir / "reconstruction.json").write_text(json.dumps(out, indent=1, allow_nan=True) + "\n")
    return out


def format_demo_table(median: dict, methods) -> str:
    """The demo's medians as a plain-text table, one row per method (``run_reconstruction_demo``'s ``median``)."""
    cols = [("lm/IOD", "lm"), ("RMSE", "rmse"), ("kept", "kept"), ("ACC", "acc"), ("F1", "f1"),
            ("all-Φ ACC", "all_acc"), ("all-Φ F1", "all_f1"), ("eq.9 ACC", "eq9_acc"), ("eq.9 F1", "eq9_f1")]
    lines = [f"{'method':18s}" + "".join(f"{c:>11s}" for c, _ in cols)]
    for m in methods:
        lines.append(f"{m:18s}" + "".join(f"{median[m][k]:11.3f}" if k != "rmse" else f"{median[m][k]:11.2f}"
                                          for _, k in cols))
    return "\n".join(lines)


def _annotated(rows_img: list[np.ndarray], labels: list[str], header: list[str]) -> np.ndarray:
    """Stack the face rows under a text header, each under its label line (PIL's built-in font)."""
    import re

    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    table = re.compile(r"^\S.*\s{2,}\S")  # a line of format_demo_table
    width = rows_img[0].shape[1]
    line_h = 13

    def strip(lines: list[str]) -> np.ndarray:
        im = Image.new("RGB", (width, line_h * len(lines) + 4), (255, 255, 255))
        draw = ImageDraw.Draw(im)
        for k, text in enumerate(lines):
            text = text.replace("θ", "theta").replace("Φ", "Phi")
            cells = re.split(r"\s{2,}", text.strip()) if table.match(text) else [text]
            for c, cell in enumerate(cells):  # table cells at fixed columns (the font is proportional)
                draw.text((4 + (c and 110 + 70 * (c - 1)), 2 + k * line_h), cell, fill=(0, 0, 0), font=font)
        return np.asarray(im)

    parts = [strip(header)]
    for img, label in zip(rows_img, labels):
        parts += [strip([label]), img]
    return np.concatenate(parts, axis=0)
