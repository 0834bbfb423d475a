"""Per-image evaluation metrics of "To fit or not to fit" (sections 4.3-4.4) and their summaries.

Segmentation (Tables 2-4): the positive class is **visible face** (mask value 1 = fit it). Everything is counted
inside the rendered region Φ only, with Φ as a per-pixel weight (an antialiased Φ counts edge pixels fractionally):

    TP = Σ GT·M·Φ      FP = Σ (1−GT)·M·Φ      FN = Σ GT·(1−M)·Φ      TN = Σ (1−GT)·(1−M)·Φ
    ACC = (TP+TN) / Σ Φ    PPV = TP / (TP+FP)    TPR = TP / (TP+FN)    F1 = 2TP / (2TP+FP+FN)

``M`` is either binarised (``M > threshold``) or used as is ("soft" metrics, ``threshold=None``).

Undefined ratios (0/0) are **NaN**, never a made-up 0 or 1:
  * ACC when Φ is empty (the face was not rendered at all);
  * PPV when nothing inside Φ is predicted face (TP + FP = 0);
  * TPR when no GT-visible face lies inside Φ (TP + FN = 0, e.g. a fully occluded rendered region);
  * F1 when both of the above hold (2TP + FP + FN = 0).
:func:`summarise` skips NaNs and reports how many it skipped, so such images neither count as perfect nor as
failures. (An image with no occluder has GT = 1 on all of Φ: FP = TN = 0, so PPV = 1 whenever TP > 0.)

Reconstruction (Table 1): RMSE and MAE between target and render on the 0-255 scale, over the given visible-face
pixels and the 3 colour channels (each pixel-channel is one sample). Pass ``visible = GT · Φ`` to measure "inside
visible face regions" as the paper does; an empty region gives NaN.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SEGMENTATION_METRICS", "RECONSTRUCTION_METRICS", "PIXEL_SCALE", "DEFAULT_THRESHOLD",
           "confusion_counts", "segmentation_metrics", "reconstruction_errors", "Summary", "summarise",
           "PairedDifference", "paired_difference", "LOWER_IS_BETTER"]

#: Names of the segmentation metrics, in the paper's column order.
SEGMENTATION_METRICS = ("acc", "ppv", "tpr", "f1")
#: Names of the reconstruction errors.
RECONSTRUCTION_METRICS = ("rmse", "mae")
#: Images in [0, 1] are scaled by this to report errors on the 0-255 scale (Table 1).
PIXEL_SCALE = 255.0
#: Binarisation threshold of the paper: a pixel is predicted face when M > 0.5.
DEFAULT_THRESHOLD = 0.5


def _check_map(x: torch.Tensor, name: str, channels: int, like: torch.Tensor | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if like is not None and (x.shape[0] != like.shape[0] or x.shape[2:] != like.shape[2:]):
        raise ValueError(f"{name}: batch and size {tuple(x.shape)} do not match {tuple(like.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or Inf values")


def _check_range(x: torch.Tensor, name: str) -> None:
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"{name}: values must lie in [0, 1], got [{float(x.min()):.4g}, {float(x.max()):.4g}]")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with NaN where den == 0 (undefined), computed in float64."""
    nan = torch.full_like(num, float("nan"))
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), nan)


def confusion_counts(pred: torch.Tensor, gt: torch.Tensor, region: torch.Tensor,
                     threshold: float | None = DEFAULT_THRESHOLD) -> dict[str, torch.Tensor]:
    """Φ-weighted confusion matrix per image, positive class = visible face.

    Args:
        pred: ``(B, 1, H, W)`` float in [0, 1], the predicted face mask M (1 = face).
        gt: ``(B, 1, H, W)`` float in {0, 1} (values in between are accepted as soft labels), 1 = visible face.
        region: ``(B, 1, H, W)`` float in [0, 1], the rendered region Φ used as pixel weight.
        threshold: binarise M as ``M > threshold`` (in [0, 1)); None keeps M soft.

    Returns:
        ``{"tp", "fp", "fn", "tn"}`` each ``(B,)`` float64, in (weighted) pixels.
    """
    _check_map(pred, "pred", 1)
    _check_map(gt, "gt", 1, like=pred)
    _check_map(region, "region", 1, like=pred)
    for x, name in ((pred, "pred"), (gt, "gt"), (region, "region")):
        _check_range(x, name)
    m = pred.double()
    if threshold is not None:
        if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) < 1.0:
            raise ValueError(f"threshold: expected a number in [0, 1) or None, got {threshold!r}")
        m = (m > float(threshold)).double()
    g, phi = gt.double(), region.double()
    dims = (1, 2, 3)
    return {"tp": (g * m * phi).sum(dims), "fp": ((1 - g) * m * phi).sum(dims),
            "fn": (g * (1 - m) * phi).sum(dims), "tn": ((1 - g) * (1 - m) * phi).sum(dims)}


def segmentation_metrics(pred: torch.Tensor, gt: torch.Tensor, region: torch.Tensor,
                         threshold: float | None = DEFAULT_THRESHOLD) -> dict[str, torch.Tensor]:
    """ACC, PPV, TPR and F1 of a predicted face mask inside the rendered region Φ, per image.

    Args: as :func:`confusion_counts` (``pred`` M, ``gt`` visible-face mask, ``region`` Φ, all ``(B, 1, H, W)``).

    Returns:
        ``{"acc", "ppv", "tpr", "f1"}``, each ``(B,)`` float64 in [0, 1]; NaN where the ratio is 0/0 (see the
        module docstring for when that happens).
    """
    c = confusion_counts(pred, gt, region, threshold)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    return {"acc": _ratio(tp + tn, tp + fp + fn + tn), "ppv": _ratio(tp, tp + fp),
            "tpr": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def reconstruction_errors(target: torch.Tensor, render: torch.Tensor,
                          visible: torch.Tensor) -> dict[str, torch.Tensor]:
    """RMSE and MAE between ``target`` and ``render`` over visible face pixels, on the 0-255 scale, per image.

    Args:
        target: ``(B, 3, H, W)`` float RGB in [0, 1], the input image I_T.
        render: ``(B, 3, H, W)`` float RGB in [0, 1], the reconstruction I_R.
        visible: ``(B, 1, H, W)`` float in [0, 1], pixel weights of the region to measure (e.g. GT · Φ).

    Returns:
        ``{"rmse", "mae"}``, each ``(B,)`` float64 in 0-255 units: with d = 255 (I_T − I_R) and w the weights,
        ``rmse = sqrt(Σ w d² / (3 Σ w))`` and ``mae = Σ w |d| / (3 Σ w)`` (sums over pixels and RGB channels).
        NaN for an image whose region is empty (Σ w = 0).
    """
    _check_map(target, "target", 3)
    _check_map(render, "render", 3, like=target)
    _check_map(visible, "visible", 1, like=target)
    _check_range(visible, "visible")
    d = (target.double() - render.double()) * PIXEL_SCALE
    w = visible.double()
    n = w.sum((1, 2, 3)) * d.shape[1]
    sq = _ratio((w * d.square()).sum((1, 2, 3)), n)
    return {"rmse": sq.sqrt(), "mae": _ratio((w * d.abs()).sum((1, 2, 3)), n)}


@dataclass(frozen=True)
class Summary:
    """Mean ± standard deviation over images, ignoring NaN values.

    Attributes:
        mean: mean of the finite values (NaN when there are none).
        std: population standard deviation (ddof = 0) of the finite values (NaN when there are none).
        count: how many finite values were summarised.
        skipped: how many NaN values (undefined per-image metrics) were left out.
    """

    mean: float
    std: float
    count: int
    skipped: int = 0

    def format(self, digits: int = 2, std: bool = True) -> str:
        """``"0.94 ± 0.03"`` (or ``"0.94"`` without ``std``); ``"-"`` when nothing was summarised."""
        if self.count == 0:
            return "-"
        text = f"{self.mean:.{digits}f}"
        return f"{text} ± {self.std:.{digits}f}" if std else text

    def __str__(self) -> str:
        return self.format()

    def as_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        return {"mean": _json_float(self.mean), "std": _json_float(self.std), "count": self.count,
                "skipped": self.skipped}


def _json_float(v: float) -> float | None:
    return None if math.isnan(v) else v


def summarise(values: torch.Tensor | np.ndarray | Iterable[float]) -> Summary:
    """Mean ± std (ddof = 0) of per-image values, NaN-aware.

    Args:
        values: 1-D tensor, array or sequence of per-image values (e.g. ``segmentation_metrics(...)["f1"]``);
            NaN entries (undefined metrics) are skipped and counted in ``Summary.skipped``; ±Inf is an error.

    Returns:
        :class:`Summary`; ``count = 0`` and NaN mean/std when no value is finite.
    """
    if isinstance(values, torch.Tensor):
        arr = values.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"values: expected numbers, got {type(values).__name__}: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"values: expected a 1-D sequence of per-image values, got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("values: contains infinite entries")
    nan = np.isnan(arr)
    ok = arr[~nan]
    if ok.size == 0:
        return Summary(float("nan"), float("nan"), 0, int(nan.sum()))
    return Summary(float(ok.mean()), float(ok.std()), int(ok.size), int(nan.sum()))


#: Metrics where a smaller value is better (the reconstruction errors); every other metric is better when larger.
LOWER_IS_BETTER = frozenset(RECONSTRUCTION_METRICS)


@dataclass(frozen=True)
class PairedDifference:
    """Paired comparison of two methods on the same images: ``method − base`` per image.

    Attributes:
        mean: mean of the per-image differences over the images where both values are finite (NaN if none).
        sem: standard error of that mean, ``std(ddof=1) / √count`` (NaN for fewer than 2 pairs).
        count: how many images had both values.
        better: on how many of them the method is strictly better than the base (larger, or smaller for
            :data:`LOWER_IS_BETTER` metrics).
    """

    mean: float
    sem: float
    count: int
    better: int

    def format(self, digits: int = 3, std: bool = True) -> str:
        """``"+0.041 ± 0.012 (80/119)"``: signed mean ± standard error, then better/count; ``"-"`` when empty."""
        if self.count == 0:
            return "-"
        text = f"{self.mean:+.{digits}f}"
        if std and not math.isnan(self.sem):
            text += f" ± {self.sem:.{digits}f}"
        return f"{text} ({self.better}/{self.count})"

    def __str__(self) -> str:
        return self.format()

    def as_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        return {"mean": _json_float(self.mean), "sem": _json_float(self.sem), "count": self.count,
                "better": self.better}


def paired_difference(values: Iterable[float], base: Iterable[float], lower_is_better: bool = False
                      ) -> PairedDifference:
    """:class:`PairedDifference` of per-image ``values`` against ``base`` (same images, same order).

    Pairs with a NaN on either side (an undefined per-image metric) are left out; ±Inf is an error.
    """
    a, b = (np.asarray(list(v) if not isinstance(v, np.ndarray) else v, dtype=np.float64) for v in (values, base))
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"values and base: expected two 1-D sequences of equal length, got shapes {a.shape} "
                         f"and {b.shape}")
    if np.isinf(a).any() or np.isinf(b).any():
        raise ValueError("values and base: contain infinite entries")
    ok = ~(np.isnan(a) | np.isnan(b))
    d = a[ok] - b[ok]
    n = int(d.size)
    if n == 0:
        return PairedDifference(float("nan"), float("nan"), 0, 0)
    sem = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    better = int((d < 0).sum() if lower_is_better else (d > 0).sum())
    return PairedDifference(float(d.mean()), sem, n, better)
