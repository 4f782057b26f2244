"""Scene quality on held-out shapes-world scenes: labels, relations, relational search.

Ground truth relations are computed by the product's own definitions
(:mod:`regionsearch.scene.relations`) on the exact ground-truth masks; predicted objects are
matched one-to-one to ground-truth instances (greedy by mask IoU, >= 0.5).

* label accuracy: matched objects whose label is the instance's class;
* relation precision: predicted relations between matched objects whose matched instances have
  that relation, over all predicted relations (unmatched objects' relations count as wrong);
  recall: ground-truth relations found, over all ground-truth relations;
* relational search: for every (subject class, predicate, object class) triple that holds in at
  least ``min_scenes`` scenes, the query "<subject> <phrase> <object>" and the fraction of its top
  ``k`` hits whose mask has IoU >= 0.5 with a ground-truth subject instance that has the relation
  to an instance of the object class. The denominator is ``min(k, relevant instances)`` (a
  triple with 3 relevant instances can score 1.0); ``strict`` divides by ``k``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..masks import decode_rle
from ..scene.relations import PREDICATES, ObjectMask, measure, relation_matrices
from .shapes import Scene, make_scene, scene_seed

#: never used to train or tune anything (31337 was used while developing the scene code)
SCENE_EVAL_SEED = 27182
#: rendering sizes, cycled over the scenes (the tiny SAM works at 256 px)
SCENE_EVAL_SIZES = (256, 320, 288)
#: the phrase used to query each predicate
QUERY_PHRASE = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below",
                "near": "near", "inside": "inside", "contains": "containing", "overlaps": None}


def scene_eval_scenes(n: int = 60, seed: int = SCENE_EVAL_SEED, sizes: Sequence[int] = SCENE_EVAL_SIZES) -> list[Scene]:
    """``n`` held-out scenes, scene ``i`` rendered at ``sizes[i % len(sizes)]`` pixels."""
    return [make_scene(scene_seed(seed, i), size=int(sizes[i % len(sizes)])) for i in range(n)]


def gt_relations(scene: Scene) -> set[tuple[int, str, int]]:
    """``(i, predicate, j)`` over ground-truth instances of ``scene``."""
    h, w = scene.image.shape[:2]
    geom = measure([ObjectMask.from_full(m) for m in scene.masks], w, h)
    mats = relation_matrices(geom)
    return {(int(i), p, int(j)) for p in PREDICATES for i, j in zip(*np.nonzero(mats[p]))}


def _match(pred: list[np.ndarray], gt: np.ndarray) -> dict[int, int]:
    """Greedy one-to-one matching by IoU >= 0.5: predicted index -> ground-truth index."""
    pairs = []
    for a, m in enumerate(pred):
        for b, g in enumerate(gt):
            inter = np.logical_and(m, g).sum()
            union = np.logical_or(m, g).sum()
            iou = inter / union if union else 0.0
            if iou >= 0.5:
                pairs.append((iou, a, b))
    out: dict[int, int] = {}
    used: set[int] = set()
    for _, a, b in sorted(pairs, reverse=True):
        if a not in out and b not in used:
            out[a] = b
            used.add(b)
    return out


@dataclass
class SceneQuality:
    matched: int
    objects: int
    instances: int
    label_correct: int
    rel_predicted: int
    rel_correct: int
    rel_truth: int
    rel_found: int
    per_predicate: dict[str, dict[str, int]]

    @property
    def label_accuracy(self) -> float:
        return self.label_correct / max(1, self.matched)

    @property
    def precision(self) -> float:
        return self.rel_correct / max(1, self.rel_predicted)

    @property
    def recall(self) -> float:
        return self.rel_found / max(1, self.rel_truth)

    def figures(self) -> dict[str, Any]:
        return {"instances": self.instances, "objects": self.objects, "matched": self.matched,
                "label_accuracy": round(self.label_accuracy, 4), "relations_predicted": self.rel_predicted,
                "relations_truth": self.rel_truth, "relation_precision": round(self.precision, 4),
                "relation_recall": round(self.recall, 4), "per_predicate": self.per_predicate}


def scene_quality(scenes: Sequence[Scene], scene_docs: Sequence[dict[str, Any]]) -> SceneQuality:
    """Compare scene JSON documents (``Scene.to_json()``) with the ground truth of ``scenes``."""
    q = SceneQuality(0, 0, 0, 0, 0, 0, 0, 0, {p: {"predicted": 0, "correct": 0, "truth": 0, "found": 0}
                                             for p in PREDICATES})
    for sc, doc in zip(scenes, scene_docs):
        objs = doc["objects"]
        pred = [decode_rle(o["mask"]) for o in objs]
        match = _match(pred, sc.masks)
        truth = gt_relations(sc)
        q.instances += len(sc.masks)
        q.objects += len(objs)
        q.matched += len(match)
        q.label_correct += sum(objs[a]["label"] == sc.captions[b] for a, b in match.items())
        got = set()
        for r in doc["relations"]:
            a, p, b = r["subject_index"], r["predicate"], r["object_index"]
            ok = a in match and b in match and (match[a], p, match[b]) in truth
            q.rel_predicted += 1
            q.per_predicate[p]["predicted"] += 1
            if ok:
                q.rel_correct += 1
                q.per_predicate[p]["correct"] += 1
                got.add((match[a], p, match[b]))
        q.rel_truth += len(truth)
        q.rel_found += len(got)
        for _, p, _ in truth:
            q.per_predicate[p]["truth"] += 1
        for _, p, _ in got:
            q.per_predicate[p]["found"] += 1
    return q


def relational_triples(scenes: Sequence[Scene], min_scenes: int = 3) -> dict[tuple[str, str, str], dict[int, set[int]]]:
    """Triples ``(subject class, predicate, object class)`` holding in >= ``min_scenes`` scenes ->
    ``{scene index: {subject instance indices that have the relation}}`` (queryable predicates only)."""
    found: dict[tuple[str, str, str], dict[int, set[int]]] = defaultdict(dict)
    for s, sc in enumerate(scenes):
        for i, p, j in gt_relations(sc):
            if QUERY_PHRASE.get(p) is None or sc.captions[i] == sc.captions[j]:
                continue
            found[(sc.captions[i], p, sc.captions[j])].setdefault(s, set()).add(i)
    return {t: v for t, v in sorted(found.items()) if len(v) >= min_scenes}


def relational_precision(search: Any, scenes: Sequence[Scene], paths: Sequence[str], min_scenes: int = 3,
                         k: int = 5) -> dict[str, Any]:
    """P@k of relational queries (see the module docstring); ``search(text, k)`` -> hits."""
    by_path = {p: s for s, p in enumerate(paths)}
    per: dict[str, dict[str, float]] = {}
    for (subj, pred, obj), where in relational_triples(scenes, min_scenes).items():
        text = f"{subj} {QUERY_PHRASE[pred]} {obj}"
        hits = search(text, k)
        relevant = sum(len(v) for v in where.values())
        good = 0
        used: set[tuple[int, int]] = set()  # a second hit on the same instance is a duplicate, not a hit
        for h in hits:
            s = by_path.get(h.image_path)
            if s is None or s not in where:
                continue
            m = decode_rle(h.mask)
            for i in sorted(where[s]):
                g = scenes[s].masks[i]
                union = np.logical_or(m, g).sum()
                if (s, i) not in used and union and np.logical_and(m, g).sum() / union >= 0.5:
                    used.add((s, i))
                    good += 1
                    break
        per[text] = {"precision": good / min(k, relevant), "strict": good / k, "relevant": relevant}
    vals = [v["precision"] for v in per.values()]
    strict = [v["strict"] for v in per.values()]
    return {"triples": len(per), "mean_precision_at_k": round(float(np.mean(vals)), 4) if vals else None,
            "mean_strict_precision_at_k": round(float(np.mean(strict)), 4) if strict else None, "k": k,
            "per_query": per}


def plain_precision(search: Any, scenes: Sequence[Scene], paths: Sequence[str], k: int = 5) -> dict[str, Any]:
    """P@k of the 30 plain class queries ("red circle"): hits whose mask has IoU >= 0.5 with an
    instance of the class (the measure of ``tests/e2e/test_search_quality.py``)."""
    from .shapes import CLASSES

    by_path = {p: s for s, p in enumerate(paths)}
    per = {}
    for cap in CLASSES:
        good = 0
        for h in search(cap, k):
            s = by_path.get(h.image_path)
            if s is None:
                continue
            m = decode_rle(h.mask)
            good += any(c == cap and np.logical_and(m, g).sum() / max(1, np.logical_or(m, g).sum()) >= 0.5
                        for c, g in zip(scenes[s].captions, scenes[s].masks))
        per[cap] = good / k
    return {"queries": len(per), "mean_precision_at_k": round(float(np.mean(list(per.values()))), 4), "k": k,
            "per_query": per}


def run_scene_eval(engine: Any, scenes: Sequence[Scene], paths: Sequence[str], min_scenes: int = 3,
                   k: int = 5) -> dict[str, Any]:
    """All figures of the scene acceptance on an engine that indexed ``paths`` (one per scene)."""
    from ..imageio import path_to_db
    from ..scene.scene import labeler_for, scene_of_indexed

    dd = engine.datadir
    lab = labeler_for(engine.pipeline.embedder)
    docs = []
    for p in paths:
        rec = dd.image_by_path(path_to_db(p))
        if rec is None:
            raise ValueError(f"{p} is not indexed")
        docs.append(scene_of_indexed(dd, rec.id, lab, engine.config.scene).to_json())
    quality = scene_quality(scenes, docs)
    search = lambda text, kk: engine.search(text, kk)  # noqa: E731
    return {"scenes": len(scenes), "scene": quality.figures(),
            "relational": relational_precision(search, scenes, paths, min_scenes, k),
            "plain": plain_precision(search, scenes, paths, k)}
