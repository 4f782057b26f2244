"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these).

Request models are strict (no ``true`` for a number, no ``"3"`` for an integer): what the
OpenAPI schema calls invalid is rejected. Conventions: boxes in responses are ``XYWH`` pixels (as everywhere in regionsearch); boxes in
segmentation prompts are ``XYXY`` pixels (as SAM takes them); masks are COCO RLE
``{"size": [h, w], "counts": str}``; scores are cosine similarities (search) or SAM's predicted
IoU (segmentation).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from regionsearch.search import MAX_K

#: the documented bound of every ``k`` (the service checks its own ``max_k``, <= MAX_K)
K_DOC = f"number of hits: 1 to the service's max_k (by default {MAX_K}, the same maximum as the CLI's -k)"


PATH_PREFIX_DOC = "only images whose stored path starts with this string (case-sensitive)"
MIN_AREA_DOC = "minimum region area: fraction of the image (<= 1) or pixels (> 1)"
MIN_SCORE_DOC = ("minimum hit score: the similarity, plus its near-duplicate group's consensus bonus "
                 "when results are deduplicated (search.dedupe_consensus)")


def _integral(v: Any) -> Any:
    """JSON has one number type: ``94.0`` is an integer to JSON Schema, so it is one here too."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


#: an integer of a strict request model that also takes integral floats (never booleans or strings)
JsonInt = Annotated[int, BeforeValidator(_integral)]


class ErrorBody(BaseModel):
    """Every error: a one-sentence message; validation errors add ``detail``."""

    error: str
    detail: Optional[list[dict[str, Any]]] = None


class RLE(BaseModel):
    size: list[int] = Field(description="[height, width] in pixels")
    counts: str = Field(description="COCO compressed RLE counts")


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    path_prefix: Optional[str] = Field(default=None, max_length=4096, description=PATH_PREFIX_DOC)
    min_area: Optional[float] = Field(default=None, ge=0, description=MIN_AREA_DOC)
    min_score: Optional[float] = Field(default=None, ge=-1, le=1, description=MIN_SCORE_DOC)
    per_image: Optional[Annotated[int, Field(ge=1, le=1000), BeforeValidator(_integral)]] = Field(default=None, description="at most this many hits per image")
    dedupe: bool = Field(default=True, description="collapse near-duplicate regions of one image (mask IoU >= the "
                         "service's search.dedupe_iou, 0.8 by default, or one mask >= search.dedupe_contain, 0.5, "
                         "inside the other) into the best-scoring one; false shows all")
    media: Literal["all", "image", "video"] = Field(
        default="all", description="image: regions of images; video: object tracks of videos; all: both, ranked "
        "together (hits say which with kind: region or track)")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    text: str = Field(description="what to look for, e.g. 'red car'")
    k: JsonInt = Field(default=10, le=MAX_K, description=K_DOC)
    filters: SearchFiltersIn = Field(default_factory=SearchFiltersIn)


def _region_fields(*, ids: bool = True, score: str | None = None, image_size: bool = False,
                   hit: bool = False) -> dict[str, Any]:
    """The fields of :meth:`regionsearch.types.RegionRecord.to_json`, in its order: the one region
    shape, with its ids or not, a ``score`` (described by ``score``) after them, the image size last.
    A ``hit`` (``SearchHit.to_json`` of an image region) starts with ``kind: "region"`` and calls the
    region's own kind ``region_kind``."""
    fields: dict[str, Any] = {"kind": (Literal["region"], Field(description="an image region (tracks: kind "
                                                                           "track)"))} if hit else {}
    fields |= {"region_id": (int, ...), "image_id": (int, ...), "image_path": (str, ...)} if ids else {}
    if score is not None:
        fields["score"] = (float, Field(description=score))
    fields |= {"bbox": (list[float], Field(description="XYWH pixels")), "area": (int, ...), "mask": (RLE, ...),
               "predicted_iou": (Optional[float], ...), "stability_score": (Optional[float], ...)}
    if hit:
        fields["region_kind"] = (Literal["mask", "whole"], Field(description="mask: an object; whole: the whole image"))
    else:
        fields["kind"] = (Literal["mask", "whole", "track"], Field(
            description="mask: an object; whole: the whole image; track: a video object track (its best frame)"))
    if image_size:
        fields |= {"image_width": (Optional[int], ...), "image_height": (Optional[int], ...)}
    return fields


class RelationObject(BaseModel):
    region_id: int
    bbox: list[float] = Field(description="XYWH pixels")
    score: float = Field(description="cosine similarity of the object region to the object text")


class HitRelation(BaseModel):
    """Why a relational query ("X left of Y") matched: the relation and its object region."""

    predicate: str
    object: RelationObject
    scene: Optional[bool] = Field(default=None, description="true when the object is the whole image "
                                  "(\"X in Y\" where Y describes the scene)")


Hit = create_model("Hit", __doc__="An image region hit, the schema shared with the CLI (``SearchHit.to_json``); "
                   "``relation`` only in hits of relational queries.",
                   **_region_fields(score="cosine similarity of the region's and the query's CLIP embeddings, plus "
                                           "its near-duplicate group's consensus bonus when results are "
                                           "deduplicated (search.dedupe_consensus: 0.01 a further find)",
                                     hit=True),
                   relation=(Optional[HitRelation], None))
RegionOut = create_model("RegionOut", __doc__="One region (``RegionRecord.to_json``).", **_region_fields(image_size=True))
CandidateOut = create_model("CandidateOut", __doc__="A region of one image ranked by ``/v1/segment/text``.",
                            **_region_fields(ids=False, score="cosine similarity to the text", hit=True))


class VideoOut(BaseModel):
    id: int = Field(description="the video's id (its row among the indexed files)")
    path: str
    fps: float = Field(description="average frame rate")
    duration_s: Optional[float] = Field(description="seconds (null when the container does not say)")


class TrackFrameOut(BaseModel):
    frame: int = Field(description="the video's own decoded frame number, from 0")
    t: float = Field(description="the frame's presentation time, seconds")
    bbox: list[float] = Field(description="XYWH pixels of the upright frame")
    mask: RLE


class TrackHit(BaseModel):
    """A video object track hit (``SearchHit.to_json`` of a track)."""

    kind: Literal["track"]
    region_id: int = Field(description="the track's id (shared id space with image regions)")
    score: float = Field(description="cosine similarity of the track's and the query's CLIP embeddings")
    video: VideoOut
    t_start: float = Field(description="seconds")
    t_end: float = Field(description="seconds")
    frame_start: int
    frame_end: int
    best_frame: TrackFrameOut = Field(description="the frame that shows the object best (largest x best scored)")


class TrackOut(BaseModel):
    """One track with every stored frame (``GET /v1/tracks/{id}``, ``regionsearch track ID --json``)."""

    kind: Literal["track"]
    region_id: int
    video: VideoOut
    t_start: float
    t_end: float
    frame_start: int
    frame_end: int
    best_frame: TrackFrameOut
    frames: list[TrackFrameOut] = Field(description="the track's mask at every sampled frame it was seen on")


AnyHit = Annotated[Union[Hit, TrackHit], Field(discriminator="kind")]  # type: ignore[valid-type]


class SearchResponse(BaseModel):
    query: Union[str, dict[str, Any]] = Field(description="the query text, or a description of an image/region query")
    hits: list[AnyHit]  # type: ignore[valid-type]


class ImageOut(BaseModel):
    image_id: int
    path: str
    sha256: str
    width: Optional[int]
    height: Optional[int]
    status: str
    error: Optional[str]
    regions: list[RegionOut]


class ImageSummaryOut(BaseModel):
    image_id: int
    path: str
    width: Optional[int] = Field(description="pixels")
    height: Optional[int] = Field(description="pixels")
    regions: int = Field(description="mask regions (the whole-image region not counted)")
    indexed_at: Optional[str] = Field(description="when it was indexed, ISO 8601 UTC")


class ImageList(BaseModel):
    """A page of indexed images, newest first."""

    images: list[ImageSummaryOut]
    next_before: Optional[int] = Field(description="cursor of the next page (pass as before); null on the last page")
    total: int = Field(description="images matching the path prefix, all pages together")


class SegmentRequest(BaseModel):
    """A SAM 2.1 prompt on an indexed image (``image_id``) or on an image sent earlier
    (``image_key`` from an earlier response, while its features are cached)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    image_id: Optional[JsonInt] = Field(default=None, description="an indexed image")
    image_key: Optional[str] = Field(default=None, max_length=64, pattern="^[0-9a-f]{64}$",
                                     description="content hash returned by an earlier segment call")
    points: Optional[list[list[float]]] = Field(default=None, description="[[x, y], ...] pixels")
    labels: Optional[list[JsonInt]] = Field(default=None, description="one per point: 1 foreground, 0 background")
    box: Optional[Union[list[float], list[list[float]]]] = Field(
        default=None, description="[x0, y0, x1, y1] pixels, or a list of such boxes (one result set per box)")
    mask_input: Optional[str] = Field(
        default=None, max_length=64, pattern="^[0-9a-f]{1,64}$",
        description="logits_id of a mask returned by an earlier call on the same image: its low-res "
                    "logits (kept server-side) are the mask prompt, for refinement")
    multimask_output: bool = Field(default=True, description="three candidates sorted by score, else one")


class MaskOut(BaseModel):
    rle: RLE
    score: float = Field(description="SAM's predicted IoU")
    bbox: list[float] = Field(description="XYWH pixels")
    area: int
    prompt_index: int = Field(description="index of the box this mask answers (0 without boxes)")
    logits_id: str = Field(description="handle of this mask's low-res logits; pass as mask_input to refine")


class SegmentResponse(BaseModel):
    image_key: str = Field(description="content hash of the image; use it as image_key in later prompts")
    image_id: Optional[int]
    width: int
    height: int
    cached: bool = Field(description="the image embedding was reused from the cache")
    masks: list[MaskOut] = Field(description="per prompt, best score first")
    timings: dict[str, float] = Field(description="milliseconds per stage")


class SegmentTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    image_id: Optional[JsonInt] = None
    image_key: Optional[str] = Field(default=None, max_length=64, pattern="^[0-9a-f]{64}$")
    text: str
    k: JsonInt = Field(default=10, le=MAX_K, description=K_DOC)


class SegmentTextResponse(BaseModel):
    query: str
    image_key: str
    image_id: Optional[int]
    width: int
    height: int
    regions: list[CandidateOut]
    timings: dict[str, float]


class UploadResponse(BaseModel):
    image_id: int
    sha256: str
    status: Literal["indexed", "unchanged"]
    regions: int
    width: Optional[int]
    height: Optional[int]


class DeleteResponse(BaseModel):
    deleted: int
    image_id: int


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    models: dict[str, bool]
    index: dict[str, Any]
    writes_enabled: bool
    limits: dict[str, Optional[int]] = Field(description="the service's request limits: max_k (largest k; null: "
                                             "no bound), max_text_chars, max_upload_bytes")


class InfoOut(BaseModel):
    """What ``regionsearch info --json`` prints for the service's data directory (the service
    opens it read-only); ``failures`` only with ``errors=true``."""

    model_config = ConfigDict(extra="allow")

    data_dir: str
    manifest: dict[str, Any]
    images_indexed: int
    images_failed: int
    regions: int
    videos_indexed: int = Field(default=0, description="videos indexed into object tracks")
    tracks: int = Field(default=0, description="video object tracks (each is also a region)")
    vectors: int
    tombstones: int
    index_type: str
    index_factory: Optional[str]
    disk_bytes: int
    db_url: str
    db_backend: str
    generation: int
    saved_at: Optional[str]
    readonly: bool
    pipelines: list[dict[str, Any]]
    writer_running: bool
    failures: Optional[list[dict[str, Optional[str]]]] = Field(default=None, description="files that could not be indexed, "
                                                     "with reasons (only with errors=true)")


#: export formats of ``POST /v1/export`` (``regionsearch.export.FORMATS``)
ExportFormat = Literal["coco", "parquet", "csv"]
#: zero-shot label texts one export may ask for, and their length
MAX_EXPORT_LABELS, MAX_LABEL_CHARS = 256, 200


class ExportRequest(BaseModel):
    """A text query's hits as a COCO, Parquet or CSV file (what ``regionsearch export --query`` writes)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    text: str = Field(description="the query whose hits are exported, e.g. 'red car'")
    k: JsonInt = Field(default=100, le=MAX_K, description=K_DOC)
    format: ExportFormat = Field(default="coco", description="coco (instances JSON with RLE masks), parquet "
                                 "(one row per region with its CLIP embedding) or csv")
    path_prefix: Optional[str] = Field(default=None, max_length=4096,
                                       description="only images whose stored path starts with this string")
    labels: list[Annotated[str, Field(max_length=MAX_LABEL_CHARS)]] = Field(
        default_factory=list, max_length=MAX_EXPORT_LABELS,
        description="zero-shot categories: each region gets the closest of these texts (blank ones are "
                    "ignored); none: one 'region' category")
