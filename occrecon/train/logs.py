"""Run outputs of the main process: CSV loss logs, TensorBoard scalars and sample overlay PNGs.

``log/<stage>.csv`` has one row per log step: ``stage, iteration, <loss terms...>, total, lr_<net>..., seconds``.
Columns are the union of what was logged so far (the file is rewritten when a new column appears, e.g. when EM
switches from UNet to encoder steps). On resume, rows past the checkpoint are dropped, so the log of a resumed run
equals the log of a straight one.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["CsvLog", "RunLogger", "overlay_grid", "write_png"]

_FIRST = ("stage", "iteration")
_LAST = ("seconds",)


class CsvLog:
    """One CSV file with a growing header. ``append(row)``; ``truncate(after_iteration)``; ``rows``.

    Opening an existing file drops what a process killed mid-write left: a last line without its newline, rows
    whose iteration is not a number or whose fields are cut short (the file is rewritten then, so that later rows
    start on a line of their own), and the temp file of an interrupted rewrite.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        self.header: list[str] = []
        self._tmp.unlink(missing_ok=True)
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8", errors="replace") as f:
                text = f.read()
            complete = text[:text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(complete, newline=""))
            self.header = list(reader.fieldnames or [])
            rows = [dict(r) for r in reader]
            self.rows = [r for r in rows if _complete(r, self.header)]
            if complete != text or len(self.rows) != len(rows):
                self._rewrite()

    @property
    def _tmp(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def truncate(self, after_iteration: int) -> None:
        """Drop rows whose iteration is greater than ``after_iteration`` (rewrites the file if any)."""
        keep = [r for r in self.rows if int(r["iteration"]) <= after_iteration]
        if len(keep) != len(self.rows):
            self.rows = keep
            self._rewrite()

    def append(self, row: dict[str, object]) -> None:
        text = {k: _fmt(v) for k, v in row.items()}
        new = [k for k in text if k not in self.header]
        self.rows.append(text)
        if new or not self.path.is_file():
            middle = [k for k in self.header if k not in _FIRST + _LAST] + [k for k in new if k not in _FIRST + _LAST]
            self.header = list(_FIRST) + middle + list(_LAST)
            self._rewrite()
        else:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, self.header, restval="").writerow(text)

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self.header, restval="")
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.path)


def _complete(row: dict[str, str | None], header: list[str]) -> bool:
    """A row as ``append`` writes it: every column present (missing ones are ``None``), an integer iteration."""
    return None not in row and all(row.get(k) is not None for k in header) and str(row.get("iteration")).isdigit()


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return str(v)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] (C = 1 or 3) → ``(H, W, 3)`` uint8."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def overlay_grid(target: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, count: int = 4) -> np.ndarray:
    """A ``(n·H, 3·W, 3)`` uint8 image: per row one sample, columns target | render | mask (white = face).

    Args:
        target, render: ``(B, 3, H, W)`` float in [0, 1]; mask: ``(B, 1, H, W)`` float in [0, 1].
        count: at most this many rows (the first samples of the batch).
    """
    if target.shape != render.shape or target.dim() != 4 or target.shape[1] != 3:
        raise ValueError(f"target/render: expected equal (B, 3, H, W) shapes, got {tuple(target.shape)} and "
                         f"{tuple(render.shape)}")
    if mask.shape != (target.shape[0], 1, *target.shape[2:]):
        raise ValueError(f"mask: expected {(target.shape[0], 1, *target.shape[2:])}, got {tuple(mask.shape)}")
    n = max(1, min(count, target.shape[0]))
    rows = [np.concatenate([_to_uint8(target[i]), _to_uint8(render[i]), _to_uint8(mask[i])], axis=1)
            for i in range(n)]
    return np.concatenate(rows, axis=0)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


class RunLogger:
    """CSV + TensorBoard + sample PNGs under ``out_dir`` (``log/``, ``tensorboard/``, ``samples/``).

    Args:
        out_dir: run folder.
        tensorboard: write TensorBoard scalars.
        purge_step: global step from which TensorBoard events of an earlier (killed) run are discarded.
    """

    def __init__(self, out_dir: str | Path, tensorboard: bool = False, purge_step: int | None = None):
        self.out_dir = Path(out_dir)
        self._csv: dict[str, CsvLog] = {}
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(f"logging.tensorboard: true needs the tensorboard package (pip install "
                                  f"tensorboard, or the occrecon[train] extra): {exc}") from None

            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge_step)

    def csv(self, stage: str) -> CsvLog:
        if stage not in self._csv:
            self._csv[stage] = CsvLog(self.out_dir / "log" / f"{stage}.csv")
        return self._csv[stage]

    def log(self, stage: str, iteration: int, global_step: int, values: dict[str, float], seconds: float) -> None:
        """One log row: ``values`` (loss terms, total, learning rates) at ``iteration`` of ``stage``."""
        row: dict[str, object] = {"stage": stage, "iteration": iteration}
        row.update({k: float(v) for k, v in values.items()})
        row["seconds"] = round(float(seconds), 3)
        self.csv(stage).append(row)
        if self._tb is not None:
            for k, v in values.items():
                if math.isfinite(v):
                    self._tb.add_scalar(f"{stage}/{k}", v, global_step)

    def sample(self, stage: str, iteration: int, global_step: int, target: torch.Tensor, render: torch.Tensor,
               mask: torch.Tensor, count: int) -> Path:
        """``samples/<stage>_<iteration>.png`` (target | render | mask); also to TensorBoard."""
        grid = overlay_grid(target, render, mask, count)
        path = write_png(self.out_dir / "samples" / f"{stage}_{iteration:07d}.png", grid)
        if self._tb is not None:
            self._tb.add_image(f"{stage}/samples", grid, global_step, dataformats="HWC")
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
