"""Quality of the tiny trained models over several held-out seeds: the source of the quality
thresholds in the tests and of the quality figures in the README.

For each seed, exactly what the tests measure on their one seed (``regionsearch.testing.quality``):

* tiny SAM single-click mIoU (40 scenes), sam2 AMG recall@0.5 (12 scenes), CLIP zero-shot top-1
  with box / mask / blur crops (30 scenes) -- ``tests/test_tiny_models.py``, seed families
  4242 + 100 j (points: s, AMG: s + 1, CLIP: s + 2);
* a held-out corpus (``held_out_scenes(seed=90210 + j)``) indexed with ``--config tiny``: text
  search precision@5 per caption (mean and minimum over the 30 captions) --
  ``tests/e2e/test_search_quality.py`` -- and the evaluation harness (mean AP, mean P@5,
  segmentation ceiling) -- ``tests/e2e/test_eval_shapes.py``.

Prints, per figure, every seed's value, the minimum and the spread (max - min), and writes them to
``benchmarks/results/quality_seeds.json``. A test threshold is ``min - spread`` over the seeds
(rounded down to 0.01), so a seed-to-seed wobble passes and a real regression does not.

Run::

    python benchmarks/quality_seeds.py            # 3 seeds, ~5-10 min on 2 CPU cores
    python benchmarks/quality_seeds.py --seeds 1  # the test seeds only
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import save_results  # noqa: E402

TEST_SEED = 4242        # tests/test_tiny_models.py
HELD_OUT_SEED = 90210   # regionsearch.testing.heldout (tests/e2e)


def threshold(values: list[float]) -> float:
    """min - spread, rounded down to 0.01 (never below 0)."""
    spread = max(values) - min(values)
    return max(0.0, math.floor((min(values) - spread) * 100 + 1e-9) / 100)


def measure(j: int, work: Path) -> dict:
    import torch

    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.evaluation.coco import load_coco
    from regionsearch.evaluation.run import evaluate
    from regionsearch.models.clip import load_clip
    from regionsearch.models.sam import load_sam2
    from regionsearch.testing import quality

    cfg = load_config("tiny")
    torch.manual_seed(0)
    sam = load_sam2(cfg.models.sam, "cpu")
    bundle = load_clip(cfg.models.clip, "cpu")
    s = TEST_SEED + 100 * j
    out: dict = {"tiny_seed": s, "held_out_seed": HELD_OUT_SEED + j}
    out["sam_point_miou"] = quality.sam_single_point_miou(sam, s)
    out["amg_recall_at_0_5"] = quality.amg_recall(sam, cfg.segment, s + 1)
    for strategy in ("box", "mask", "blur"):
        out[f"clip_top1_{strategy}"] = quality.clip_zero_shot_top1(bundle, cfg.embed, strategy, s + 2)
    root = work / f"seed{j}"
    scenes, ann, paths = quality.held_out_corpus(root / "coco", HELD_OUT_SEED + j)
    with Engine(cfg, root / "data") as engine:
        report = engine.index([str(root / "coco" / "images")], progress=False)
        if report.failed or report.indexed != len(scenes):
            raise SystemExit(f"indexing the held-out corpus failed: {report}")
        p5 = quality.caption_precision_at_5(engine, scenes, paths)
        summary = evaluate(engine, load_coco(ann), root / "coco", ks=(1, 5, 10))
    out["scenes"] = len(scenes)
    out["search_p5_mean"] = sum(p5.values()) / len(p5)
    out["search_p5_min"] = min(p5.values())
    out["eval_mean_ap"] = summary.mean_ap
    out["eval_mean_p5"] = summary.mean_precision_at[5]
    out["eval_ceiling"] = summary.ceiling.fraction
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3; j = 0 is the tests' seed)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    import torch

    torch.set_num_threads(args.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="quality_seeds_") as tmp:
        for j in range(args.seeds):
            t0 = time.perf_counter()
            runs.append(measure(j, Path(tmp)))
            runs[-1]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"seed {j}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in runs[-1].items()), flush=True)
    figures: dict = {"runs": runs, "summary": {}}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if key in ("tiny_seed", "held_out_seed", "scenes", "seconds"):
            continue
        row = {"values": [round(v, 4) for v in values], "min": round(min(values), 4),
               "mean": round(sum(values) / len(values), 4), "spread": round(max(values) - min(values), 4),
               "threshold": threshold(values)}
        figures["summary"][key] = row
        print(f"{key:<20} {row['values']}  min {row['min']:.3f}  spread {row['spread']:.3f}  "
              f"threshold {row['threshold']:.2f}")
    print(f"results: {save_results('quality_seeds', figures)}")


if __name__ == "__main__":
    main()
