"""``occrecon evaluate-fit``: the fitting engine on real photos of held-out people, clean and with pasted occluders.

Protocol (the acceptance measurement of the fitting engine; docs/fitting.md):

1. Faces: the held-out identities of ``shared/assets/faces/train`` (:func:`occrecon.data.faces.identity_split`,
   20 %, seed 0), minus the faces flagged ``possibly_occluded`` (real masks: their true visible skin is unknown).
2. Per face, as a user would: the project's detector on the photo (the folder's 256² crop), then the one
   photo → aligned crop path (:func:`occrecon.data.prepare.prepare_face`). The clean detection is the landmark
   reference. Occluders are pasted onto the photo by the project's occlusion machinery
   (:func:`occrecon.data.synth.occlude`, permissively licensed cut-outs and procedural occluders, every face
   occluded), which gives the exact visible-face mask: the landmark face region (``real_face_region``) minus
   occluder alpha ≥ 0.5 (on the clean photo, the region itself). The truth is known only on the region and on
   the occluders (``labelled_region``): Φ's forehead above the raised brows or its rim beyond the jaw contour may
   be skin, hair or background, so the mask metrics leave those pixels out (the "strict" rows count them as not
   face, for comparison). The occluded photo is detected and aligned again on its own.
3. Methods on each crop: the mean face (θ = 0), the bundled encoder (its render, its UNet's mask, and eq. 9's
   threshold on its render), and the fit (``fit_image`` with the detected landmarks; optionally initialised by the
   encoder).
4. Metrics: landmark error = mean over the model's mapped landmarks of the distance to the clean detection, in
   photo pixels, divided by the inter-ocular distance (outer eye corners 36–45 of the clean detection, the
   300-W convention; the eye-centre normalisation is reported beside it); visible-skin RMSE (0–255) between the
   render and the clean photo over the true visible face inside Φ; mask ACC / PPV / TPR / F1 inside Φ where the
   truth is known (positive = visible face) and the kept share ΣM / ΣΦ; the fitted light (27 SH coefficients with the ambient)
   and mean albedo of the occluded fit against the clean fit's.

Medians with bootstrap standard errors, and paired differences (mean ± standard error over faces).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .metrics import paired_difference, reconstruction_errors, segmentation_metrics

__all__ = ["EvalCase", "prepare_cases", "evaluate_fit", "landmark_error", "median_se",
           "format_fit_report", "figure_images", "save_figure", "result_json", "FIGURE_ROWS"]

#: dlib thresholds tried after the default 0 when no face is found (heavily occluded photos need them).
DETECTOR_FALLBACK = (-0.5, -1.0)

#: Outer eye corners (iBUG 36 and 45): the inter-ocular distance.
OUTER_EYE_CORNERS = (36, 45)


@dataclass
class EvalCase:
    """One aligned photo of the evaluation: the clean or the occluded version of a face."""

    id: str
    version: str  # "clean" or "occluded"
    crop: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (68, 2) float32, crop pixels (the detection on this version)
    transform: np.ndarray  # (2, 3) photo -> crop
    reference: np.ndarray  # (68, 2) float64: the clean detection in photo pixels
    gt_visible: np.ndarray  # (S, S) float32 {0, 1}: true visible face, in this crop's frame
    gt_known: np.ndarray  # (S, S) float32 {0, 1}: where the truth is known (face region and occluders)
    clean_crop: np.ndarray  # (S, S, 3) float32 in [0, 1]: the clean photo in this crop's frame
    occluders: list = field(default_factory=list)
    covered: float = 0.0  # share of the face region covered by occluders


def median_se(values, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, int]:
    """``(median, bootstrap standard error of the median, count)`` of the finite values (NaN, NaN, 0 if none)."""
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float("nan"), float("nan"), 0
    rng = np.random.default_rng(seed)
    boot = np.median(a[rng.integers(0, a.size, (n_boot, a.size))], axis=1)
    return float(np.median(a)), float(boot.std(ddof=1)) if a.size > 1 else float("nan"), int(a.size)


def landmark_error(model_lm_crop: np.ndarray, transform: np.ndarray, reference: np.ndarray,
                   mapped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face ``(error / outer-corner IOD, error / eye-centre IOD)``.

    Args:
        model_lm_crop: ``(N, 68, 2)`` model landmarks in crop pixels.
        transform: ``(N, 2, 3)`` photo → crop affines; reference: ``(N, 68, 2)`` photo-pixel references.
        mapped: ``(68,)`` bool, the landmarks the model maps.
    """
    from ..data.align import invert_affine, transform_points

    photo = transform_points(model_lm_crop.astype(np.float64), invert_affine(transform))
    d = np.linalg.norm(photo - reference, axis=-1)[:, mapped].mean(1)
    iod = np.linalg.norm(reference[:, OUTER_EYE_CORNERS[0]] - reference[:, OUTER_EYE_CORNERS[1]], axis=-1)
    centres = np.linalg.norm(reference[:, 36:42].mean(1) - reference[:, 42:48].mean(1), axis=-1)
    return d / iod, d / centres


def prepare_cases(records, size: int, *, seed: int = 0, max_occluders: int = 1, detector=None, library=None,
                  sources=None, log=print, progress: bool = False) -> tuple[list[tuple[EvalCase, EvalCase | None]], list[tuple[str, str]]]:
    """The clean and occluded cases of ``records`` (see the module docstring).

    Returns:
        ``(pairs, failures)``: ``(clean, occluded or None)`` per face whose clean photo was detected (occluded
        None when the detector found no face on the occluded photo), and ``(id, reason)`` for every face left out.
    """
    from ..data.align import warp_affine
    from ..data.io import read_image
    from ..data.landmarks import DlibDetector
    from ..data.occluders import OccluderLibrary
    from ..data.prepare import prepare_face
    from ..data.synth import SynthConfig, image_sources, labelled_region, occlude, real_face_region

    detector = detector or DlibDetector(fallback_thresholds=DETECTOR_FALLBACK)
    library = library or OccluderLibrary(permissive_only=True)
    sources = sources if sources is not None else image_sources(include_dev_faces=False)
    pairs, failures = [], []
    from tqdm import tqdm  # noqa: PLC0415

    for rec in tqdm(records, desc="prepare", unit="face", disable=not progress):
        photo = read_image(rec.path)
        try:
            clean = prepare_face(photo, size, detector=detector)
        except ValueError as e:
            failures.append((rec.id, f"clean photo: {e}"))
            continue
        ref = clean.photo_landmarks.astype(np.float64)
        region = real_face_region(ref, photo.shape[:2])
        rng = np.random.default_rng([seed, int(rec.id) if rec.id.isdigit() else abs(hash(rec.id)) % 2**31])
        cfg = SynthConfig(size=photo.shape[0], occluded_fraction=1.0, max_occluders=max_occluders)
        img8, alpha, gt, occ_records, _ = occlude(rng, photo.astype(np.float32) / 255.0, region, ref, cfg, library,
                                                  sources)
        covered = float((region * (alpha >= 0.5)).sum() / max(region.sum(), 1.0))
        photo_f = photo.astype(np.float32) / 255.0

        def case(version, prep, visible, known, recs=(), cov=0.0):
            def warp(x):
                return (warp_affine(x, prep.transform, size) > 0.5).astype(np.float32)

            return EvalCase(rec.id, version, prep.crop, prep.landmarks, prep.transform, ref, warp(visible),
                            warp(known), warp_affine(photo_f, prep.transform, size), list(recs), cov)

        clean_case = case("clean", clean, region, labelled_region(region))
        try:
            occ = prepare_face(img8, size, detector=detector)
            occ_case = case("occluded", occ, gt, labelled_region(region, alpha), occ_records, covered)
        except ValueError as e:
            failures.append((rec.id, f"occluded photo: {e}"))
            occ_case = None
        pairs.append((clean_case, occ_case))
    if failures:
        log(f"{len(failures)} photo(s) without a detection: " + ", ".join(f"{i} ({r})" for i, r in failures[:8])
            + (" ..." if len(failures) > 8 else ""))
    return pairs, failures


def _stack(cases: list[EvalCase]):
    img = torch.stack([torch.from_numpy(c.crop).permute(2, 0, 1).float() / 255.0 for c in cases])
    lm = torch.stack([torch.from_numpy(c.landmarks) for c in cases]).float()
    gt = torch.stack([torch.from_numpy(c.gt_visible)[None] for c in cases])
    known = torch.stack([torch.from_numpy(c.gt_known)[None] for c in cases])
    ref = torch.stack([torch.from_numpy(c.clean_crop).permute(2, 0, 1) for c in cases])
    return img, lm, gt, known, ref


def _albedo_mean(model, theta: torch.Tensor) -> torch.Tensor:
    parts = model.layout.split(theta)
    _, alb = model(parts["id"], parts["exp"], parts["tex"])
    front = model.front_face.to(alb.device)
    return alb[:, front].mean(1)


#: Faces in the ``--figure`` picture (held-out faces published under an explicit licence, spread over the set).
FIGURE_ROWS = 8

#: Suffix of the metrics that score all of Φ, counting the unlabelled pixels (skin, hair or background outside the
#: landmark face region) as not face.
STRICT = " strict"

#: Row order of the report.
METHOD_ORDER = ("mean face (θ=0)", "encoder", "landmark fit + RANSAC light", "fit", "encoder + fit")

#: Visible vertices per face (an area-weighted sample) on which the light of two fits is compared.
SEEN_VERTICES = 256


def _seen_normals_basis(renderer, theta: torch.Tensor, images: torch.Tensor) -> np.ndarray:
    """``(B, SEEN_VERTICES, 9)`` SH basis of the camera-space normals of an area-weighted random sample of the
    vertices the fit sees (fixed seed)."""
    from ..fit import visible_vertices
    from ..ops.reference import sh_basis

    obs = visible_vertices(renderer, theta, images)
    g = torch.Generator().manual_seed(0)
    logu = torch.rand(obs.area.shape[1], generator=g).clamp_min(1e-30).log()[None]
    keys = torch.where(obs.area > 0, logu / obs.area.clamp_min(1e-30), torch.full_like(obs.area, -math.inf))
    idx = keys.topk(SEEN_VERTICES, -1).indices
    n = torch.gather(obs.normals, 1, idx[..., None].expand(-1, -1, 3))
    return sh_basis(n).numpy()


def _full_gamma(theta: torch.Tensor, layout, ambient: float) -> torch.Tensor:
    from ..fit.light import gamma_to_theta, theta_to_gamma

    return gamma_to_theta(theta_to_gamma(theta[:, layout.slice("gamma")], ambient), 0.0)


def evaluate_fit(pairs, *, model, fit_config, encoder_rec=None, batch_size: int = 16, encoder_init: bool = False,
                 fit: bool = True, log=print) -> dict:
    """Run every method on every case; returns ``{version: {method: {metric: (N,) array}}, "ids": ...}``.

    Args:
        pairs: from :func:`prepare_cases`.
        model: the face model to fit.
        fit_config: an :class:`~occrecon.fit.ImageFitConfig` or preset name.
        encoder_rec: an :class:`~occrecon.api.Reconstructor` with an encoder (the bundled model), or None.
        encoder_init: also run the fit initialised by the encoder ("encoder + fit").
        fit: run the fitting engine (False: the mean face and the encoder only, which needs ``encoder_rec``).
    """
    from ..render.camera import default_camera
    from ..fit import fit_image, fit_preset
    from ..fit.image import robust_mask
    from ..losses.robust import PAPER_XI, pseudo_mask
    from ..render import FaceRenderer

    if not fit and encoder_rec is None:
        raise ValueError("fit=False needs an encoder (encoder_rec): there would be nothing but the mean face to score")
    cfg = fit_preset(fit_config)
    size = pairs[0][0].crop.shape[0]
    renderer = FaceRenderer(model, camera=default_camera(size))
    mapped = (model.landmarks >= 0).numpy()
    out: dict = {"ids": {}, "clean": {}, "occluded": {}}
    for version in ("clean", "occluded"):
        cases = [p[0] if version == "clean" else p[1] for p in pairs]
        keep = [i for i, c in enumerate(cases) if c is not None]
        cases = [cases[i] for i in keep]
        out["ids"][version] = [c.id for c in cases]
        res: dict = {}

        def put(method, key, vals):
            res.setdefault(method, {}).setdefault(key, []).append(np.asarray(vals, np.float64))

        t0 = time.perf_counter()
        for start in range(0, len(cases), batch_size):
            chunk = cases[start:start + batch_size]
            img, lm, gt, known, ref = _stack(chunk)
            tf = np.stack([c.transform for c in chunk])
            refs = np.stack([c.reference for c in chunk])
            methods = {}
            with torch.no_grad():
                zero = renderer(model.layout.zeros(len(chunk)))
            methods["mean face (θ=0)"] = dict(theta=model.layout.zeros(len(chunk)), image=zero.image,
                                              region=zero.region, landmarks=zero.landmarks, mask=None)
            enc_theta = None
            if encoder_rec is not None:
                eo = encoder_rec(img)
                enc_theta = eo.theta
                methods["encoder"] = dict(theta=eo.theta, image=eo.image, region=eo.region, landmarks=eo.landmarks,
                                          mask=eo.mask, eq9=pseudo_mask(img, eo.image, eo.region, PAPER_XI),
                                          eq9_smooth=robust_mask(img, eo.image, eo.region, cfg.xi_for(encoder_rec.model),
                                                                 cfg.mask_window))
            if fit:
                fr = fit_image(renderer, img, lm, config=cfg)
                if version == "clean":  # where the clean fit sees the face: the normals the light is compared on
                    put("fit", "seen_normals_basis", _seen_normals_basis(renderer, fr.theta, img))
                if fr.landmark_fit is not None:
                    with torch.no_grad():
                        first = renderer(fr.initial_theta)
                    methods["landmark fit + RANSAC light"] = dict(theta=fr.initial_theta, image=first.image,
                                                                  region=first.region, landmarks=first.landmarks,
                                                                  mask=None)
                methods["fit"] = dict(theta=fr.theta, image=fr.image, region=fr.region, landmarks=fr.landmarks,
                                      mask=fr.mask, diverged=fr.diverged.float(), converged=fr.converged.float(),
                                      eq9=pseudo_mask(img, fr.image, fr.region, PAPER_XI))
            if fit and encoder_init and enc_theta is not None:
                fe = fit_image(renderer, img, lm, init=enc_theta, config=cfg)
                methods["encoder + fit"] = dict(theta=fe.theta, image=fe.image, region=fe.region,
                                                landmarks=fe.landmarks, mask=fe.mask)
            for name, m in methods.items():
                e_iod, e_centre = landmark_error(m["landmarks"].numpy(), tf, refs, mapped)
                put(name, "lm_iod", e_iod)
                put(name, "lm_centres", e_centre)
                region = m["region"]
                if region is None:
                    continue
                put(name, "rmse", reconstruction_errors(ref, m["image"].clamp(0, 1), gt * region)["rmse"].numpy())
                scored = region * known
                for suffix, weight in (("", scored), (STRICT, region)):
                    for k, v in segmentation_metrics(region, gt, weight).items():
                        if k in ("acc", "f1"):
                            put(name, f"all_visible_{k}{suffix}", v.numpy())
                put(name, "labelled", (scored.sum((1, 2, 3)) / region.sum((1, 2, 3)).clamp_min(1)).numpy())
                masks = {"": m.get("mask"), "eq9 ": m.get("eq9"), "eq9+box ": m.get("eq9_smooth")}
                for prefix, mk in masks.items():
                    if mk is None:
                        continue
                    for suffix, weight in (("", scored), (STRICT, region)):
                        seg = segmentation_metrics(mk.clamp(0, 1), gt, weight)
                        for k in ("acc", "ppv", "tpr", "f1"):
                            put(name, prefix + k + suffix, seg[k].numpy())
                    put(name, prefix + "kept", (mk.sum((1, 2, 3)) / region.sum((1, 2, 3)).clamp_min(1)).numpy())
                if name != "mean face (θ=0)":
                    put(name, "gamma", _full_gamma(m["theta"], model.layout, renderer.ambient).numpy())
                    put(name, "albedo", _albedo_mean(model, m["theta"]).detach().numpy())
                for k in ("diverged", "converged"):
                    if k in m:
                        put(name, k, m[k].numpy())
            log(f"  {version}: {min(start + batch_size, len(cases))}/{len(cases)} faces "
                f"({(time.perf_counter() - t0) / min(start + batch_size, len(cases)):.2f} s/face)")
        order = [m for m in METHOD_ORDER if m in res] + [m for m in res if m not in METHOD_ORDER]
        out[version] = {meth: {k: np.concatenate(v) for k, v in res[meth].items()} for meth in order}
    if "fit" in out["clean"] and "fit" in out["occluded"]:
        out["light"] = _light_closeness(out, "fit")
    return out


def other_idx(n: int) -> np.ndarray:
    """Index of "another face" for each face (face i against face i − 1, cyclically)."""
    return np.roll(np.arange(n), 1)


def _light_closeness(result: dict, method: str) -> dict:
    """The occluded fit's light and mean albedo against the clean fit's, for the faces in both versions."""
    ids_c, ids_o = result["ids"]["clean"], result["ids"]["occluded"]
    common = [i for i in ids_o if i in set(ids_c)]
    ic = [ids_c.index(i) for i in common]
    io = [ids_o.index(i) for i in common]
    gc, go = result["clean"][method]["gamma"][ic], result["occluded"][method]["gamma"][io]
    ac, ao = result["clean"][method]["albedo"][ic], result["occluded"][method]["albedo"][io]
    rel = np.linalg.norm(go - gc, axis=1) / np.linalg.norm(gc, axis=1)
    # the shading these coefficients give the normals the clean fit sees: far better conditioned than the
    # coefficients themselves, whose higher bands are nearly collinear over the normals of one side of a face
    seen = result["clean"][method]["seen_normals_basis"][ic]  # (N, n, 9)

    def shading(g):
        return np.einsum("bnk,bck->bnc", seen, g.reshape(-1, 3, 9))

    shade_c, shade_o, shade_x = shading(gc), shading(go), shading(gc[other_idx(len(ic))])
    norm = np.sqrt((shade_c ** 2).mean((1, 2)))
    shade_rel = np.sqrt(((shade_o - shade_c) ** 2).mean((1, 2))) / norm
    shade_other = np.sqrt(((shade_x - shade_c) ** 2).mean((1, 2))) / norm
    # the same distance between different people's clean fits, as a scale: face i against face i + 1
    other = other_idx(len(ic))
    rel_other = np.linalg.norm(gc[other] - gc, axis=1) / np.linalg.norm(gc, axis=1)
    dc = 255 * np.abs(ao - ac).mean(1)
    dc_other = 255 * np.abs(ac[other] - ac).mean(1)
    return {"sh_relative": rel, "sh_relative_other_face": rel_other, "albedo_abs_255": dc,
            "albedo_abs_255_other_face": dc_other, "shading_relative": shade_rel,
            "shading_relative_other_face": shade_other}


def format_fit_report(result: dict, markdown: bool = True) -> str:
    """The acceptance tables (landmarks, visible-skin RMSE, masks, light) as Markdown or plain text."""
    lines = []

    def row(cells):
        lines.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(f"{c:>22s}" for c in cells))

    def med(v, digits=3):
        m, se, n = median_se(v)
        return "-" if n == 0 else f"{m:.{digits}f} ± {se:.{digits}f}"

    methods = list(result["clean"])
    n_c, n_o = len(result["ids"]["clean"]), len(result["ids"]["occluded"])
    lines.append(f"Faces: {n_c} clean, {n_o} occluded (median ± bootstrap standard error).")
    lines.append("")
    row(["Landmark error / IOD", "clean", "occluded", "clean (eye centres)", "occluded (eye centres)"])
    if markdown:
        row(["---"] * 5)
    for m in methods:
        row([m, med(result["clean"][m]["lm_iod"], 4), med(result["occluded"][m]["lm_iod"], 4),
             med(result["clean"][m]["lm_centres"], 4), med(result["occluded"][m]["lm_centres"], 4)])
    lines.append("")
    row(["Visible-skin RMSE (0-255)", "clean", "occluded", "occluded / clean (paired, median)", ""])
    if markdown:
        row(["---"] * 5)
    ids_c, ids_o = result["ids"]["clean"], result["ids"]["occluded"]
    ic = [ids_c.index(i) for i in ids_o if i in set(ids_c)]
    for m in methods:
        if "rmse" not in result["clean"][m]:
            continue
        rc, ro = result["clean"][m]["rmse"], result["occluded"][m]["rmse"]
        ratio = ro / rc[ic]
        row([m, med(rc, 2), med(ro, 2), med(ratio, 3), ""])
    lines.append("")
    if "fit" in result["occluded"] and "labelled" in result["occluded"]["fit"]:
        lines.append(f"Masks are scored where the truth is known (the landmark face region and the occluders): "
                     f"{med(result['occluded']['fit']['labelled'])} of the fit's Φ on the occluded photos.")
        lines.append("")
    row(["Mask (occluded photos)", "ACC", "F1", "PPV", "TPR", "kept ΣM/ΣΦ", "clean: kept"])
    if markdown:
        row(["---"] * 7)
    for m in methods:
        d, dc = result["occluded"][m], result["clean"][m]
        if "all_visible_acc" not in d:
            continue
        row([f"{m}: all of Φ is face", med(d["all_visible_acc"]), med(d["all_visible_f1"]), "-", "1", "1", "1"])
        for prefix, label in (("", "its mask"), ("eq9 ", "eq. 9 threshold"), ("eq9+box ", "eq. 9 + box")):
            if prefix + "f1" in d:
                row([f"{m}: {label}", med(d[prefix + "acc"]), med(d[prefix + "f1"]), med(d[prefix + "ppv"]),
                     med(d[prefix + "tpr"]), med(d[prefix + "kept"]), med(dc[prefix + "kept"])])
    lines.append("")
    for suffix, title in (("", "Paired (occluded photos), method − all of Φ is face"),
                          (STRICT, "Strict: all of Φ scored, unlabelled skin outside the face region as not face")):
        row([title, "ACC", "F1", "", "", "", ""])
        if markdown:
            row(["---"] * 7)
        for m in methods:
            d = result["occluded"][m]
            if "all_visible_acc" + suffix not in d:
                continue
            for prefix, label in (("", "its mask"), ("eq9 ", "eq. 9 threshold")):
                if prefix + "f1" + suffix in d:
                    row([f"{m}: {label}",
                         paired_difference(d[prefix + "acc" + suffix], d["all_visible_acc" + suffix]).format(3),
                         paired_difference(d[prefix + "f1" + suffix], d["all_visible_f1" + suffix]).format(3),
                         "", "", "", ""])
        lines.append("")
    if "light" in result:
        lc = {k: np.asarray(v, np.float64) for k, v in result["light"].items()}
        lines.append("Light and albedo of the occluded-photo fit against the clean-photo fit of the same face "
                     "(median ± SE; in brackets the same distance between two different people's clean fits):")
        lines.append(f"- SH coefficients, ‖γ_occ − γ_clean‖ / ‖γ_clean‖: {med(lc['sh_relative'])} "
                     f"({med(lc['sh_relative_other_face'])})")
        lines.append(f"- the shading they give the normals the clean fit sees, relative RMS difference: "
                     f"{med(lc['shading_relative'])} ({med(lc['shading_relative_other_face'])})")
        lines.append(f"- mean albedo, mean |Δ| over RGB (0-255): {med(lc['albedo_abs_255'], 2)} "
                     f"({med(lc['albedo_abs_255_other_face'], 2)})")
        d = result["occluded"]["fit"]
        lines.append(f"- fit flags (occluded): diverged {int(np.nansum(d['diverged']))}, "
                     f"converged {int(np.nansum(d['converged']))} of {len(d['diverged'])}")
    return "\n".join(lines)


def save_figure(pairs, result_images: dict, path: Path, rows: int = 8) -> Path:
    """photo | encoder render | fitted render | fitted mask, clean then occluded, one face per row."""
    from PIL import Image

    blocks = []
    for i in range(min(rows, len(result_images["clean"]))):
        cells = []
        for version in ("clean", "occluded"):
            r = result_images[version][i]
            if r is None:
                continue
            cells.extend([r["photo"], r["encoder"], r["fit"], r["mask"]])
        blocks.append(np.concatenate(cells, 1))
    width = max(b.shape[1] for b in blocks)
    blocks = [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0))) for b in blocks]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(blocks, 0)).save(path)
    return path


def figure_images(pairs, *, model, fit_config, encoder_rec, rows: int = 8) -> dict:
    """The panels of :func:`save_figure` for ``rows`` faces spread evenly over ``pairs`` (both versions)."""
    from ..render.camera import default_camera
    from ..fit import fit_image
    from ..render import FaceRenderer

    usable = [p for p in pairs if p[1] is not None]
    chosen = [usable[int(i)] for i in np.linspace(0, len(usable) - 1, min(rows, len(usable)))]  # spread out
    out = {"clean": [], "occluded": []}
    size = chosen[0][0].crop.shape[0]
    renderer = FaceRenderer(model, camera=default_camera(size))
    for version in ("clean", "occluded"):
        cases = [p[0] if version == "clean" else p[1] for p in chosen]
        img, lm, _, _, _ = _stack(cases)
        eo = encoder_rec(img) if encoder_rec is not None else None
        fr = fit_image(renderer, img, lm, config=fit_config)
        for i in range(len(cases)):
            def over(render, region):
                return render.clamp(0, 1) * region + img[i] * (1 - region)

            occ = (fr.region[i] - fr.mask[i]).clamp(0, 1)
            seg = img[i] * (1 - 0.6 * occ) + torch.tensor([1.0, 0.1, 0.1]).view(3, 1, 1) * 0.6 * occ
            panels = {"photo": img[i], "fit": over(fr.image[i], fr.region[i]), "mask": seg,
                      "encoder": over(eo.image[i], eo.region[i]) if eo is not None else torch.zeros_like(img[i])}
            out[version].append({k: (v.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
                                 for k, v in panels.items()})
    return out


def result_json(result: dict) -> dict:
    """JSON-ready copy (NaN → None; the per-face normal samples, only needed for the report, left out)."""
    def clean(v):
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and math.isnan(v) else v

    def conv(x):
        if isinstance(x, np.ndarray):
            return clean(x.tolist())
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items() if k != "seen_normals_basis"}
        return x

    return conv(result)


