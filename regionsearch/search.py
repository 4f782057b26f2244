"""The one query path: a query (text, image, region id or vector) plus filters -> ranked hits.

:func:`search` is what every caller uses: the CLI and the engine, the API's ``/v1/search``,
``/v1/search/image`` and ``/v1/regions/{id}/similar`` (the web page calls these), the
``/v1/segment/text`` route (over one image's regions, :class:`RegionSet`) and the evaluation
harness. It validates the query once (:func:`check_text`, :func:`check_k`, the filters), turns it
into a vector and ranks with :func:`search_vector`: vector top ``k`` x ``oversample`` -> one SQL
fetch -> filters -> regions-before-scenes -> near-duplicate collapse -> per-image cap -> hits.

A *source* is anything with ``index`` (only its ``len`` is read), ``search_vectors(q, k,
**filters)``, ``fetch_regions(ids, path_prefix=...)`` and, for region queries,
``region_embedding(id)``: a :class:`~regionsearch.datadir.DataDir` or a :class:`RegionSet`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from .config import SearchConfig
from .errors import InvalidRequestError
from .masks import rle_iou
from .scene.query import parse_relational
from .types import JSON_SCHEMA_SPACE, Region, RegionRecord, SearchHit

#: the default largest ``k`` (``search.max_k`` of the config), the same for CLI and API
MAX_K = SearchConfig().max_k
#: a whole-image hit is dropped when a mask region of the same image is among the candidates
#: with a score at least ``whole score - WHOLE_MARGIN`` (see :func:`search_vector`)
WHOLE_MARGIN = 0.05
#: whole images answer object queries too (see :func:`search_vector`; ``search.scenes_for_objects``)
SCENES_FOR_OBJECTS = SearchConfig().scenes_for_objects
#: near-duplicate regions of one image (mask IoU >= this) collapse into the best-scoring one
DEDUPE_IOU = SearchConfig().dedupe_iou
#: ... and a mask lying this much inside a better hit's mask (or holding this much of it)
DEDUPE_CONTAIN = SearchConfig().dedupe_contain
#: ... and shown by its best-fitting member among those scoring within this of its best
DEDUPE_BEST_FIT = SearchConfig().dedupe_best_fit
#: (bonus per further near-duplicate, window below the group's best, most further masks counted)
DEDUPE_CONSENSUS = (SearchConfig().dedupe_consensus, SearchConfig().dedupe_consensus_within,
                    SearchConfig().dedupe_consensus_max)
DEDUPE_MERGE = SearchConfig().dedupe_merge


#: what ``SearchFilters.media`` (CLI ``--media``, API ``filters.media``) may be
MEDIA = ("all", "image", "video")


@dataclass(frozen=True)
class SearchFilters:
    """Filters applied to candidate regions.

    ``path_prefix``: image path starts with it. ``min_area``: minimum region area, as a fraction
    of the image area when <= 1, else in pixels. ``min_score``: minimum score of the hit (the
    similarity; with ``dedupe``, plus the group's consensus bonus, see :func:`search_vector`).
    ``per_image``: keep at most this many hits per image (best first). ``kinds``: region kinds to
    keep (``mask``, ``whole``). ``dedupe``: collapse near-duplicate regions of one image (mask IoU
    >= the config's ``search.dedupe_iou``) into the best-scoring one; ``False`` shows all.
    """

    path_prefix: str | None = None
    min_area: float | None = None
    min_score: float | None = None
    per_image: int | None = None
    kinds: tuple[str, ...] | None = None
    dedupe: bool = True
    media: str = "all"

    def validate(self) -> None:
        if self.media not in MEDIA:
            raise InvalidRequestError(f"media must be one of: {', '.join(MEDIA)} (got {self.media!r})")
        if self.min_area is not None and self.min_area < 0:
            raise InvalidRequestError("min_area must be >= 0")
        if self.per_image is not None and self.per_image < 1:
            raise InvalidRequestError("per_image must be >= 1")
        if self.kinds is not None and not set(self.kinds) <= {"mask", "whole"}:
            raise InvalidRequestError("kinds must be a subset of: mask, whole")


def _passes(row: Any, score: float, f: SearchFilters) -> bool:
    if f.min_score is not None and score < f.min_score:
        return False
    is_track = row.kind == "track"
    if (f.media == "image" and is_track) or (f.media == "video" and not is_track):
        return False
    if f.kinds is not None and not is_track and row.kind not in f.kinds:
        return False
    if f.min_area is not None:
        if f.min_area <= 1.0:
            total = float((row.image_width or 0) * (row.image_height or 0)) or 1.0
            if row.area / total < f.min_area:
                return False
        elif row.area < f.min_area:
            return False
    return True


def search_vector(datadir: Any, query: np.ndarray, k: int = 10, filters: SearchFilters | None = None,
                  oversample: int = 4, exclude: Sequence[int] = (),
                  whole_margin: float | None = WHOLE_MARGIN, max_k: int | None = MAX_K,
                  dedupe_iou: float | None = DEDUPE_IOU,
                  dedupe_contain: float | None = DEDUPE_CONTAIN,
                  dedupe_best_fit: float | None = DEDUPE_BEST_FIT,
                  scenes_for_objects: bool = SCENES_FOR_OBJECTS,
                  dedupe_consensus: tuple[float | None, float, int] = DEDUPE_CONSENSUS,
                  dedupe_merge: float | None = DEDUPE_MERGE) -> list[SearchHit]:
    """Top ``k`` regions for one L2-normalised query vector, after filters.

    Fetches ``k * oversample`` candidates, and more (x4 each round) while filters leave fewer
    than ``k`` hits and the index has more to give.

    Regions before scenes: every image also has a whole-image region (so scene-level queries
    work), but when one of its objects answers the query about as well, the object is the
    answer. A whole-image candidate is dropped when a mask region of the same image is among the
    candidates with a score >= its score - ``whole_margin`` (``None`` turns this off; it never
    applies when only whole-image regions are asked for). On the held-out shapes scenes
    without it, 4 of the 150 top-5 hits were whole images of a scene dominated by the queried
    object, ranked above that object's own mask. Across images: a query is about objects when a
    mask candidate scores at least as high as every whole-image candidate, and then no whole image
    is a hit (unless ``scenes_for_objects``): a whole image's score for an object query is mostly
    a bag-of-words match of its parts (a red square and a blue triangle for "red triangle"; a
    scene with one yellow square scored 0.74 for "orange circle", its mask -0.09), and on the
    held-out shapes scenes these filled the top-5 slots that near-duplicate collapse frees
    (benchmarks/dedupe_seeds.py). A query that some whole image answers better than every region
    (a scene-level query) keeps whole images, under the per-image margin.

    Near-duplicates: SAM's automatic masks often include the same object twice (two grid points,
    two crop layers). A candidate whose mask IoU with an already kept hit of the same image is
    >= ``dedupe_iou`` is dropped (the kept one scored higher), and so is a mask that lies
    >= ``dedupe_contain`` inside a kept mask or holds >= ``dedupe_contain`` of one (a part of the
    object, or the object plus a sliver: on 40 held-out shapes scenes the IoU rule alone left 12
    repeated instances in the 30 captions' top 10s, of 116 without dedupe); unless ``filters.dedupe`` is
    False or ``dedupe_iou`` is None. The collapsed masks are one group: it is shown by the member
    SAM says fits best (predicted IoU x stability) among those scoring within ``dedupe_best_fit``
    of its best (None: the best-scoring one), at that member's own score; a part of an object, or
    the object with a piece of its neighbour, often scores a little above the object itself.

    ``dedupe_consensus`` = (bonus, within, most) adds ``bonus`` to a group's score for each further
    member within ``within`` of its best (at most ``most``; bonus None: off), and a mask that
    duplicates two groups within ``dedupe_merge`` of their best merges them (None: never): see
    :class:`_Hits`. With ``filters.dedupe`` False every score is the plain similarity.
    """
    check_k(k, max_k)
    f = filters or SearchFilters()
    f.validate()
    _check_dedupe(dedupe_iou, dedupe_contain, dedupe_best_fit, dedupe_consensus, dedupe_merge)
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    total = max(1, len(datadir.index))
    want = min(total, max(k * max(1, oversample), k) + len(exclude))
    excluded = set(int(i) for i in exclude)
    return _rank(datadir, q, k, f, want, total, excluded, whole_margin, dedupe_iou if f.dedupe else None,
                 dedupe_contain, dedupe_best_fit, scenes_for_objects=scenes_for_objects,
                 consensus=dedupe_consensus if dedupe_consensus[0] else None, merge=dedupe_merge)


def _check_dedupe(iou: float | None, contain: float | None, best_fit: float | None,
                  consensus: tuple[float | None, float, int], merge: float | None) -> None:
    """:class:`InvalidRequestError` for a near-duplicate setting out of its range."""
    if iou is not None and not 0.0 < iou <= 1.0:
        raise InvalidRequestError(f"dedupe_iou must be in (0, 1], got {iou}")
    if contain is not None and not 0.0 < contain <= 1.0:
        raise InvalidRequestError(f"dedupe_contain must be in (0, 1], got {contain}")
    if best_fit is not None and not best_fit >= 0.0:
        raise InvalidRequestError(f"dedupe_best_fit must be >= 0, got {best_fit}")
    bonus, within, most = consensus
    if bonus is not None and not (bonus >= 0.0 and within >= 0.0 and int(most) >= 0):
        raise InvalidRequestError(f"dedupe_consensus needs bonus, within >= 0 and most >= 0, got {consensus}")
    if merge is not None and not merge >= 0.0:
        raise InvalidRequestError(f"dedupe_merge must be >= 0, got {merge}")


class _Dedupe:
    """The masks kept so far, per image: :meth:`matches` says which kept hits a mask duplicates:
    IoU >= ``iou`` with one of its masks, or (mask regions only) lying >= ``contain`` inside one
    or holding >= ``contain`` of one (COCO RLE, exact, no decoding). A mask kept with a ``floor``
    (a bridge, see :meth:`_Hits.offer`) is matched only by candidates scoring at least that."""

    def __init__(self, iou: float | None, contain: float | None):
        self.iou, self.contain = iou, contain
        #: per image: [rle, kind, group, floor] of every mask kept; group None for a "more like
        #: this" seed; floor None, or the lowest candidate score the mask is matched for
        self.kept: dict[int, list[list[Any]]] = {}

    def matches(self, row: Any, score: float | None = None) -> list[int | None]:
        """Every group (hit number, or None for a seed) that ``row`` (scoring ``score``) duplicates,
        best match first (an IoU match before a containment one, then by the overlap); empty when
        it is new."""
        if self.iou is None or row.kind == "track":
            return []  # a track's box and mask are one frame of it: overlap says nothing of the object
        kept = [e for e in self.kept.get(row.image_id, [])
                if e[3] is None or (score is not None and score >= e[3])]
        if not kept:
            return []
        iou = rle_iou([row.rle], [e[0] for e in kept])[0]
        match = np.where(iou >= self.iou, 1.0 + iou, 0.0)
        masks = [i for i, e in enumerate(kept) if e[1] == "mask"]
        if self.contain is not None and row.kind == "mask" and masks:
            rles = [kept[i][0] for i in masks]
            inside = rle_iou([row.rle], rles, crowd=[True] * len(rles))[0]  # of the new mask's area
            holds = rle_iou(rles, [row.rle], crowd=[True])[:, 0]             # of each kept mask's area
            both = np.maximum(inside, holds)
            match[masks] = np.maximum(match[masks], np.where(both >= self.contain, both, 0.0))
        out: list[int | None] = []
        for i in np.argsort(-match, kind="stable"):
            if match[i] <= 0.0:
                break
            if kept[i][2] not in out:
                out.append(kept[i][2])
        return out

    def group_of(self, row: Any) -> int | None | bool:
        """The group (hit number, or None for a seed) that ``row`` duplicates best; False when it is new."""
        found = self.matches(row)
        return found[0] if found else False

    def add(self, row: Any, group: int | None, floor: float | None = None) -> None:
        if self.iou is not None and row.kind != "track":
            self.kept.setdefault(row.image_id, []).append([row.rle, row.kind, group, floor])

    def relabel(self, image_id: int, old: int, new: int) -> None:
        for entry in self.kept.get(image_id, []):
            if entry[2] == old:
                entry[2] = new

    def keep(self, row: Any) -> bool:
        """Remember ``row`` (as its own group) unless it duplicates a kept mask."""
        if self.group_of(row) is not False:
            return False
        self.add(row, None)
        return True


def _fit(row: Any) -> float:
    """How well a mask fits one object by SAM's own estimate (predicted IoU x stability)."""
    return float(row.predicted_iou or 0.0) * float(row.stability_score or 0.0)


def _window(best_fit: float | None, consensus: tuple[float, float, int] | None, merge: float | None) -> float:
    """How far below a group's best score a later candidate can still change the group's score or
    the mask it is shown by (a better fit, an agreeing member, a merge), plus the most that
    consensus can add to a score."""
    bonus, within, most = consensus or (0.0, 0.0, 0)
    return max(best_fit or 0.0, within, merge or 0.0) + bonus * most


class _Hits:
    """Hits in score order, each a group of near-duplicate masks shown by one member: the best
    scoring one, or with ``best_fit`` the best fitting (:func:`_fit`) of the members that score
    within ``best_fit`` of it (SAM also returns an object's part, or the object with a piece of
    its neighbour, as a separate mask; CLIP may score the part a little higher than the object).

    Consensus: with ``consensus`` = (bonus, within, most) a group scores ``bonus`` more for each
    further member (at most ``most``) scoring within ``within`` of its best. SAM finding one
    object several times, each find matching the text, is evidence; a small CLIP's usual mistake
    is one lone mask of a wrong shape scoring as high. Without it, collapse handed the top-5 slots
    it freed to such masks (benchmarks/dedupe_seeds.py).

    Merge: SAM may return two halves of an object as masks that hardly overlap (IoU 0.25), each
    matching the text well, and later the whole object, which holds both (held-out seeds 90214 and
    90217 each had one such repeat in a top 10). With ``merge``, a mask that duplicates two groups
    and scores within ``merge`` of both groups' best makes them one group (the better one stays),
    shown by that mask when it fits better than the shown one, at its own score (the whole
    object, not a half). The order the three come in does not matter: when the whole object
    comes between the halves (it joins the first half's group), it stays a bridge, and the second
    half, duplicating it and scoring within ``merge`` of it, joins that group instead of making
    its own (seed 90217 with flip-averaged crop embeddings showed the object twice otherwise)."""

    def __init__(self, dedupe: _Dedupe, best_fit: float | None, per_image: int | None,
                 consensus: tuple[float, float, int] | None = None, merge: float | None = None):
        self.dedupe, self.best_fit, self.per_image, self.merge = dedupe, best_fit, per_image, merge
        self.bonus, self.within, self.most = consensus if consensus else (0.0, 0.0, 0)
        self.top: list[float] = []          # each group's best score
        self.shown: list[tuple[Any, float]] = []
        self.agree: list[int] = []          # each group's further members within ``within`` of its best
        self.live: list[int] = []           # the groups not merged into a better one, best first
        self.count: dict[int, int] = {}
        # a candidate this far below the k-th group's best can change no top-k group (see offer)
        drop = max(best_fit, merge or 0.0) if best_fit is not None else 0.0
        self.reach = drop + _window(best_fit, consensus, merge)

    def _rank(self, g: int) -> float:
        return self.shown[g][1] + self.bonus * min(self.most, self.agree[g])

    def _kth(self, k: int) -> float | None:
        """The k-th live group's best score; None when fewer."""
        return self.top[self.live[k - 1]] if len(self.live) >= k else None

    def _merge(self, groups: list[int], score: float, image_id: int) -> tuple[int, bool]:
        """Merge the live ``groups`` whose best is within ``merge`` above ``score`` into the best of
        them: (the group the candidate belongs to, whether it made that group of two)."""
        near = sorted(g for g in set(groups) if g in self.live and self.top[g] - score <= self.merge)
        if len(near) < 2:
            return groups[0], False
        keep = near[0]
        for g in near[1:]:
            self.live.remove(g)
            self.dedupe.relabel(image_id, g, keep)
            if self.per_image is not None:
                self.count[image_id] -= 1
            if self.bonus and self.top[g] >= self.top[keep] - self.within:
                self.agree[keep] += 1 + self.agree[g]  # the other part, and what agreed with it
            row, own = self.shown[g]
            shown = self.shown[keep][0]
            if (self.best_fit is not None and own >= self.top[keep] - self.best_fit and row.kind == "mask"
                    and shown.kind == "mask" and _fit(row) > _fit(shown)):
                self.shown[keep] = (row, own)
        return (keep, True) if groups[0] in near else (groups[0], False)

    def offer(self, row: Any, score: float, k: int) -> bool:
        """Take one candidate (candidates come best first); True once ``k`` hits are final.

        Final: every top-k group's rank is at least the k-th best score minus ``best_fit`` (its shown
        member's score), or minus ``merge`` (a merging mask shown); a later candidate (score s) ranks
        a new group at most s + bonus x most, and touches a group (a better fit, an agreeing member,
        a merge) only when that group's best is at most s + max(best_fit, within, merge), its rank
        at most that + bonus x most. A new group is kept (and counted per image) even when it
        cannot reach the top k: a later mask that duplicates it belongs to it, as it would in a
        search for more hits, so the top k are the same whatever k."""
        kth = self._kth(k)
        if kth is not None and ((self.best_fit is None and not self.bonus and self.merge is None)
                                or score < kth - self.reach):
            return True
        found = self.dedupe.matches(row, score)
        if found:
            group = found[0]
            if group is not None and row.kind == "mask":
                others, bridge = [g for g in found if g is not None], False
                if self.merge is not None and len(others) > 1:
                    group, bridge = self._merge(others, score, row.image_id)
                if self.bonus and score >= self.top[group] - self.within:
                    self.agree[group] += 1
                shown = self.shown[group][0]
                if (self.best_fit is not None and (bridge or score >= self.top[group] - self.best_fit)
                        and shown.kind == "mask" and _fit(row) > _fit(shown)):
                    self.shown[group] = (row, score)
                    self.dedupe.add(row, group)
                elif self.merge is not None and score >= self.top[group] - self.merge:
                    # a bridge: a later mask that duplicates this one, scoring within ``merge`` of
                    # it, joins the group, as it would have been merged had it come first
                    self.dedupe.add(row, group, floor=score - self.merge)
            return False
        if self.per_image is not None:
            if self.count.get(row.image_id, 0) >= self.per_image:
                return False
            self.count[row.image_id] = self.count.get(row.image_id, 0) + 1
        self.dedupe.add(row, len(self.top))
        self.top.append(score)
        self.shown.append((row, score))
        self.agree.append(0)
        self.live.append(len(self.top) - 1)
        return False

    def hits(self, k: int, min_score: float | None = None) -> list[SearchHit]:
        """The top ``k`` live groups' shown members at their groups' scores, those >= ``min_score``
        (the candidates were checked against a lower bound, see :func:`_rank`)."""
        order = sorted(self.live, key=lambda g: -self._rank(g))
        order = [g for g in order if min_score is None or self._rank(g) >= min_score][:k]
        return [self.shown[g][0].to_hit(self._rank(g)) for g in order]


def _rank(datadir: Any, q: np.ndarray, k: int, f: SearchFilters, want: int, total: int, excluded: set[int],
          whole_margin: float | None, dedupe_iou: float | None, dedupe_contain: float | None,
          best_fit: float | None = None, *, scenes_for_objects: bool = False,
          consensus: tuple[float, float, int] | None = None, merge: float | None = None) -> list[SearchHit]:
    # filters a vector store may apply itself (Milvus); rows are still checked below
    pushdown = {"path_prefix": f.path_prefix, "kinds": _pushdown_kinds(f),
                "min_area": int(np.ceil(f.min_area)) if f.min_area is not None and f.min_area > 1 else None}
    # "more like this": a region's near-duplicates (the same object found twice by SAM) are dropped
    # like near-duplicates among the hits, so they never come first with a score of ~1.0
    seeds = datadir.fetch_regions(sorted(excluded)) if excluded and dedupe_iou is not None else []
    if dedupe_iou is None:
        best_fit = consensus = merge = None
    min_score = f.min_score
    if min_score is not None:
        # min_score is for the hit's score, checked on the groups: a candidate below it may still
        # reach it with the consensus bonus, or be a member that counts for a group above it, the
        # better-fitting member that shows a group (at its own, maybe lower, score), or the mask
        # that merges two groups
        f = dataclasses.replace(f, min_score=min_score - _window(best_fit, consensus, merge))
    while True:
        scores, ids = datadir.search_vectors(q, want, **pushdown)
        pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in excluded]
        rows = {r.region_id: r for r in datadir.fetch_regions([i for i, _ in pairs], path_prefix=f.path_prefix)}
        dedupe = _Dedupe(dedupe_iou, dedupe_contain)
        for seed in seeds:
            dedupe.keep(seed)
        hits = _Hits(dedupe, best_fit, f.per_image, consensus, merge)
        scenes_out = _scenes_out(rows, pairs, f, whole_margin, scenes_for_objects)
        for rid, score in pairs:
            row = rows.get(rid)
            if row is None or rid in scenes_out or not _passes(row, score, f):
                continue
            if hits.offer(row, score, k):
                return hits.hits(k, min_score)
        exhausted = len(ids[0]) == 0 or int((ids[0] >= 0).sum()) < want or want >= total
        if exhausted:
            return hits.hits(k, min_score)
        want = min(total, want * 4)


def _scenes_out(rows: dict[int, Any], pairs: Sequence[tuple[int, float]], f: SearchFilters,
                margin: float | None, scenes_for_objects: bool) -> set[int]:
    """Ids of the whole-image candidates that give way to regions (see :func:`search_vector`):
    those with a mask candidate of their own image scoring >= their score - ``margin``, and, for
    an object query (a mask candidate scores >= every whole-image one), all of them unless
    ``scenes_for_objects``. Empty when ``margin`` is None or only whole images are asked for."""
    if margin is None or (f.kinds is not None and "mask" not in f.kinds):
        return set()
    best_mask: dict[int, float] = {}
    scenes: list[tuple[int, int, float]] = []
    for rid, score in pairs:
        row = rows.get(rid)
        if row is None or not _passes(row, score, f):
            continue
        if row.kind == "mask":
            best_mask[row.image_id] = max(best_mask.get(row.image_id, -np.inf), score)
        elif row.kind == "whole":
            scenes.append((rid, row.image_id, score))
    out = {rid for rid, image, score in scenes if best_mask.get(image, -np.inf) >= score - margin}
    object_query = bool(scenes) and bool(best_mask) and max(s for _, _, s in scenes) <= max(best_mask.values())
    if object_query and not scenes_for_objects:
        out.update(rid for rid, _, _ in scenes)
    return out


def _pushdown_kinds(f: SearchFilters) -> tuple[str, ...] | None:
    """The stored kinds a vector backend may keep (tracks are kind ``track``; ``kinds`` is for images)."""
    image_kinds = tuple(f.kinds) if f.kinds is not None else ("mask", "whole")
    if f.media == "video":
        return ("track",)
    if f.media == "image":
        return image_kinds
    return None if f.kinds is None else image_kinds + ("track",)


def check_k(k: int, max_k: int | None) -> int:
    """``k`` if it is between 1 and ``max_k`` (None: no upper bound), else :class:`InvalidRequestError`."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (max_k is not None and k > max_k):
        raise InvalidRequestError(f"k must be between 1 and {max_k}, got {k}" if max_k is not None
                                  else f"k must be at least 1, got {k}")
    return int(k)


def check_text(text: str | None, max_chars: int) -> str:
    """The query text without surrounding white space; :class:`InvalidRequestError` when blank or
    longer than ``max_chars``. The length limit applies to the text as sent (what the OpenAPI
    schema's maxLength states), and "blank" means what the schema's ``\\S`` pattern means."""
    text = text or ""
    if len(text) > max_chars:
        raise InvalidRequestError(f"the query text is longer than {max_chars} characters")
    text = text.strip(JSON_SCHEMA_SPACE)
    if not text:
        raise InvalidRequestError("the query text is empty")
    return text




class QueryEncoder(Protocol):
    """Turns a text or an image into a query vector (float32 ``(dim,)``, L2-normalised)."""

    def encode_text(self, text: str) -> np.ndarray: ...

    def encode_image(self, image: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Query:
    """What to search for: exactly one of ``text``, ``image`` (``HWC uint8 RGB``), ``region_id``
    (an indexed region; it is excluded from its own hits) or ``vector`` (float32 ``(dim,)``,
    L2-normalised)."""

    text: str | None = None
    image: np.ndarray | None = None
    region_id: int | None = None
    vector: np.ndarray | None = None


def search(source: Any, query: Query, k: int = 10, filters: SearchFilters | None = None, *,
           encoder: QueryEncoder | None = None, config: SearchConfig = SearchConfig(),
           max_k: int | None = None, max_text_chars: int | None = None) -> list[SearchHit]:
    """The ranked hits of ``query`` in ``source`` (see the module doc). ``max_k``/``max_text_chars``
    default to the config's (an API may set lower ones); ``encoder`` is needed for text and image
    queries."""
    given = [v is not None for v in (query.text, query.image, query.region_id, query.vector)]
    if sum(given) != 1:
        raise InvalidRequestError("give exactly one of: text, image, region id, vector")
    k = check_k(k, config.max_k if max_k is None else max_k)
    exclude: tuple[int, ...] = ()
    if query.text is not None:
        text = check_text(query.text, config.max_text_chars if max_text_chars is None else max_text_chars)
        rel = parse_relational(text) if hasattr(source, "regions_of_image") else None
        if rel is not None:  # "X left of Y": regionsearch.scene.relational (a RegionSet ranks plainly)
            from .scene.relational import relational_search

            f = filters or SearchFilters()
            f.validate()
            return relational_search(source, _need(encoder).encode_text, rel, k, f, config.oversample, search_vector)
        q = _need(encoder).encode_text(text)
    elif query.image is not None:
        q = _need(encoder).encode_image(query.image)
    elif query.region_id is not None:
        q, exclude = source.region_embedding(query.region_id), (int(query.region_id),)
    else:
        q = np.asarray(query.vector, np.float32)
    return search_vector(source, q, k, filters, config.oversample, exclude=exclude,
                         whole_margin=config.whole_margin, max_k=None, dedupe_iou=config.dedupe_iou,
                         dedupe_contain=config.dedupe_contain, dedupe_best_fit=config.dedupe_best_fit,
                         scenes_for_objects=config.scenes_for_objects,
                         dedupe_consensus=(config.dedupe_consensus, config.dedupe_consensus_within,
                                           config.dedupe_consensus_max), dedupe_merge=config.dedupe_merge)


def _need(encoder: QueryEncoder | None) -> QueryEncoder:
    if encoder is None:
        raise InvalidRequestError("text and image queries need a query encoder (the CLIP model)")
    return encoder


class RegionSet:
    """Regions held in memory (e.g. one image's automatic masks) as a search source: ids are
    positions in ``regions``; ``vectors`` is float32 ``(n, dim)``, L2-normalised."""

    def __init__(self, regions: Sequence[Region], vectors: np.ndarray, width: int, height: int):
        self.regions = list(regions)
        self.vectors = np.asarray(vectors, np.float32).reshape(len(self.regions), -1)
        #: ``search_vector`` reads only ``len(source.index)``
        self.index = self.vectors
        self.width, self.height = width, height

    def search_vectors(self, q: np.ndarray, k: int, **filters: Any) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` by inner product (ties keep region order); filters are left to the caller."""
        scores = (self.vectors @ np.asarray(q, np.float32).reshape(-1)) if len(self.regions) else np.zeros(0)
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order][None, :].astype(np.float32), order[None, :].astype(np.int64)

    def fetch_regions(self, ids: Sequence[int], **filters: Any) -> list[RegionRecord]:
        return [self.record(int(i)) for i in ids]

    def record(self, i: int) -> RegionRecord:
        r = self.regions[i]
        return RegionRecord(region_id=i, image_id=0, image_path="", bbox=tuple(r.bbox), area=int(r.area), rle=r.rle,
                            predicted_iou=r.predicted_iou, stability_score=r.stability_score, kind=r.kind,
                            image_width=self.width, image_height=self.height)
