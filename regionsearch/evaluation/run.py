"""``regionsearch eval``: index a COCO-format dataset (or reuse its data directory) and measure
text-to-region retrieval per category: P@k, R@k, AP, and the segmentation ceiling."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import Config, SearchConfig
from ..errors import ConfigError
from ..search import Query, SearchFilters, search
from .coco import CocoDataset, load_coco
from .metrics import EvalSummary, RankedRegion, evaluate_category, segmentation_ceiling, summarize

log = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {}.",)
DEFAULT_KS = (1, 5, 10, 100)


def load_templates(path: str | os.PathLike[str] | None) -> tuple[str, ...]:
    """Prompt templates: one per line with a ``{}`` for the category name (``#`` comments)."""
    if path is None:
        return DEFAULT_TEMPLATES
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"templates file {p} does not exist")
    lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    templates = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ConfigError(f"every template in {p} needs a '{{}}' for the category name (bad: {bad[:3]})")
    return templates


@dataclass
class EvalRun:
    """One evaluated configuration: its summary plus how long indexing took."""

    name: str
    summary: EvalSummary
    index_seconds: float | None
    regions: int
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        seconds = None if self.index_seconds is None else round(self.index_seconds, 3)
        return {"name": self.name, "index_seconds": seconds, "regions": self.regions,
                "config": self.config, "summary": self.summary.to_json()}


def _image_key_map(ds: CocoDataset, images_dir: Path) -> dict[str, int]:
    from ..imageio import path_to_db

    return {path_to_db(os.path.abspath(images_dir / img.file_name)): img.id for img in ds.images.values()}


def evaluate(engine: Any, ds: CocoDataset, images_dir: Path, templates: Sequence[str] = DEFAULT_TEMPLATES,
             ks: Sequence[int] = DEFAULT_KS, depth: int = 1000, include_whole: bool = False,
             iou_thr: float = 0.5) -> EvalSummary:
    """Query every category of ``ds`` against an indexed data directory and score the rankings.

    Each category's query is the normalised mean of its templates' text embeddings. The ranking
    is the top ``depth`` regions of the index restricted to the dataset's images (whole-image
    regions excluded unless ``include_whole``).
    """
    datadir = engine.datadir
    key_of = _image_key_map(ds, images_dir)
    gts = ds.gts_by_image()
    embedder = engine.pipeline.embedder
    results = []
    depth = max(depth, max(ks))
    # plain similarity ranking: every candidate kept (no regions-before-scenes rule), no k limit
    rank = SearchConfig(max_k=None, oversample=1, whole_margin=None)
    kinds = None if include_whole else ("mask",)
    for cat in ds.categories:
        vecs = embedder.embed_texts([t.format(cat.name) for t in templates])
        q = vecs.mean(axis=0)
        q = (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)
        want = max(1, min(len(datadir.index), depth * 2))
        hits = search(datadir, Query(vector=q), want, SearchFilters(kinds=kinds), config=rank)
        ranked = [RankedRegion(image_id=key_of[h.image_path], score=h.score, rle=h.mask, bbox=tuple(h.bbox),
                               region_id=h.region_id) for h in hits if h.image_path in key_of][:depth]
        results.append(evaluate_category(ranked, gts, cat.id, name=cat.name, ks=ks, iou_thr=iou_thr,
                                         use_masks=ds.has_masks))
    regions_by_image: dict[int, list[dict]] = {img_id: [] for img_id in ds.images}
    for path, img_id in key_of.items():
        rec = datadir.image_by_path(path)
        if rec is None:
            continue
        for row in datadir.regions_of_image(rec.id):
            if row.kind == "mask" or include_whole:
                regions_by_image[img_id].append(row.rle)
    ceiling = segmentation_ceiling(regions_by_image, gts, iou_thr=iou_thr, use_masks=ds.has_masks)
    return summarize(results, iou_thr=iou_thr, use_masks=ds.has_masks, ceiling=ceiling)


def run_eval(coco: str | os.PathLike[str], images: str | os.PathLike[str], config: Config,
             data_dir: str | os.PathLike[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
             ks: Sequence[int] = DEFAULT_KS, depth: int = 1000, include_whole: bool = False,
             progress: bool = True, name: str | None = None, db_url: str | None = None) -> EvalRun:
    """Index the dataset's images with ``config`` (idempotent) and evaluate."""
    from ..engine import Engine

    ds = load_coco(coco)
    images_dir = Path(images)
    missing = [img.file_name for img in ds.images.values() if not (images_dir / img.file_name).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} image(s) of {coco} are not under {images_dir} (e.g. {missing[0]})")
    paths = [str(images_dir / img.file_name) for img in ds.images.values()]
    with Engine(config, data_dir, db_url) as engine:
        t0 = time.perf_counter()
        report = engine.index(paths, progress=progress)
        seconds = time.perf_counter() - t0
        summary = evaluate(engine, ds, images_dir, templates, ks, depth, include_whole)
        regions = int(engine.datadir.info().get("regions", 0))
    index_seconds = seconds if report.indexed else None  # None: reused an existing data directory
    return EvalRun(name=name or config.name, summary=summary, index_seconds=index_seconds, regions=regions,
                   config={"crop": config.embed.crop, "preset": config.segment.preset, "preset_params":
                           config.segment.amg_params(), "config": config.name})


def format_comparison(runs: Sequence[EvalRun], k_show: Sequence[int] = (1, 5, 10)) -> str:
    """Side-by-side table of several runs (one line each)."""
    head = ["config", "index s", "regions", "mAP"] + [f"P@{k}" for k in k_show] + [f"R@{k}" for k in k_show] + ["ceiling"]
    lines = [head]
    for r in runs:
        s = r.summary
        ceiling = s.ceiling.fraction if s.ceiling is not None else float("nan")
        seconds = "reused" if r.index_seconds is None else f"{r.index_seconds:.1f}"
        lines.append([r.name, seconds, str(r.regions), f"{s.mean_ap:.3f}"]
                     + [f"{s.mean_precision_at.get(k, float('nan')):.3f}" for k in k_show]
                     + [f"{s.mean_recall_at.get(k, float('nan')):.3f}" for k in k_show] + [f"{ceiling:.3f}"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in lines)


def write_runs_json(runs: Sequence[EvalRun], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([r.to_json() for r in runs], indent=2, default=str))
    os.replace(tmp, path)
    return path
