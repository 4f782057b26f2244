"""Reports of an :class:`~.metrics.EvalSummary`: a terminal table, a JSON file and PNG plots.

The table uses ``rich`` when it is installed and plain aligned text otherwise. Plots need
``matplotlib`` (extra ``eval``); it is imported only inside the plotting functions and drawn on the
non-interactive Agg canvas without ``pyplot``, so no global figure state or display is touched.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import MissingDependencyError
from .metrics import CategoryResult, EvalSummary


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def table_rows(summary: EvalSummary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the result table: one row per category, then the mean and, when known,
    the segmentation ceiling. Undefined figures (no ground truth) print as ``-``."""
    header = ["category", "n_gt", "returned"]
    header += [f"P@{k}" for k in summary.ks] + [f"R@{k}" for k in summary.ks] + ["AP"]
    if summary.ceiling is not None:
        header.append("ceiling")
    rows: list[list[str]] = []
    for c in summary.per_category:
        row = [c.name, str(c.n_gt), str(c.n_returned)]
        row += [_fmt(c.precision_at[k]) for k in summary.ks]
        row += [_fmt(c.recall_at[k]) for k in summary.ks]
        row.append(_fmt(c.ap))
        if summary.ceiling is not None:
            cc = summary.ceiling.per_category.get(c.category_id)
            row.append(_fmt(cc.fraction) if cc is not None else "-")
        rows.append(row)
    mean = [f"mean ({summary.n_categories_evaluated})",
            str(sum(c.n_gt for c in summary.per_category)),
            str(sum(c.n_returned for c in summary.per_category))]
    mean += [_fmt(summary.mean_precision_at[k]) for k in summary.ks]
    mean += [_fmt(summary.mean_recall_at[k]) for k in summary.ks]
    mean.append(_fmt(summary.mean_ap))
    if summary.ceiling is not None:
        mean.append(_fmt(summary.ceiling.fraction))
    rows.append(mean)
    return header, rows


def format_table(summary: EvalSummary) -> str:
    """The result table as plain, column-aligned text (no trailing newline)."""
    header, rows = table_rows(summary)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    sep = "-" * len(line(header))
    out = [line(header), sep, *(line(r) for r in rows[:-1]), sep, line(rows[-1])]
    out.append(_caption(summary))
    return "\n".join(out)


def _caption(summary: EvalSummary) -> str:
    iou = "mask" if summary.use_masks else "box"
    return f"{iou} IoU >= {summary.iou_thr:g}; AP = {summary.ap_method}; means over categories with ground truth"


def print_table(summary: EvalSummary, file: IO[str] | None = None, use_rich: bool | None = None) -> None:
    """Write the result table to ``file`` (default stdout): a rich table if ``rich`` is installed
    (and ``use_rich`` is not False), plain text otherwise."""
    stream = file if file is not None else sys.stdout
    if use_rich is not False:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            if use_rich:
                raise MissingDependencyError("rich", "the rich result table") from None
        else:
            header, rows = table_rows(summary)
            table = Table(caption=_caption(summary))
            for i, h in enumerate(header):
                table.add_column(h, justify="left" if i == 0 else "right")
            for i, r in enumerate(rows):
                table.add_row(*r, end_section=(i == len(rows) - 2))
            Console(file=stream, width=max(80, 12 * len(header))).print(table)
            return
    stream.write(format_table(summary) + "\n")


def write_json(summary: EvalSummary, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``summary.to_json()`` (merged with ``extra``, e.g. the config and templates used) to
    ``path`` atomically (temporary file + rename); returns the path."""
    payload = summary.to_json()
    if extra:
        payload = {**extra, **payload}
    return write_payload(payload, path)


def write_payload(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """``payload`` as JSON (no NaN: write None instead), atomically: a temp file in the same folder,
    then renamed over ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name, suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("matplotlib", "PNG plots of the evaluation", extra="eval") from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _interpolated(c: CategoryResult) -> tuple[np.ndarray, np.ndarray]:
    """Step curve of the monotone precision envelope, starting at recall 0."""
    recall = np.asarray(c.recall, dtype=np.float64)
    precision = np.asarray(c.precision, dtype=np.float64)
    if recall.size == 0:
        return np.zeros(1), np.zeros(1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return np.concatenate([[0.0], recall]), np.concatenate([[envelope[0]], envelope])


def plot_pr_curves(summary: EvalSummary, path: str | os.PathLike[str], max_categories: int = 20) -> Path:
    """PNG of interpolated precision-recall curves, for the ``max_categories`` categories with the
    most ground truth (categories without ground truth have no curve)."""
    cats = sorted((c for c in summary.per_category if c.n_gt > 0), key=lambda c: (-c.n_gt, c.name))
    cats = cats[:max_categories]
    fig = _figure(7.0, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    for c in cats:
        r, p = _interpolated(c)
        ax.step(r, p, where="post", label=f"{c.name} (AP {_fmt(c.ap)})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    ax.set_title(f"Precision-recall, mAP {_fmt(summary.mean_ap)}")
    if cats:
        ax.legend(loc="lower left", fontsize="small")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def plot_category_bars(summary: EvalSummary, path: str | os.PathLike[str], k: int | None = None) -> Path:
    """PNG of per-category bars: AP, and recall@k (``k`` default: the largest evaluated k)."""
    cats = [c for c in summary.per_category if c.n_gt > 0]
    k = k if k is not None else (max(summary.ks) if summary.ks else None)
    fig = _figure(max(6.0, 0.45 * len(cats) + 2.0), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(cats))
    width = 0.4
    ax.bar(x - width / 2, [0.0 if math.isnan(c.ap) else c.ap for c in cats], width, label="AP")
    if k is not None and k in summary.ks:
        ax.bar(x + width / 2, [np.nan_to_num(c.recall_at[k]) for c in cats], width, label=f"R@{k}")
    if summary.ceiling is not None:
        ax.scatter(x, [summary.ceiling.per_category[c.category_id].fraction
                       if c.category_id in summary.ceiling.per_category else np.nan for c in cats],
                   marker="_", s=200, color="black", label="ceiling", zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels([c.name for c in cats], rotation=60, ha="right", fontsize="small")
    ax.set_ylim(0.0, 1.2)
    ax.set_title("Per-category AP")
    ax.legend(fontsize="small", loc="upper center", ncol=3)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(summary: EvalSummary, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``pr_curves.png`` and ``per_category.png`` into ``out_dir``; returns their paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    return [plot_pr_curves(summary, d / "pr_curves.png"), plot_category_bars(summary, d / "per_category.png")]


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png")
    return p
