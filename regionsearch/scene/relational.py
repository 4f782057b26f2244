"""Relational search: "a red circle left of a blue square" over a whole corpus.

The subject and object texts are embedded separately. Subject candidates are the best mask
regions for the subject text (vector search, deeper rounds while too few hits qualify). In each
candidate's image every mask region is scored against the object text from its stored
embedding; a subject region is a hit when some *other* region of its image (IoU < 0.8 with it)
satisfies the relation (:mod:`regionsearch.scene.relations`) with it. Its object is the
satisfying region with the highest object score, and

    score = (subject similarity + object similarity) / 2

(both cosine similarities of CLIP embeddings, so the score stays on the scale of plain search).

"X in Y" where Y describes the whole picture: when the image's whole-image region matches the
object text better than any of its mask regions ("the red car in the parking lot"), the subject
region is scored with the whole image as its object (every region is inside its image) and the
hit's relation says ``"scene": true``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..types import SearchHit
from .query import RelationalQuery
from .relations import ObjectMask, measure, relation_matrices
from .scene import stored_embeddings

#: two regions this similar (mask IoU) are one thing; never each other's relation object
SAME_THING_IOU = 0.8
#: per image, the object text is matched against at most this many best-scoring regions
OBJECT_CANDIDATES = 8
#: first round of subject candidates: max(k x oversample x this, SUBJECT_MIN), at most SUBJECT_MAX
SUBJECT_DEPTH = 5
SUBJECT_MIN = 100
SUBJECT_MAX = 1000


def _relation_hits(datadir: Any, query: RelationalQuery, subject_pairs: list[tuple[Any, float]],
                   qo: np.ndarray) -> list[tuple[float, Any, dict[str, Any]]]:
    by_image: dict[int, list[tuple[Any, float]]] = {}
    for row, score in subject_pairs:
        by_image.setdefault(row.image_id, []).append((row, score))
    out: list[tuple[float, Any, dict[str, Any]]] = []
    for image_id, subs in by_image.items():
        rows = datadir.regions_of_image(image_id)
        if not rows:
            continue
        vecs = stored_embeddings(datadir, [r.region_id for r in rows])
        obj_scores = vecs @ np.asarray(qo, np.float32)
        masks_idx = [i for i, r in enumerate(rows) if r.kind == "mask"]
        whole_idx = [i for i, r in enumerate(rows) if r.kind == "whole"]
        best_mask = max((float(obj_scores[i]) for i in masks_idx), default=-np.inf)
        if query.predicate == "inside" and whole_idx and float(obj_scores[whole_idx[0]]) > best_mask:
            w = rows[whole_idx[0]]
            ws = float(obj_scores[whole_idx[0]])
            for row, s in subs:
                rel = {"predicate": "inside", "scene": True,
                       "object": {"region_id": w.region_id, "bbox": [float(v) for v in w.bbox], "score": ws}}
                out.append(((s + ws) / 2.0, row, rel))
            continue
        top_objects = sorted(masks_idx, key=lambda i: -float(obj_scores[i]))[:OBJECT_CANDIDATES]
        pos = {r.region_id: i for i, r in enumerate(rows)}
        members = list(dict.fromkeys([pos[row.region_id] for row, _ in subs if row.region_id in pos] + top_objects))
        img_w, img_h = rows[0].image_width, rows[0].image_height
        if not img_w or not img_h:
            continue
        geom = measure([ObjectMask.from_rle(rows[i].rle).without_specks() for i in members], int(img_w), int(img_h))
        holds = relation_matrices(geom)[query.predicate]
        same = geom.iou() >= SAME_THING_IOU
        local = {m: k for k, m in enumerate(members)}
        for row, s in subs:
            a = local.get(pos.get(row.region_id, -1))
            if a is None:
                continue
            best = None
            for i in top_objects:
                b = local[i]
                if b == a or same[a, b] or not holds[a, b]:
                    continue
                if best is None or obj_scores[i] > obj_scores[best]:
                    best = i
            if best is None:
                continue
            o = rows[best]
            os_ = float(obj_scores[best])
            rel = {"predicate": query.predicate,
                   "object": {"region_id": o.region_id, "bbox": [float(v) for v in o.bbox], "score": os_}}
            out.append(((s + os_) / 2.0, row, rel))
    return out


def relational_search(datadir: Any, embed_text: Callable[[str], np.ndarray], query: RelationalQuery, k: int,
                      filters: Any, oversample: int, rank: Callable[..., list[SearchHit]]) -> list[SearchHit]:
    """Top ``k`` subject regions for ``query`` (see the module docstring), each with its
    ``relation``. ``filters`` (a validated :class:`~regionsearch.search.SearchFilters`) apply to the
    subject region; ``min_score`` and ``per_image`` to the combined score and the final list.
    ``embed_text``: text -> L2-normalised float32 vector; ``rank``: the plain vector ranking
    (:func:`regionsearch.search.search_vector`), given by the search layer above."""
    qs, qo = embed_text(query.subject), embed_text(query.object)
    subject_filters = replace(filters, min_score=None, per_image=None, kinds=("mask",))
    top = min(SUBJECT_MAX, max(1, len(datadir.index)))
    depth = min(top, max(k * max(1, oversample) * SUBJECT_DEPTH, SUBJECT_MIN))
    while True:
        # the subject's plain similarity (no consensus bonus): the hit's score is the mean of two similarities
        cands = rank(datadir, qs, depth, subject_filters, oversample, whole_margin=None, max_k=None,
                     dedupe_consensus=(None, 0.0, 0))
        pairs = [(datadir_row, h.score) for h, datadir_row in _rows(datadir, cands)]
        scored = _relation_hits(datadir, query, pairs, qo)
        scored.sort(key=lambda t: (-t[0], t[1].region_id))
        hits = _final(scored, filters, k)
        if len(hits) >= k or depth >= top or len(cands) < depth:
            return hits
        depth = min(top, depth * 4)


def _final(scored: list[tuple[float, Any, dict[str, Any]]], f: Any, k: int) -> list[SearchHit]:
    hits: list[SearchHit] = []
    per_image: dict[int, int] = {}
    for score, row, rel in scored:
        if f.min_score is not None and score < f.min_score:
            continue
        if f.per_image is not None:
            if per_image.get(row.image_id, 0) >= f.per_image:
                continue
            per_image[row.image_id] = per_image.get(row.image_id, 0) + 1
        hits.append(replace(row.to_hit(score), relation=rel))
        if len(hits) >= k:
            break
    return hits


def _rows(datadir: Any, hits: list[SearchHit]) -> list[tuple[SearchHit, Any]]:
    rows = {r.region_id: r for r in datadir.fetch_regions([h.region_id for h in hits])}
    return [(h, rows[h.region_id]) for h in hits if h.region_id in rows]
