"""Near-duplicate collapse on held-out corpora the thresholds were NOT chosen on.

``search.dedupe_iou`` (0.8) and ``search.dedupe_contain`` (first 0.7, now 0.5) were set looking
at the test corpus (seed 90210, ``tests/e2e/test_search_quality.py``). This script checks them on other seeds
and on a differently rendered corpus (larger images, more objects per scene): for every variant it
indexes the scenes with ``--config tiny`` and reports, over the 30 captions' top-10 hits,

* repeated ground-truth instances (a hit that is an instance already returned for that caption),
* mean precision@5 (IoU >= 0.5 with a ground-truth instance of the caption; a repeat of a right
  object counts as right, so dedupe can only keep it by giving the freed slot to another right
  object),
* whole-image hits in the top 5s and top 10s (every one is wrong for these object captions),
* the same P@5 counting each object once, and what the wrong top-5 hits are (whole image, wrong
  colour / shape / both, part of an object, other),
* the captions with fewer than 5 of their instances found at all (top 50 without dedupe): there a
  search without dedupe can fill 5 slots with repeats of right objects, one with dedupe cannot,

without dedupe, with the defaults, and with a sweep of the containment threshold; and the same
with ``search.scenes_for_objects`` true (the ranking before issue #17: whole images answer object
queries under the per-image margin alone), with ``search.dedupe_best_fit`` null (a collapsed
group shown by its best-scoring member, not its best-fitting one), with ``search.dedupe_consensus``
null (a group ranks by its shown member's score alone, no bonus for the object being found several
times) and with all three (the ranking before issue #17). Figures go to ``benchmarks/results/dedupe_seeds.json``.

Run::

    python benchmarks/dedupe_seeds.py                     # 3 variants, ~5 min on 2 idle CPU cores
    python benchmarks/dedupe_seeds.py --work DIR          # keep the indexed corpora in DIR (reused)
    python benchmarks/dedupe_seeds.py --only "seed 90211" --only "seed 90210 (the e2e test's)"
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import save_results  # noqa: E402

VARIANTS = {
    "seed 90211": (90211, {}),
    "seed 90212": (90212, {}),
    "seed 90213, 320 px, up to 10 objects": (90213, {"size": 320, "n_max": 10}),
    # the e2e test's corpus: thresholds are not chosen on it; run it to confirm (--only)
    "seed 90210 (the e2e test's)": (90210, None),
    # more held-out seeds (--variants 8); the consensus bonus was chosen on the first six, 90216
    # and 90217 were first run after it was set
    "seed 90214": (90214, {}),
    "seed 90215": (90215, {}),
    "seed 90216": (90216, {}),
    "seed 90217": (90217, {}),
    # four more (--variants 12), first run after every collapse setting but dedupe_contain was
    # fixed; two rendered at other sizes (384 px; 224 px with up to 10 objects)
    "seed 90218, 384 px": (90218, {"size": 384}),
    "seed 90219": (90219, {}),
    "seed 90220, 224 px, up to 10 objects": (90220, {"size": 224, "n_max": 10}),
    "seed 90221": (90221, {}),
    # six more (--variants 18), first run with dedupe_contain 0.7 and dedupe_merge's bridge (a
    # whole object scoring between its two halves ties them too); three rendered differently.
    # dedupe_contain went to 0.5 after 90225 showed one repeat at 0.7
    "seed 90222": (90222, {}),
    "seed 90223, 288 px": (90223, {"size": 288}),
    "seed 90224, up to 6 larger shapes": (90224, {"n_max": 6, "scale_range": (0.08, 0.22)}),
    "seed 90225": (90225, {}),
    "seed 90226, 320 px, up to 10 objects": (90226, {"size": 320, "n_max": 10}),
    "seed 90227, smaller shapes": (90227, {"scale_range": (0.05, 0.16)}),
    # six more (--variants 24), first run after every setting was fixed (no setting has moved
    # since), five rendered in ways no earlier corpus was: less and more occlusion, one background
    # kind, always crowded, small crowded images, large images with a wider size spread
    "seed 90228, less occlusion": (90228, {"min_visible_fraction": 0.5}),
    "seed 90229, striped backgrounds only": (90229, {"backgrounds": ("stripes",)}),
    "seed 90230, 200 px, up to 10 objects": (90230, {"size": 200, "n_max": 10}),
    "seed 90231, 4 to 9 objects": (90231, {"n_min": 4, "n_max": 9}),
    "seed 90232, more occlusion": (90232, {"min_visible_fraction": 0.2}),
    "seed 90233, 352 px, wider size spread": (90233, {"size": 352, "scale_range": (0.05, 0.25)}),
}
DEFAULT_VARIANTS = 3
CONTAIN_SWEEP = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, None)
#: issue #17's levers turned off one at a time, then both (SearchConfig fields)
LEVERS_OFF = {"consensus_off": {"dedupe_consensus": None},
              "best_fit_off": {"dedupe_best_fit": None},
              "before_issue_17": {"dedupe_best_fit": None, "scenes_for_objects": True, "dedupe_consensus": None}}


def _wrong_kind(caption: str, hit, scene, ious) -> str:
    """What a wrong hit for ``caption`` is."""
    if hit.kind == "whole":
        return "whole image"
    best = int(np.argmax(ious)) if len(ious) else -1
    if best >= 0 and ious[best] >= 0.5:
        colour, shape = scene.captions[best].split(" ", 1)
        want_colour, want_shape = caption.split(" ", 1)
        return "wrong colour" if shape == want_shape else "wrong shape" if colour == want_colour else "wrong both"
    return "part of an object" if best >= 0 and ious[best] > 0 else "other"


def _scenes(seed: int, kwargs: dict | None, min_scenes: int = 40, min_per_class: int = 5, limit: int = 120):
    from regionsearch.testing.shapes import CLASSES, make_scene, scene_seed

    if kwargs is None:  # exactly the e2e tests' held-out corpus
        from regionsearch.testing.heldout import held_out_scenes

        return held_out_scenes(seed=seed)

    scenes, counts, i = [], Counter(), 0
    while i < limit and (len(scenes) < min_scenes or min(counts.get(c, 0) for c in CLASSES) < min_per_class):
        scene = make_scene(scene_seed(seed, i), **kwargs)
        scenes.append(scene)
        counts.update(scene.captions)
        i += 1
    return scenes


def _measure(engine, scenes, paths, search_cfg, dedupe: bool) -> dict:
    """Repeated instances in the top 10s and mean P@5 over the captions."""
    from regionsearch.masks import decode_rle, mask_iou
    from regionsearch.search import Query, SearchFilters, search
    from regionsearch.testing.shapes import CLASSES

    by_name = {Path(p).name: s for p, s in zip(paths, scenes)}  # a reused corpus may have moved
    repeats, p5, whole5, whole10, once, wrong = 0, [], 0, 0, [], Counter()
    for caption in CLASSES:
        hits = search(engine.datadir, Query(text=caption), 10, SearchFilters(dedupe=dedupe),
                      encoder=engine.pipeline, config=search_cfg)
        top5 = search(engine.datadir, Query(text=caption), 5, SearchFilters(dedupe=dedupe),
                      encoder=engine.pipeline, config=search_cfg)
        whole10 += sum(h.kind == "whole" for h in hits)
        whole5 += sum(h.kind == "whole" for h in top5)
        seen, good = set(), 0
        for h in hits:
            scene = by_name[Path(h.image_path).name]
            mask = decode_rle(h.mask)
            ious = [mask_iou(mask, gt) for gt in scene.masks]
            best = int(np.argmax(ious)) if ious else -1
            if best >= 0 and ious[best] >= 0.5:
                repeats += (h.image_path, best) in seen
                seen.add((h.image_path, best))
        found: set = set()
        for h in top5:  # as the e2e test measures it (k=5: the candidates are fewer than for k=10)
            scene = by_name[Path(h.image_path).name]
            mask = decode_rle(h.mask)
            ious = [mask_iou(mask, gt) for gt in scene.masks]
            right = [i for i, (c, iou) in enumerate(zip(scene.captions, ious)) if c == caption and iou >= 0.5]
            good += bool(right)
            if not right:
                wrong[_wrong_kind(caption, h, scene, ious)] += 1
            found.update((h.image_path, i) for i in right)
        p5.append(good / 5.0)
        once.append(len(found) / 5.0)
    return {"repeated_instances_top10": repeats, "mean_p_at_5": round(float(np.mean(p5)), 4),
            "p_at_5_by_caption": dict(zip(CLASSES, p5)),
            "mean_p_at_5_each_object_once": round(float(np.mean(once)), 4), "wrong_top5": dict(wrong),
            "whole_image_hits_top5": whole5, "whole_image_hits_top10": whole10}


def _under_5_found(engine, scenes, paths, depth: int = 50) -> dict:
    """Captions with fewer than 5 distinct right instances among their top ``depth`` hits (no dedupe)."""
    from regionsearch.masks import decode_rle, mask_iou
    from regionsearch.search import SearchFilters
    from regionsearch.testing.shapes import CLASSES

    by_name = {Path(p).name: s for p, s in zip(paths, scenes)}
    short = {}
    for caption in CLASSES:
        found = set()
        for h in engine.search(caption, k=depth, filters=SearchFilters(dedupe=False)):
            scene = by_name[Path(h.image_path).name]
            mask = decode_rle(h.mask)
            found.update((h.image_path, i) for i, (c, gt) in enumerate(zip(scene.captions, scene.masks))
                         if c == caption and mask_iou(mask, gt) >= 0.5)
        if len(found) < 5:
            short[caption] = len(found)
    return short


def run_variant(seed: int, kwargs: dict | None, work: Path) -> dict:
    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.testing.heldout import scene_paths
    from regionsearch.testing.shapes import export_coco

    scenes = _scenes(seed, kwargs)
    if not (work / "images").is_dir():
        export_coco(scenes, work)
    paths = scene_paths(work, len(scenes))
    cfg = load_config("tiny")
    engine = Engine(cfg, work / "data")
    try:
        # a corpus indexed before (--work) is searched as it is: not even re-hashed
        reuse = engine.datadir.store.counts()["images_indexed"] == len(scenes)
        report = None if reuse else engine.index([str(work / "images")], progress=False)
        before = dataclasses.replace(cfg.search, scenes_for_objects=True)
        out = {"scenes": len(scenes), "indexed": None if reuse else report.indexed,
               "failed": None if reuse else report.failed,
               "no_dedupe": _measure(engine, scenes, paths, cfg.search, dedupe=False),
               "default": _measure(engine, scenes, paths, cfg.search, dedupe=True),
               "scenes_for_objects": {"no_dedupe": _measure(engine, scenes, paths, before, dedupe=False),
                                      "dedupe": _measure(engine, scenes, paths, before, dedupe=True)},
               "captions_with_under_5_instances_found": _under_5_found(engine, scenes, paths),
               "contain_sweep": {}}
        for lever, over in LEVERS_OFF.items():
            sc = dataclasses.replace(cfg.search, **over)
            out[lever] = {"no_dedupe": _measure(engine, scenes, paths, sc, dedupe=False),
                          "dedupe": _measure(engine, scenes, paths, sc, dedupe=True)}
        for c in CONTAIN_SWEEP:
            sc = dataclasses.replace(cfg.search, dedupe_contain=c)
            out["contain_sweep"][str(c)] = _measure(engine, scenes, paths, sc, dedupe=True)
        return out
    finally:
        engine.close()


def pooled(figures: dict) -> dict:
    """Every (corpus, caption) query of the variants run, compared pairwise.

    Collapse against the same ranking without it, and against the ranking before issue #17 without
    it: the mean P@5 over all queries, how many queries are higher / equal / lower, and which
    corpora's mean is lower.
    """
    rows = {"with collapse": lambda r: r["default"], "without": lambda r: r["no_dedupe"],
            "before #17": lambda r: r["before_issue_17"]["no_dedupe"]}
    per = {label: [] for label in rows}
    for r in figures.values():
        for label, pick in rows.items():
            per[label].extend(pick(r)["p_at_5_by_caption"].values())
    out = {"corpora": len(figures), "queries": len(per["with collapse"]),
           "mean_p_at_5": {label: round(float(np.mean(v)), 4) for label, v in per.items()}}
    with_ = np.asarray(per["with collapse"])
    for label in ("without", "before #17"):
        other = np.asarray(per[label])
        out[f"queries_vs_{label}"] = {"higher": int((with_ > other).sum()), "equal": int((with_ == other).sum()),
                                      "lower": int((with_ < other).sum())}
        out[f"corpora_lower_than_{label}"] = [
            name for name, r in figures.items()
            if r["default"]["mean_p_at_5"] < rows[label](r)["mean_p_at_5"]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", type=int, default=DEFAULT_VARIANTS,
                    help=f"how many of the variants to run, in order (default {DEFAULT_VARIANTS}: not the e2e test's seed)")
    ap.add_argument("--only", action="append", choices=list(VARIANTS), help="run these variants (repeatable)")
    ap.add_argument("--work", type=Path, help="keep each indexed corpus under this folder and reuse it (default: temporary)")
    ap.add_argument("--save", default="dedupe_seeds", help="results name (benchmarks/results/NAME.json)")
    args = ap.parse_args()
    figures = {}
    names = args.only or list(VARIANTS)[:args.variants]
    for name in names:
        seed, kwargs = VARIANTS[name]
        if args.work is not None:
            work = args.work / "".join(c if c.isalnum() else "_" for c in name)
            work.mkdir(parents=True, exist_ok=True)
            figures[name] = r = run_variant(seed, kwargs, work)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                figures[name] = r = run_variant(seed, kwargs, Path(tmp))
        old = r["scenes_for_objects"]
        print(f"{name}: {r['scenes']} scenes; repeated instances in the top 10s: without dedupe "
              f"{r['no_dedupe']['repeated_instances_top10']}, default {r['default']['repeated_instances_top10']}; "
              f"mean P@5 without {r['no_dedupe']['mean_p_at_5']:.3f}, default {r['default']['mean_p_at_5']:.3f} "
              f"(whole images in the top 5s {r['default']['whole_image_hits_top5']}); before issue #17 "
              f"(scenes_for_objects) without {old['no_dedupe']['mean_p_at_5']:.3f}, with "
              f"{old['dedupe']['mean_p_at_5']:.3f} (whole images in the top 5s {old['dedupe']['whole_image_hits_top5']})")
        print(f"    captions with < 5 instances found: {r['captions_with_under_5_instances_found']}")
        for label, m in [("no dedupe", r["no_dedupe"]), ("default", r["default"]),
                         *[(f"{lv}, dedupe", r[lv]["dedupe"]) for lv in LEVERS_OFF]]:
            print(f"    {label:24s} repeats {m['repeated_instances_top10']:3d}  P@5 {m['mean_p_at_5']:.3f}  "
                  f"each object once {m['mean_p_at_5_each_object_once']:.3f}  wrong top-5: {m['wrong_top5']}")
        for c, m in r["contain_sweep"].items():
            print(f"    dedupe_contain {c}: repeats {m['repeated_instances_top10']}, P@5 {m['mean_p_at_5']:.3f}")
    if len(figures) > 1:
        summary = pooled(figures)
        m = summary["mean_p_at_5"]
        print(f"all {summary['corpora']} corpora, {summary['queries']} queries: mean P@5 with collapse "
              f"{m['with collapse']:.3f}, without {m['without']:.3f}, before #17 {m['before #17']:.3f}")
        for label in ("without", "before #17"):
            q = summary[f"queries_vs_{label}"]
            print(f"    against {label}: queries higher {q['higher']}, equal {q['equal']}, lower {q['lower']}; "
                  f"corpora lower: {summary[f'corpora_lower_than_{label}'] or 'none'}")
        figures = {**figures, "all_corpora": summary}
    print("results:", save_results(args.save, figures))


if __name__ == "__main__":
    main()
