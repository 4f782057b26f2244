"""Scene quality on held-out shapes-world scenes with the tiny models (issue #16's acceptance):
label accuracy of matched objects, relation precision/recall against the relations computed by
the same definitions on the ground-truth masks, relational-search P@5 over every (subject class,
predicate, object class) triple holding in >= 3 scenes, and plain-query P@5 on the same corpus.
Definitions: regionsearch/testing/scene_eval.py.

Run::

    python benchmarks/scene_quality.py                  # 60 scenes of seed 27182, sizes 256/320/288
    python benchmarks/scene_quality.py --scenes 90 --data-dir /tmp/scene-eval

The data dir is reused when it already holds the scenes (indexing is idempotent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=60)
    ap.add_argument("--seed", type=int, default=None, help="default: regionsearch.testing.scene_eval.SCENE_EVAL_SEED")
    ap.add_argument("--data-dir", default="/tmp/regionsearch-scene-eval")
    ap.add_argument("--per-query", action="store_true", help="print every relational query's precision")
    args = ap.parse_args(argv)

    from _results import save_results

    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.testing.scene_eval import SCENE_EVAL_SEED, run_scene_eval, scene_eval_scenes
    from regionsearch.testing.shapes import export_coco

    seed = SCENE_EVAL_SEED if args.seed is None else args.seed
    scenes = scene_eval_scenes(args.scenes, seed)
    root = Path(args.data_dir)
    export_coco(scenes, root / "corpus")
    paths = [str((root / "corpus" / "images" / f"scene_{i:06d}.png").resolve()) for i in range(1, len(scenes) + 1)]
    with Engine(load_config("tiny"), root / "data") as eng:
        t0 = time.perf_counter()
        eng.index([str(root / "corpus" / "images")], progress=False)
        t1 = time.perf_counter()
        figs = run_scene_eval(eng, scenes, paths)
        t2 = time.perf_counter()
    sc, rel, plain = figs["scene"], figs["relational"], figs["plain"]
    print(f"{len(scenes)} held-out scenes (seed {seed}), {sc['instances']} instances, {sc['objects']} objects, "
          f"{sc['matched']} matched (IoU >= 0.5)")
    print(f"label accuracy of matched objects: {sc['label_accuracy']:.3f}")
    print(f"relations: precision {sc['relation_precision']:.3f} recall {sc['relation_recall']:.3f} "
          f"({sc['relations_predicted']} predicted, {sc['relations_truth']} true)")
    for p, c in sc["per_predicate"].items():
        print(f"  {p:9s} precision {c['correct'] / max(1, c['predicted']):.3f} recall {c['found'] / max(1, c['truth']):.3f}"
              f" ({c['predicted']} predicted, {c['truth']} true)")
    print(f"relational search: mean P@5 {rel['mean_precision_at_k']} over {rel['triples']} triples "
          f"(strict /5: {rel['mean_strict_precision_at_k']})")
    print(f"plain search (30 class queries): mean P@5 {plain['mean_precision_at_k']}")
    if args.per_query:
        for q, v in sorted(rel["per_query"].items(), key=lambda kv: kv[1]["precision"]):
            print(f"  {v['precision']:.2f} ({v['relevant']} relevant)  {q}")
    print(f"indexing {t1 - t0:.1f} s, evaluation {t2 - t1:.1f} s")
    path = save_results(f"scene_quality-{len(scenes)}", {**figs, "seed": seed})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
