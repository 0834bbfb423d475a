"""Result tables in the layout of the paper's Tables 2-4 (and Table 1's RMSE), as plain text or Markdown.

Layout: one row per method; column groups are test subsets (e.g. ``Unoccluded | Occluded | Overall``), and each
group holds the same metric columns (``ACC PPV TPR F1`` for segmentation, ``RMSE`` or ``RMSE MAE`` for
reconstruction). Cells are ``mean ± std`` over images (:class:`~occrecon.eval.metrics.Summary`); ``-`` marks a
missing value. Plain text has a two-line header (subset names centred over their columns, then metric names);
Markdown has one header row whose cells read ``Subset ACC``.

```python
rows = {"Pretrained": {"Occluded": {"acc": summarise(...), ...}, "Unoccluded": {...}}, "Proposed": {...}}
print(format_table(rows, subsets=["Unoccluded", "Occluded"]))
print(format_table(rows, metrics=["rmse"], markdown=True))
```
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from .metrics import SEGMENTATION_METRICS, PairedDifference, Summary

__all__ = ["format_table", "METRIC_TITLES"]

#: Column titles of the metric keys (the paper's abbreviations).
METRIC_TITLES = {"acc": "ACC", "ppv": "PPV", "tpr": "TPR", "f1": "F1", "rmse": "RMSE", "mae": "MAE"}


def _cell(value: Summary | PairedDifference | None, digits: int, std: bool) -> str:
    if value is None:
        return "-"
    if not isinstance(value, (Summary, PairedDifference)):
        raise TypeError(f"rows: cells must be Summary objects (from summarise) or PairedDifference objects (from "
                        f"paired_difference), got {type(value).__name__}")
    return value.format(digits, std)


def format_table(rows: Mapping[str, Mapping[str, Mapping[str, Summary]]], subsets: Sequence[str] | None = None,
                 metrics: Sequence[str] = SEGMENTATION_METRICS, *, digits: int = 2, std: bool = True,
                 markdown: bool = False, title: str | None = None) -> str:
    """Format ``rows[method][subset][metric] -> Summary`` (or :class:`PairedDifference`) as the paper's table.

    Args:
        rows: method name → subset name → metric key → :class:`Summary`; row order is the mapping's order.
            A missing subset or metric prints ``-``.
        subsets: column groups in order; default: the subsets of the first method, in its order.
        metrics: metric keys per group (titles from :data:`METRIC_TITLES`, else the key upper-cased).
        digits: decimals of mean and std (the paper prints 2).
        std: print ``mean ± std`` (True) or the mean only.
        markdown: a GitHub Markdown table instead of aligned plain text.
        title: an optional first line (plain text) or a bold caption line (Markdown).

    Returns:
        The table as one string, lines joined by ``\\n``, no trailing newline.
    """
    if not isinstance(rows, Mapping) or not rows:
        raise ValueError("rows: expected a non-empty mapping method -> subset -> metric -> Summary")
    for method, by_subset in rows.items():
        if not isinstance(by_subset, Mapping):
            raise TypeError(f"rows[{method!r}]: expected a mapping subset -> metric -> Summary, "
                            f"got {type(by_subset).__name__}")
    if subsets is None:
        subsets = list(next(iter(rows.values())).keys())
    subsets = list(subsets)
    metrics = list(metrics)
    if not subsets:
        raise ValueError("subsets: at least one subset is needed")
    if not metrics:
        raise ValueError("metrics: at least one metric is needed")
    if not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits: expected a non-negative int, got {digits!r}")
    titles = [METRIC_TITLES.get(m, m.upper()) for m in metrics]
    body = [[str(method)] + [_cell(by_subset.get(s, {}).get(m), digits, std) for s in subsets for m in metrics]
            for method, by_subset in rows.items()]
    if markdown:
        return _markdown(body, subsets, titles, title)
    return _plain(body, subsets, titles, title)


def _markdown(body: list[list[str]], subsets: list[str], titles: list[str], title: str | None) -> str:
    header = ["Method"] + [f"{s} {t}" for s in subsets for t in titles]
    lines = [] if title is None else [f"**{title}**", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _plain(body: list[list[str]], subsets: list[str], titles: list[str], title: str | None) -> str:
    gap = "  "
    k = len(titles)
    first = max(len("Method"), *(len(r[0]) for r in body))
    widths = [max(len(titles[j % k]), *(len(r[1 + j]) for r in body)) for j in range(len(subsets) * k)]
    # widen a group's last column when its subset name is longer than the group
    for g, name in enumerate(subsets):
        span = sum(widths[g * k:(g + 1) * k]) + len(gap) * (k - 1)
        if len(name) > span:
            widths[(g + 1) * k - 1] += len(name) - span
    groups = []
    for g, name in enumerate(subsets):
        span = sum(widths[g * k:(g + 1) * k]) + len(gap) * (k - 1)
        groups.append(name.center(span))
    lines = [] if title is None else [title]
    lines.append(" " * first + gap + (gap + gap).join(groups))
    lines.append("Method".ljust(first) + gap + _join(titles * len(subsets), widths, k, gap))
    lines.append("-" * len(lines[-1]))
    lines += [r[0].ljust(first) + gap + _join(r[1:], widths, k, gap) for r in body]
    return "\n".join(line.rstrip() for line in lines)


def _join(cells: list[str], widths: list[int], k: int, gap: str) -> str:
    """Right-aligned cells; groups of ``k`` columns separated by a double gap."""
    out = []
    for j, (c, w) in enumerate(zip(cells, widths)):
        if j and j % k == 0:
            out.append(gap + gap)
        elif j:
            out.append(gap)
        out.append(c.rjust(w))
    return "".join(out)
