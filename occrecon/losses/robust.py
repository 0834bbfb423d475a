"""Occlusion-robust likelihood and hard pseudo-mask of the unsupervised initialisation (eqs. 8-9).

Model: in face pixels the RGB reconstruction error e = I_T − I_R ∈ R^C (C = 3) is isotropic Gaussian,
``log P_face(p) = −‖e(p)‖² / (2σ²) + N_c`` with ``N_c = −(C/2)·log(2π) − C·log σ`` (eq. 8, the Gaussian's
normaliser). Non-face (occluder/background) pixels are uniform: ``log P_nonface`` is a constant. A pixel is face
when ``log P_face > log P_nonface``, i.e. when ``‖e‖² < ξ`` (eq. 9), and ξ fixes the constant:
``log P_nonface = −ξ / (2σ²) + N_c``.

Two settings of ξ (both in [0, 1]-RGB units, on the squared RGB distance):

- ``"paper"``: ξ = 0.17 (:data:`PAPER_XI`).
- ``"code"``: the authors' outlier threshold of 3 standard deviations, ``‖e‖ < 3σ`` with σ = 0.043, i.e.
  ξ = (3·0.043)² = 0.016641 (:data:`CODE_XI`).

σ (:data:`CODE_SIGMA` = 0.043) scales the likelihood in both; the paper does not state its σ.
"""
from __future__ import annotations

import math

import torch

from . import _args

__all__ = ["pseudo_mask", "robust_likelihood", "resolve_xi", "face_log_normaliser", "background_log_likelihood",
           "PAPER_XI", "CODE_SIGMA", "CODE_OUTLIER_STDS", "CODE_XI", "XI_PRESETS"]

#: Paper, eq. 9: threshold ξ on the squared RGB error ‖I_T − I_R‖² (images in [0, 1]).
PAPER_XI = 0.17
#: Authors' code: standard deviation σ of the face-pixel Gaussian, per channel, [0, 1] RGB.
CODE_SIGMA = 0.043
#: Authors' code: a pixel is an outlier beyond this many σ of RGB distance.
CODE_OUTLIER_STDS = 3.0
#: ξ equivalent of the authors' 3σ rule: (3·0.043)².
CODE_XI = (CODE_OUTLIER_STDS * CODE_SIGMA) ** 2
#: Named thresholds accepted wherever ``xi`` is.
XI_PRESETS = {"paper": PAPER_XI, "code": CODE_XI}


def resolve_xi(xi: float | str) -> float:
    """``"paper"`` -> 0.17, ``"code"`` -> (3·0.043)², a positive number -> itself."""
    if isinstance(xi, str):
        if xi not in XI_PRESETS:
            raise ValueError(f"xi must be a positive number or one of {tuple(XI_PRESETS)}, got {xi!r}")
        return XI_PRESETS[xi]
    if isinstance(xi, bool) or not isinstance(xi, (int, float)) or not xi > 0 or not math.isfinite(xi):
        raise ValueError(f"xi must be a positive number or one of {tuple(XI_PRESETS)}, got {xi!r}")
    return float(xi)


def _sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    return float(sigma)


def face_log_normaliser(sigma: float = CODE_SIGMA, channels: int = 3) -> float:
    """N_c of eq. 8: ``−(C/2)·log(2π) − C·log σ`` (log-density units; 6.68 for σ = 0.043, C = 3)."""
    s = _sigma(sigma)
    return -0.5 * channels * math.log(2.0 * math.pi) - channels * math.log(s)


def background_log_likelihood(sigma: float = CODE_SIGMA, xi: float | str = "paper", channels: int = 3) -> float:
    """log P_nonface, the uniform outlier density implied by ξ: ``−ξ / (2σ²) + N_c``."""
    s = _sigma(sigma)
    return -resolve_xi(xi) / (2.0 * s * s) + face_log_normaliser(s, channels)


def _squared_error(target: torch.Tensor, render: torch.Tensor) -> torch.Tensor:
    _args.pair(target, render)
    return ((target - render) ** 2).sum(dim=1, keepdim=True)


def _region(region: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    if region is None:
        return torch.ones_like(target[:, :1])
    return _args.mask("region", region, target)


def pseudo_mask(target: torch.Tensor, render: torch.Tensor, region: torch.Tensor | None = None,
                xi: float | str = "paper") -> torch.Tensor:
    """M_pre of eq. 9: 1 where ``‖I_T − I_R‖² < ξ`` (inside Φ), else 0. Not differentiable (a label).

    Args:
        target: I_T ``(B, 3, H, W)`` float in [0, 1]; render: I_R, same shape/dtype/device.
        region: Φ ``(B, 1, H, W)`` or ``(B, H, W)``; pixels with Φ <= 0.5 get 0. None: every pixel.
        xi: threshold on the squared RGB error, ``"paper"`` (0.17), ``"code"`` ((3·0.043)²) or a number.

    Returns:
        ``(B, 1, H, W)`` float {0, 1} mask in ``target``'s dtype, detached.
    """
    x = resolve_xi(xi)
    with torch.no_grad():
        e2 = _squared_error(target, render)
        inside = _region(region, target) > 0.5
        return (inside & (e2 < x)).to(target.dtype)


def robust_likelihood(target: torch.Tensor, render: torch.Tensor, region: torch.Tensor | None = None,
                      sigma: float = CODE_SIGMA, xi: float | str = "paper", background: bool = False,
                      reduction: str = "mean") -> torch.Tensor:
    """Occlusion-robust loss of the initialisation: minus the mean log-likelihood of the face pixels.

    ``L = −(1/(H·W)) Σ_p M_pre(p)·log P_face(p)`` with eq. 8's Gaussian (including N_c) and ``M_pre`` from
    :func:`pseudo_mask` (a constant: gradients flow only through ``log P_face`` of the kept pixels). This is the
    authors' "occlusion photometric loss without background". With ``background=True`` the outlier pixels of Φ
    add their constant ``−log P_nonface`` too, giving ``−mean_p Φ(p)·max(log P_face, log P_nonface)``: the full
    robust likelihood; its value changes, its gradient does not.

    Args:
        target: I_T ``(B, 3, H, W)`` float in [0, 1]; render: I_R, same shape/dtype/device.
        region: Φ (pixels outside are neither face nor outlier); None: every pixel.
        sigma: σ of the face Gaussian per channel (default the code's 0.043).
        xi: face threshold, as for :func:`pseudo_mask` (default the paper's 0.17).
        background: add the outlier term (see above).
        reduction: ``"mean"`` over images or ``"none"`` ``(B,)``.

    Returns:
        scalar or ``(B,)`` (nats per pixel), dtype of ``target``.
    """
    s = _sigma(sigma)
    x = resolve_xi(xi)
    e2 = _squared_error(target, render)
    c = target.shape[1]
    log_face = -e2 / (2.0 * s * s) + face_log_normaliser(s, c)
    keep = pseudo_mask(target, render, region, x)
    ll = keep * log_face
    if background:
        outlier = (_region(region, target) > 0.5).to(target.dtype) - keep
        ll = ll + outlier * background_log_likelihood(s, x, c)
    return _args.reduce(-ll.mean(dim=(1, 2, 3)), reduction)
