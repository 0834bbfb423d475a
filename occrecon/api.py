"""High-level inference: ``Reconstructor`` turns aligned face crops into θ, a rendered face, Φ and a face mask.

```python
from occrecon.api import Reconstructor
rec = Reconstructor.from_checkpoint("runs/em/last.pt")        # nets rebuilt from the checkpoint's "nets" entry
out = rec(images)                      # images (B, 3, 224, 224) float RGB in [0, 1], aligned crops
out.theta, out.image, out.region, out.mask, out.landmarks
out.occlusion_fraction                 # (B,) share of Φ the mask rejects
rec.is_occluded(images)                # (B,) bool
out = rec(images, landmarks, fit="quality")   # encoder prediction refined per image by the fitting engine
fitter = Reconstructor.for_model("ict_narrowface.npz", fit="fast")   # no network: fitting only
out = fitter(images, landmarks)        # landmarks (B, 68, 2) in crop pixels (occrecon.data.prepare)
```

The checkpoint is the ``torch.save`` dict of the training workstream (``"format": "occrecon-checkpoint-v1"``, see
``from_checkpoint``). It is read with ``torch.load(weights_only=True)`` (tensors, containers, numbers and numpy
RNG states only), so a checkpoint cannot run code when it is opened; ``trusted=True`` allows a full unpickle.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .device import check_device
from .checkpoint import (FORMAT, UntrustedCheckpointError, atomic_save, build_nets, build_renderer, load_spec_model,
                         read_checkpoint, spec_layout)
from .fit import FitResult, ImageFitConfig, fit_image, fit_preset, robust_mask
from .fit.image import check_images
from .morphable import ParamLayout, resolve_model
from .nets.eval_view import eval_view
from .nets.unet import face_mask
from .render import FaceRenderer
from .render.camera import REFERENCE_FOCAL, REFERENCE_SIZE, default_camera

__all__ = ["Reconstructor", "ReconOutput", "CHECKPOINT_FORMAT", "DEFAULT_OCCLUSION_THRESHOLD", "REFERENCE_FOCAL",
           "REFERENCE_SIZE", "read_checkpoint", "default_camera", "export_checkpoint", "check_device",
           "UntrustedCheckpointError", "overlay", "FaceResult", "photo_vertices"]

#: The ``"format"`` value of the checkpoints this module reads (:mod:`occrecon.checkpoint`, the format's home).
CHECKPOINT_FORMAT = FORMAT
#: ``is_occluded`` default: a face counts as occluded when the mask rejects more than 10 % of Φ. Unoccluded
#: faces still lose a few per cent (eyes, mouth, edges: the paper's unoccluded TPR is 0.92-0.99), so 0 would
#: flag nearly every face. A heuristic default; tune it on held-out data.
DEFAULT_OCCLUSION_THRESHOLD = 0.10


class ReconOutput(NamedTuple):
    """What :class:`Reconstructor` returns for a batch of B crops of size H x W (no grad; float32 for the bundled
    nets and models: θ and the mask in :attr:`Reconstructor.dtype`, the render in the model's dtype)."""

    theta: torch.Tensor  #: (B, layout.size) parameters in the model's layout
    image: torch.Tensor  #: (B, 3, H, W) rendered face I_R, RGB in [0, 1] (0 outside Φ)
    region: torch.Tensor  #: (B, 1, H, W) rendered region Φ
    mask: torch.Tensor  #: (B, 1, H, W) face mask M = Φ · sigmoid(UNet(I_T, I_R)) in [0, 1]; Φ without a UNet
    landmarks: torch.Tensor  #: (B, 68, 2) projected model landmarks, pixels (x right, y down); NaN if unmapped
    fit: FitResult | None = None  #: the fitting engine's result when the reconstruction was fitted, else None

    def cpu(self) -> ReconOutput:
        """A copy with every tensor detached and on the CPU (the fit result stays as it is)."""
        return ReconOutput(*(x.detach().cpu() for x in self[:5]), self.fit)

    @property
    def occlusion_fraction(self) -> torch.Tensor:
        """``(B,)`` ``1 − Σ M / Σ Φ``: the share of the rendered region that the mask rejects as occluded, in
        [0, 1]; NaN where Φ is empty (no face rendered)."""
        phi = self.region.sum((1, 2, 3))
        kept = self.mask.sum((1, 2, 3))
        safe = torch.where(phi > 0, phi, torch.ones_like(phi))
        frac = (1.0 - kept / safe).clamp(0.0, 1.0)
        return torch.where(phi > 0, frac, torch.full_like(frac, float("nan")))


@dataclass
class FaceResult:
    """One face of a photo reconstructed by :meth:`Reconstructor.reconstruct`, in the photo's coordinates too.

    Photo-frame maps are ``(H, W)`` / ``(H, W, 3)`` float32 numpy arrays of the photo's size (the crop-space result
    warped back through the crop transform); landmarks are photo pixels (x right, y down, pixel centres at +0.5).
    """

    theta: torch.Tensor  #: (P,) parameters in the model's layout
    crop: np.ndarray  #: (S, S, 3) uint8 aligned crop the nets saw
    crop_transform: np.ndarray  #: (2, 3) float64 affine, photo pixels -> crop pixels
    score: float | None  #: the detector's confidence (None for given points)
    landmarks_detected: np.ndarray | None  #: (68, 2) detected landmarks, photo pixels (None: not detected)
    landmarks_fitted: np.ndarray  #: (68, 2) the model's projected landmarks, photo pixels (NaN where unmapped)
    vertices_camera: np.ndarray  #: (V, 3) posed mesh in camera space (model units; camera at 0 looking down -z)
    vertices_photo: np.ndarray  #: (V, 3) posed mesh in photo space (see :func:`photo_vertices`)
    albedo: np.ndarray  #: (V, 3) per-vertex albedo in [0, 1]
    render: np.ndarray  #: (H, W, 3) rendered face I_R pasted into the photo frame (0 outside Φ)
    region: np.ndarray  #: (H, W) rendered region Φ in the photo frame
    mask: np.ndarray  #: (H, W) face mask M in the photo frame (1 = visible face)
    occlusion_fraction: float  #: share of Φ the mask rejects (NaN when Φ is empty)
    occluded: bool  #: occlusion_fraction > the threshold of the call
    fit: dict | None = None  #: the fit's flags (converged, diverged, landmark_error_px, light_inliers) or None

    def overlay(self, photo: np.ndarray) -> np.ndarray:
        """``uint8 (H, 3W, 3)``: photo | render composited over the photo | photo with occluded Φ pixels in red."""
        return _overlay_row(photo.astype(np.float32) / 255.0, self.render, self.region, self.mask)


def _overlay_row(target: np.ndarray, render: np.ndarray, region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``uint8 (H, 3W, 3)`` from ``(H, W, 3)`` target and render in [0, 1] and ``(H, W)`` Φ and M: target | render
    composited over it | target with the occluded pixels of Φ in red."""
    reg, m = region[..., None], mask[..., None]
    composite = np.clip(render, 0, 1) * reg + target * (1 - reg)
    occ = np.clip(reg - m, 0, 1)
    seg = target * (1 - 0.6 * occ) + np.array([1.0, 0.1, 0.1], np.float32) * 0.6 * occ
    return (np.concatenate([target, composite, seg], 1) * 255 + 0.5).astype(np.uint8)


def photo_vertices(vertices_camera: torch.Tensor, camera, crop_transform: np.ndarray,
                   photo_height: int) -> np.ndarray:
    """Camera-space vertices ``(V, 3)`` → photo space ``(V, 3)`` float64: x = the photo column the vertex projects
    to, y = ``photo_height`` − its row (y up, so the frame is right-handed), z = toward the viewer, in photo pixels
    at the face's mean depth (``(d̄ − d) · f / d̄ · s``, d the camera depth, f the crop focal length, s photo pixels
    per crop pixel). Viewed from +z over the photo placed on z = 0 ([0, W] × [0, H]), the mesh covers the face."""
    from .data.align import invert_affine, transform_points  # noqa: PLC0415

    v = vertices_camera.detach().double()
    pix = camera.project(v).numpy()
    inv = invert_affine(np.asarray(crop_transform, np.float64))
    photo_xy = transform_points(pix, inv)
    s = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))
    d = (-v[:, 2]).numpy()
    d_mean = float(d.mean())
    z = (d_mean - d) * camera.focal / d_mean * s
    return np.stack([photo_xy[:, 0], photo_height - photo_xy[:, 1], z], -1)


class Reconstructor(torch.nn.Module):
    """Encoder → renderer → segmentation UNet, optionally refined per image by the fitting engine; in eval mode and
    without gradients.

    Args:
        model: the ``MorphableModel`` the encoder was trained for (its ``layout`` must match the encoder's output).
        encoder: module ``(B, 3, H, W) [0, 1] -> θ (B, layout.size)`` (``occrecon.nets.Encoder``), or None: a
            fitting-only reconstructor (θ starts from the mean face; every call needs landmarks and a fit).
        unet: module ``(target, render) -> logits (B, 1, H, W)`` (``occrecon.nets.UNet``), or None: the mask is
            then Φ itself (or, after a fit, the fit's robust E-step).
        renderer: a :class:`~occrecon.render.FaceRenderer` for ``model``; default: the standard framing for
            ``image_size``.
        image_size: crop size when no renderer is given (default 224).
        fit: the default fit of every call: None (the encoder alone), a preset name (``"fast"``, ``"quality"``)
            or an :class:`~occrecon.fit.ImageFitConfig`. A fitting-only reconstructor defaults to ``"fast"``.
        fit_mask: the fit's E-step: ``"robust"`` (eq. 8-9's robust likelihood, smoothed) or ``"unet"`` (this
            reconstructor's UNet).

    A call is inference whatever the module's mode: the nets run as in eval mode (running BatchNorm statistics, no
    dropout) on their current weights, and the call changes nothing of the module — not its training flags (each
    call runs a private eval-mode view of the nets that shares their parameters and buffers), not its parameters,
    not its buffers. So ``rec.train()`` followed by a training loop on ``rec.encoder`` / ``rec.unet`` trains them as
    usual, calls in between see the latest weights, and one reconstructor can serve several threads at once.
    """

    def __init__(self, model, encoder: torch.nn.Module | None = None, unet: torch.nn.Module | None = None,
                 renderer: FaceRenderer | None = None, image_size: int = REFERENCE_SIZE,
                 fit: str | ImageFitConfig | None = None, fit_mask: str = "robust"):
        super().__init__()
        if encoder is not None and not isinstance(encoder, torch.nn.Module):
            raise TypeError(f"encoder: expected a torch.nn.Module or None, got {type(encoder).__name__}")
        if unet is not None and not isinstance(unet, torch.nn.Module):
            raise TypeError(f"unet: expected a torch.nn.Module or None, got {type(unet).__name__}")
        if renderer is None:
            renderer = FaceRenderer(model, camera=default_camera(image_size))
        elif not isinstance(renderer, FaceRenderer):
            raise TypeError(f"renderer: expected a FaceRenderer or None, got {type(renderer).__name__}")
        elif renderer.model is not model:
            raise ValueError("renderer: renders a different model than `model`")
        if fit_mask not in ("robust", "unet"):
            raise ValueError(f"fit_mask: expected 'robust' or 'unet', got {fit_mask!r}")
        if fit_mask == "unet" and unet is None:
            raise ValueError("fit_mask: 'unet' needs a unet")
        if fit is None and encoder is None:
            fit = "fast"
        self.fit = None if fit is None else fit_preset(fit)
        self.fit_mask = fit_mask
        self.model = model
        self.encoder = encoder
        self.unet = unet
        self.renderer = renderer
        self.eval()

    @classmethod
    def for_model(cls, model=None, image_size: int = REFERENCE_SIZE, fit: str | ImageFitConfig = "fast",
                  device: str | torch.device = "cpu") -> Reconstructor:
        """A fitting-only reconstructor (no network) for ``model`` (a ``MorphableModel``, a model file for
        :func:`occrecon.morphable.load_model`, or None / ``"default"``: the shipped model with a learned albedo,
        :func:`occrecon.morphable.default_model`), framing ``image_size``² crops."""
        device = check_device(device)
        model = resolve_model(model)
        return cls(model, None, None, FaceRenderer(model, camera=default_camera(image_size)), fit=fit).to(device)

    @property
    def layout(self) -> ParamLayout:
        return self.model.layout

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the crops this reconstructor takes."""
        return self.renderer.camera.image_size

    @property
    def dtype(self) -> torch.dtype:
        """The dtype calls compute in: the nets' (their first floating parameter or buffer), else the model's."""
        for net in (self.encoder, self.unet):
            for t in itertools.chain(net.parameters(), net.buffers()) if net is not None else ():
                if t.is_floating_point():
                    return t.dtype
        return self.model.mean.dtype

    def _check_images(self, images: torch.Tensor) -> None:
        check_images(images, self.image_size)

    _DEFAULT = object()

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor | None = None,
                fit: str | ImageFitConfig | None = _DEFAULT) -> ReconOutput:
        """Reconstruct a batch of aligned crops.

        Args:
            images: ``(B, 3, H, W)`` float RGB in [0, 1], H x W = :attr:`image_size`, on the nets' device. Any floating
                dtype (bfloat16 from an autocast pipeline, float64): the call computes in :attr:`dtype`, the nets'
                own (float32 for the bundled ones), as the renderer's kernels and the nets' weights need.
            landmarks: optional ``(B, 68, 2)`` landmarks in crop pixels (NaN where missing), for the fit.
            fit: this call's fit (a preset name, an ``ImageFitConfig``, or None for the encoder alone); default
                the reconstructor's :attr:`fit`.

        Returns:
            :class:`ReconOutput` (theta, image, region, mask, landmarks, fit), computed as in eval mode (see the
            class) without gradients. With a fit, θ is the fitted one, ``mask`` is the UNet's on the fitted render (with
            ``fit_mask="unet"``) or the fit's robust E-step, and ``fit`` holds the :class:`~occrecon.fit.FitResult`.

        Raises:
            ValueError: bad images; a fitting-only reconstructor called without landmarks or with ``fit=None``.
        """
        self._check_images(images)
        cfg = self.fit if fit is self._DEFAULT else (None if fit is None else fit_preset(fit))
        if self.encoder is None and cfg is None:
            raise ValueError("fit: a Reconstructor without an encoder can only fit; pass fit='fast' or 'quality'")
        if self.encoder is None and landmarks is None:
            raise ValueError("landmarks: a Reconstructor without an encoder needs (B, 68, 2) landmarks to fit")
        encoder, unet = eval_view(self.encoder), eval_view(self.unet)  # this call's own eval-mode nets
        dtype = self.dtype
        images = images.to(dtype)
        result = None
        with torch.no_grad():
            if encoder is not None:
                theta = encoder(images)
                if not isinstance(theta, torch.Tensor) or tuple(theta.shape) != (images.shape[0], self.layout.size):
                    raise RuntimeError(f"encoder: returned {getattr(theta, 'shape', type(theta))}, expected "
                                       f"({images.shape[0]}, {self.layout.size}) for {self.layout!r}")
            else:
                theta = self.layout.zeros(images.shape[0], dtype=images.dtype, device=images.device)
            if cfg is not None:
                result = fit_image(self.renderer, images, landmarks, init=theta, config=cfg,
                                   unet=unet if self.fit_mask == "unet" else None)
                theta = result.theta.to(dtype)
            r = self.renderer(theta.to(self.model.mean.dtype))
            if unet is not None and (cfg is None or self.fit_mask == "unet"):
                mask = face_mask(r.region.to(dtype), unet(images, r.image.to(dtype)))
            elif cfg is not None:
                window = max(1, int(round(cfg.mask_window * images.shape[-1] / 128)) | 1)
                mask = robust_mask(images, r.image.to(dtype), r.region.to(dtype), cfg.xi_for(self.model), window)
            else:
                mask = r.region
        return ReconOutput(theta, r.image, r.region, mask, r.landmarks, result)

    def is_occluded(self, images: torch.Tensor, threshold: float = DEFAULT_OCCLUSION_THRESHOLD,
                    landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` bool: True where more than ``threshold`` of the rendered region Φ is masked out
        (``ReconOutput.occlusion_fraction > threshold``). Faces with an empty Φ are reported as not occluded.

        Args:
            images: as :meth:`forward`.
            threshold: fraction of Φ in [0, 1) (default :data:`DEFAULT_OCCLUSION_THRESHOLD`).
            landmarks: as :meth:`forward` (needed by a fitting-only reconstructor).
        """
        if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold: expected a fraction in [0, 1), got {threshold!r}")
        frac = self(images, landmarks).occlusion_fraction
        return torch.nan_to_num(frac, nan=0.0) > float(threshold)

    def reconstruct(self, photos, *, detector=None, threshold: float = DEFAULT_OCCLUSION_THRESHOLD,
                    fit: str | ImageFitConfig | None = _DEFAULT, batch_size: int = 8):
        """Photos in, faces out: every face the detector finds, aligned, reconstructed and mapped back to the photo.

        Args:
            photos: one photo or a list of photos, each a numpy array / torch tensor (``(H, W, 3)`` or ``(3, H,
                W)``, uint8 or float in [0, 1]), a PIL image or a path, any size (:func:`occrecon.data.prepare.as_photo`).
            detector: the landmark detector (default: dlib's, :mod:`occrecon.data.landmarks`; needs the ``face``
                extra).
            threshold: occlusion fraction above which a face counts as occluded.
            fit: this call's fit (as :meth:`forward`); the default is the reconstructor's.
            batch_size: crops per forward pass (the faces of all photos are batched together).

        Returns:
            a list of :class:`FaceResult` (best detection first; empty when no face is found) for one photo, a
            list of such lists for a list of photos. A detected face whose points cannot define an alignment is
            left out with a warning naming it.
        """
        from .data.prepare import FaceNotFound, as_photo, prepare_faces  # noqa: PLC0415

        single = not isinstance(photos, (list, tuple))
        items = [photos] if single else list(photos)
        images, prepared = [], []
        for i, photo in enumerate(items):
            image = as_photo(photo, "photos" if single else f"photos[{i}]")
            try:
                faces, bad = prepare_faces(image, self.image_size[0], detector=detector)
            except FaceNotFound:
                faces, bad = [], []
            for e in bad:
                warnings.warn(f"photos{'' if single else f'[{i}]'}: a detected face was left out ({e})", stacklevel=2)
            images.append(image)
            prepared.append(faces)
        flat = [(i, f) for i, faces in enumerate(prepared) for f in faces]
        results = self.reconstruct_prepared([images[i] for i, _ in flat], [f for _, f in flat], threshold=threshold,
                                            fit=fit, batch_size=batch_size)
        out: list[list[FaceResult]] = [[] for _ in items]
        for (i, _), r in zip(flat, results):
            out[i].append(r)
        return out[0] if single else out

    def reconstruct_prepared(self, photos: Sequence[np.ndarray], faces: Sequence, *,
                             threshold: float = DEFAULT_OCCLUSION_THRESHOLD, fit: str | ImageFitConfig | None = _DEFAULT,
                             batch_size: int = 8) -> list[FaceResult]:
        """:meth:`reconstruct` on faces already aligned: ``faces[k]`` (an
        :class:`occrecon.data.prepare.PreparedFace` of this reconstructor's crop size) of the uint8 photo
        ``photos[k]``. A fitting reconstructor needs each face's crop landmarks."""
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if len(photos) != len(faces):
            raise ValueError(f"faces: {len(faces)} faces for {len(photos)} photos")
        from .data.align import invert_affine, transform_points, warp_affine  # noqa: PLC0415

        cfg = self.fit if fit is self._DEFAULT else (None if fit is None else fit_preset(fit))
        device = self.renderer.tri.device
        results: list[FaceResult] = []
        for start in range(0, len(faces), batch_size):
            chunk = list(faces[start:start + batch_size])
            crops = torch.stack([torch.from_numpy(f.crop).permute(2, 0, 1).float() / 255.0 for f in chunk])
            lms = torch.stack([torch.from_numpy(f.landmarks) if f.landmarks is not None
                               else torch.full((68, 2), float("nan")) for f in chunk])
            out = self(crops.to(device), lms.to(device) if cfg is not None else None, fit=cfg)
            fr = out.fit
            out = out.cpu()
            parts = self.layout.split(out.theta.to(self.model.mean.dtype))
            with torch.no_grad():
                _, albedo = self.model(parts["id"].to(device), parts["exp"].to(device), parts["tex"].to(device))
                v_cam = self.renderer.camera_vertices(out.theta.to(device)).cpu()  # no second rasterization
            fractions = out.occlusion_fraction
            for j, face in enumerate(chunk):
                photo = photos[start + j]
                h, w = photo.shape[:2]
                inv = invert_affine(face.transform)

                def back(x: torch.Tensor) -> np.ndarray:
                    a = x.permute(1, 2, 0).float().numpy()
                    return warp_affine(a, inv, (h, w), antialias=False)

                frac = float(fractions[j])
                info = None
                if fr is not None:
                    err = None
                    if fr.landmark_fit is not None and not bool(fr.landmark_fit.failed[j]):
                        err = float(fr.landmark_fit.error[j]) / fr.scale
                    info = {"converged": bool(fr.converged[j]), "diverged": bool(fr.diverged[j]),
                            "landmark_error_px": err, "light_inliers": float(fr.light_inliers[j])}
                results.append(FaceResult(
                    theta=out.theta[j], crop=face.crop, crop_transform=np.asarray(face.transform, np.float64),
                    score=face.score,
                    landmarks_detected=None if face.photo_landmarks is None else np.asarray(face.photo_landmarks),
                    landmarks_fitted=transform_points(out.landmarks[j].double().numpy(), inv),
                    vertices_camera=v_cam[j].double().numpy(),
                    vertices_photo=photo_vertices(v_cam[j], self.renderer.camera, face.transform, h),
                    albedo=albedo[j].detach().cpu().clamp(0, 1).double().numpy(),
                    render=back(out.image[j].clamp(0, 1)), region=back(out.region[j])[..., 0],
                    mask=back(out.mask[j])[..., 0], occlusion_fraction=frac,
                    occluded=bool(np.nan_to_num(frac) > threshold), fit=info))
        return results

    @classmethod
    def from_checkpoint(cls, path: str | Path, model_path: str | Path | None = None, device: str | torch.device = "cpu",
                        trusted: bool = False, fit: str | ImageFitConfig | None = None) -> Reconstructor:
        """Rebuild the nets of a training checkpoint and load their weights.

        Args:
            path: a ``torch.save`` dict with ``"format": "occrecon-checkpoint-v1"``, ``"stage"``, ``"encoder"``
                (state_dict), ``"unet"`` (state_dict or None) and ``"nets"`` = ``{"model_path", "encoder_arch",
                "unet": "paper" | "compact" | None, "image_size", "layout": [[name, size], ...],
                "encoder_scales"}`` (optional ``"renderer"``: keyword arguments of ``FaceRenderer`` plus
                ``"focal"``; without it, ``config.model.use_antialias`` of the training config is honoured).
            model_path: face model file overriding the stored ``model_path``. A stored ``shared:rel/path`` is
                inside the shared asset folder; another relative path is tried against the working directory, the
                checkpoint's folder and the shared asset folder.
            device: where the nets live.
            trusted: unpickle arbitrary objects (only for checkpoints from a trusted source: it can run code).
            fit: the default fit of every call (see the class), None for the encoder alone.

        Raises:
            FileNotFoundError: no checkpoint, or no face model, at the path (named).
            UntrustedCheckpointError: a checkpoint only ``trusted=True`` reads (see :func:`read_checkpoint`).
            ValueError: a file that is not a usable checkpoint (see :func:`read_checkpoint`), wrong format, missing
                keys, a layout that does not match the face model, weights that do not fit the rebuilt nets (the
                message names the file and the entry), a ``device`` this machine does not have.
        """
        device = check_device(device)
        rec = cls._from_checkpoint_dict(read_checkpoint(path, trusted=trusted), Path(path), model_path, device)
        rec.fit = None if fit is None else fit_preset(fit)
        return rec

    @classmethod
    def _from_checkpoint_dict(cls, ckpt: Mapping, path: Path, model_path: str | Path | None,
                              device: str | torch.device) -> Reconstructor:
        """:meth:`from_checkpoint` on a dict already read (``path``: where it lives, for messages and paths)."""
        nets = ckpt["nets"]
        model, src = load_spec_model(nets, Path(path), model_path)
        stored = spec_layout(nets)
        if stored != model.layout:
            raise ValueError(f"{path}: nets.layout {stored!r} does not match the face model {src} "
                             f"({model.layout!r}); pass the model it was trained with as model_path")
        encoder, unet = build_nets(nets, model.layout, units=model.units)
        _load_state(encoder, ckpt["encoder"], "encoder", path)
        if unet is None:
            if ckpt["unet"] is not None:
                raise ValueError(f"{path}: 'unet' weights are stored but nets.unet is None")
        else:
            if ckpt["unet"] is None:
                raise ValueError(f"{path}: nets.unet is {nets['unet']!r} but the 'unet' state_dict is None")
            _load_state(unet, ckpt["unet"], "unet", path)
        config = ckpt.get("config")
        model_cfg = config.get("model") if isinstance(config, Mapping) else None
        antialias = None
        if isinstance(model_cfg, Mapping) and isinstance(model_cfg.get("use_antialias"), bool):
            antialias = model_cfg["use_antialias"]  # the training config's renderer switch, for older specs
        rec = cls(model, encoder, unet, build_renderer(nets, model, use_antialias=antialias))
        return rec.to(device)


def export_checkpoint(src: str | Path, dst: str | Path, trusted: bool = False) -> Path:
    """Write an inference-only copy of a training checkpoint: the nets, their weights, the stage, iteration, training
    config and metrics; no optimiser, scheduler or RNG state (a fraction of the size; it cannot resume training).

    The copy is checked by rebuilding a :class:`Reconstructor` from it before it is written (atomically) to ``dst``.
    Returns ``dst``.
    """
    ckpt = read_checkpoint(src, trusted=trusted)
    slim = {k: ckpt[k] for k in ("format", "stage", "nets", "encoder", "unet")}
    slim.update(iteration=ckpt.get("iteration"), config=ckpt.get("config"), metrics=ckpt.get("metrics", {}),
                optimizers={}, schedulers={}, rng={}, exported_from=str(Path(src).name))
    Reconstructor._from_checkpoint_dict(slim, Path(src), None, "cpu")  # raises before anything is written
    return atomic_save(slim, dst)


def _load_state(module: torch.nn.Module, state: Any, name: str, path) -> None:
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: '{name}' must be a state_dict, got {type(state).__name__}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: '{name}' weights do not fit the rebuilt network: {exc}") from None


def overlay(target: torch.Tensor, out, index: int) -> np.ndarray:
    """``uint8 (H, 3W, 3)``: target | render composited over the target | target with occluded Φ pixels in red."""
    def hwc(x: torch.Tensor) -> np.ndarray:
        return x.detach().float().permute(1, 2, 0).numpy()

    return _overlay_row(hwc(target[index]), hwc(out.image[index]), hwc(out.region[index])[..., 0],
                        hwc(out.mask[index])[..., 0])
