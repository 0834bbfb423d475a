"""Evaluation: segmentation metrics inside Φ, reconstruction errors, mean ± std summaries, the paper's tables and
the ``occrecon evaluate`` command (``occrecon.eval.evaluate``)."""
from __future__ import annotations

from .metrics import (DEFAULT_THRESHOLD, PIXEL_SCALE, RECONSTRUCTION_METRICS, SEGMENTATION_METRICS, PairedDifference,
                      Summary, confusion_counts, paired_difference, reconstruction_errors, segmentation_metrics,
                      summarise)
from .table import METRIC_TITLES, format_table

__all__ = ["segmentation_metrics", "confusion_counts", "reconstruction_errors", "summarise", "Summary",
           "paired_difference", "PairedDifference",
           "format_table", "METRIC_TITLES", "SEGMENTATION_METRICS", "RECONSTRUCTION_METRICS", "PIXEL_SCALE",
           "DEFAULT_THRESHOLD"]
