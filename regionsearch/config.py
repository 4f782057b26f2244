"""Typed configuration with defaults, loaded from ``configs/*.yaml`` presets, files and env.

A config is a tree of frozen dataclasses. Presets are partial YAML documents merged over the
defaults; unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .errors import ConfigError, UnknownNameError

CropStrategy = Literal["box", "mask", "blur"]
CROP_STRATEGIES = ("box", "mask", "blur")
TEXT_DTYPES = ("auto", "float32", "bfloat16")
GENERATORS = ("fast", "sam2")
#: how a video track's mask moves between sampled frames (regionsearch.video.tracks): ``chain``
#: (image predictor prompted from the previous mask) or ``memory`` (SAM 2.1's video memory)
PROPAGATORS = ("chain", "memory")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts")
SEGMENT_DTYPES = ("auto", "float32", "bfloat16", "float16")

#: sam2 ``SAM2AutomaticMaskGenerator`` parameters of each named preset. ``None`` in the user's
#: config means "take the preset's value".
AMG_PRESETS: dict[str, dict[str, Any]] = {
    "fast": dict(points_per_side=16, points_per_batch=256, pred_iou_thresh=0.8,
                 stability_score_thresh=0.92, stability_score_offset=1.0, box_nms_thresh=0.7,
                 crop_n_layers=0, crop_n_points_downscale_factor=1, min_mask_region_area=0,
                 use_m2m=False, multimask_output=True),
    "default": dict(points_per_side=32, points_per_batch=64, pred_iou_thresh=0.8,
                    stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7,
                    crop_n_layers=0, crop_n_points_downscale_factor=1, min_mask_region_area=0,
                    use_m2m=False, multimask_output=True),
    "dense": dict(points_per_side=64, points_per_batch=128, pred_iou_thresh=0.7,
                  stability_score_thresh=0.92, stability_score_offset=0.7, box_nms_thresh=0.7,
                  crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=25,
                  use_m2m=True, multimask_output=True),
}


@dataclass(frozen=True)
class SamConfig:
    """SAM 2.1 source: a hub id (``facebook/sam2.1-hiera-tiny`` ...) *or* a local checkpoint.

    ``config`` is a sam2 model YAML: a name inside the sam2 package
    (``configs/sam2.1/sam2.1_hiera_t.yaml``) or a file path. It is inferred from the hub id or
    the checkpoint's file name when omitted. Paths may use the ``tiny:`` scheme for the project's
    own test models.
    """

    model: str | None = "facebook/sam2.1-hiera-tiny"
    checkpoint: str | None = None
    config: str | None = None
    cache_dir: str | None = None


@dataclass(frozen=True)
class ClipConfig:
    """open_clip source: ``model`` is a built-in name (``ViT-B-32``), ``hf-hub:org/repo``,
    ``local-dir:/path`` or a ``tiny:`` path; ``pretrained`` is a tag (``datacomp_xl_s13b_b90k``)
    or a local weights file."""

    model: str = "ViT-B-32"
    pretrained: str | None = "datacomp_xl_s13b_b90k"
    cache_dir: str | None = None


@dataclass(frozen=True)
class ModelsConfig:
    sam: SamConfig = field(default_factory=SamConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)


@dataclass(frozen=True)
class SegmentConfig:
    """Automatic mask generation. Each ``None`` takes the value of ``preset`` (see AMG_PRESETS)."""

    preset: str = "default"
    points_per_side: int | None = None
    points_per_batch: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    stability_score_offset: float | None = None
    box_nms_thresh: float | None = None
    crop_n_layers: int | None = None
    crop_n_points_downscale_factor: int | None = None
    min_mask_region_area: int | None = None
    #: keep only each mask's largest connected component (its box and area follow). On 40
    #: held-out shapes scenes 215 of 358 matched tiny-model masks had stray fragments; dropping
    #: them raised box IoU with the true instance from 0.647 to 0.892 and mask IoU from 0.922 to
    #: 0.936 (benchmarks/region_fragments.py, results/region_fragments.json)
    drop_fragments: bool = True
    use_m2m: bool | None = None
    multimask_output: bool | None = None
    #: keep at most this many masks per image (best by predicted_iou * stability_score)
    max_regions: int = 100
    #: ``fast``: the project's generator (low-resolution filtering, coarse-to-fine prompting;
    #: see regionsearch/segment/fast_amg.py); ``sam2``: sam2's SAM2AutomaticMaskGenerator as is
    generator: str = "fast"
    #: with the fast generator: prompt a grid ``coarse_step`` times sparser first, then full-grid
    #: points only where the finest accepted mask of no coarse prompt covers them. Off by default:
    #: measured (benchmarks/index_throughput.py) it saved ~10% of the prompts on held-out shapes
    #: scenes at 0.977 agreement with sam2, and nothing with random-weight hiera-tiny on photos;
    #: the one-grid mode returns exactly sam2's masks
    coarse_to_fine: bool = False
    coarse_step: int = 4
    #: dtype of the fast generator's mask decoder and of interactive prompts (SEGMENT_DTYPES):
    #: ``auto`` = bfloat16 on CUDA and on CPUs that multiply it natively (AVX512-BF16 / AMX),
    #: float32 elsewhere; ``float32`` is the exact path (sam2's masks up to summation order).
    #: Measured in benchmarks/index_throughput.py (agreement with sam2 and speed per dtype)
    dtype: str = "auto"
    #: dtype of SAM 2.1's image encoder (the fixed cost of each image; SEGMENT_DTYPES). float32 by
    #: default: the exact path. bfloat16 autocast costs 0.64x the CPU time of float32 for
    #: hiera-tiny on a CPU with native bfloat16 and 7.7x MORE on one without
    #: (benchmarks/results/encoder_precision*.json); ``auto`` picks bfloat16 only where it is native
    encoder_dtype: str = "float32"
    #: ``torch.compile`` the mask decoder (fixed padded prompt batches; inductor cache in the user
    #: cache dir). Compiling costs tens of seconds per process, so only long indexing jobs should
    #: turn it on; short commands never compile
    compile: bool = False
    #: also store one region covering the whole image, so scene-level queries work
    whole_image_region: bool = True

    def amg_params(self) -> dict[str, Any]:
        """The resolved sam2 AMG keyword arguments (preset values overridden by explicit ones)."""
        if self.preset not in AMG_PRESETS:
            raise UnknownNameError("AMG preset", self.preset, list(AMG_PRESETS))
        params = dict(AMG_PRESETS[self.preset])
        for key in params:
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        return params


@dataclass(frozen=True)
class EmbedConfig:
    """Region crops and CLIP encoding.

    ``crop``: ``box`` (box + context), ``mask`` (background filled with the mean colour),
    ``blur`` (background blurred outside the mask, with context). ``context`` is the padding
    added around the box as a fraction of its larger side. Regions smaller than
    ``min_region_area`` pixels are not embedded (and not stored).
    """

    crop: str = "mask"
    context: float = 0.15
    blur_sigma: float = 8.0
    min_region_area: int = 64
    batch_size: int = 32


@dataclass(frozen=True)
class IndexConfig:
    """Vector index: ``factory`` is ``auto`` (flat -> HNSW -> IVF-PQ by size) or a faiss
    factory string such as ``HNSW32,Flat``. A writing data dir saves the index and manifest after
    ``save_every`` new or removed regions (or a 5 % growth of the index, whichever is larger) or
    ``save_interval_s`` seconds with something unsaved."""

    factory: str = "auto"
    save_every: int = 4096
    save_interval_s: float = 60.0


@dataclass(frozen=True)
class IngestConfig:
    """File discovery and decoding limits."""

    max_pixels: int = 64_000_000
    max_bytes: int = 256 * 1024 * 1024
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
    #: images per transaction
    batch_images: int = 8
    #: reader threads that read, hash and decode ahead of the models (0 = inline)
    workers: int = 1


@dataclass(frozen=True)
class SearchConfig:
    """Query path (:func:`regionsearch.search.search`): ``max_k`` is the largest number of hits one
    query may ask for, the same for the CLI (``-k``) and the API (``k``); ``max_text_chars`` the
    longest query text; ``oversample`` x k candidates are fetched from the vector index before
    filters."""

    max_k: int | None = 1000
    max_text_chars: int = 1000
    oversample: int = 4
    text_cache_size: int = 1024
    #: regions before scenes: see regionsearch.search.search_vector (null: off)
    whole_margin: float | None = 0.05
    #: false: an object query (a region scores at least as high as every whole image) gets no
    #: whole-image hits; true: whole images are kept under ``whole_margin`` alone (before issue #17)
    scenes_for_objects: bool = False
    #: near-duplicate collapse: a hit whose mask IoU with a better hit of the same image is >= this
    #: is dropped (SearchFilters.dedupe=False, CLI --no-dedupe, API filters.dedupe=false show all;
    #: null: off)
    dedupe_iou: float | None = 0.8
    #: ... and a mask region lying >= this fraction inside a better hit's mask, or holding >= this
    #: fraction of it (a part of the object; null: IoU only). Set on the held-out shapes scenes:
    #: 0.9 left 1 repeated instance in the 30 captions' top 10s (two halves of one star: IoU 0.59,
    #: 72% / 77% inside each other); 0.7 none on the first 12 corpora, then 1 on seed 90225 (two
    #: halves of a hexagon, 51% inside each other, scoring 0.89 and 0.72: too far apart for
    #: ``dedupe_merge``); 0.5 none on 18 corpora, P@5 equal or higher on every one
    #: (benchmarks/dedupe_seeds.py)
    dedupe_contain: float | None = 0.5
    #: a collapsed group is shown by its best-fitting mask (SAM predicted IoU x stability) among
    #: the members scoring within this of the group's best (null: the best-scoring member). A part
    #: of an object often scores a little above the whole object (benchmarks/dedupe_seeds.py)
    dedupe_best_fit: float | None = 0.02
    #: consensus: a collapsed group ranks (and scores) this much higher for each further mask of
    #: it, at most ``dedupe_consensus_max``, that scores within ``dedupe_consensus_within`` of the
    #: group's best: SAM finding one object several times, every find matching the text, is
    #: evidence; the usual mistake of a small CLIP is a lone mask of a wrong shape scoring as
    #: high (null: groups rank by their shown mask's score alone). Without it, collapse gave the
    #: freed top-5 slots to those; benchmarks/dedupe_seeds.py
    dedupe_consensus: float | None = 0.01
    dedupe_consensus_within: float = 0.02
    dedupe_consensus_max: int = 2
    #: a mask that duplicates two collapsed groups (the whole object, after two of its parts made a
    #: group each) and scores within this of both groups' best merges them (null: never)
    dedupe_merge: float | None = 0.05
    #: query text tower weights (TEXT_DTYPES): ``auto`` = bfloat16 where the hardware multiplies
    #: it natively, else float32 (the tower is memory-bound on CPU: ViT-B-32 10.5 vs 21.4 ms per
    #: query, api_latency.py --breakdown); ``float32`` is exactly open_clip's encode_text
    text_dtype: str = "auto"


@dataclass(frozen=True)
class SceneConfig:
    """Scenes (``regionsearch scene``): zero-shot labels and object clean-up.

    ``vocabulary``: label names (empty: the built-in list of common object names, see
    :mod:`regionsearch.scene.vocabulary`); ``templates``: prompt templates with ``{}`` for the
    name, averaged in embedding space (empty: the built-in photo templates). ``label_scale``
    multiplies cosine similarities before the softmax that gives ``label_score`` (CLIP's logit
    scale). ``duplicate_iou``: of two masks with IoU >= it, only the better is an object;
    ``part_fraction``: a mask at least this much inside a larger one of the same label is a part;
    ``drop_fragments``: so is one inside a larger one of another label with a higher SAM quality.
    """

    vocabulary: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    label_scale: float = 100.0
    duplicate_iou: float = 0.8
    part_fraction: float = 0.9
    drop_fragments: bool = True


@dataclass(frozen=True)
class VideoConfig:
    """Videos as object tracks (:mod:`regionsearch.video`).

    ``sample_fps``: frames looked at per second of presentation time; ``keyframe_every``:
    sampled frames between automatic-mask keyframes (there is one at every scene cut too);
    ``propagator``: how masks move between sampled frames (``PROPAGATORS``); ``n_crops``: mask
    crops averaged into each track's vector; ``match_iou``: mask IoU for a keyframe mask to
    continue a track; ``max_pixels``: per frame; ``max_bytes``: per file.
    """

    sample_fps: float = 2.0
    keyframe_every: int = 4
    propagator: str = "chain"
    n_crops: int = 4
    match_iou: float = 0.5
    max_pixels: int = 4096 * 2304
    max_bytes: int = 16 * 1024**3
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Config:
    """The whole configuration of one regionsearch pipeline."""

    name: str = "default"
    device: str = "auto"
    models: ModelsConfig = field(default_factory=ModelsConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def __post_init__(self) -> None:
        if self.embed.crop not in CROP_STRATEGIES:
            raise UnknownNameError("crop strategy", self.embed.crop, CROP_STRATEGIES)
        if self.segment.preset not in AMG_PRESETS:
            raise UnknownNameError("AMG preset", self.segment.preset, list(AMG_PRESETS))
        if self.segment.generator not in GENERATORS:
            raise UnknownNameError("mask generator", self.segment.generator, GENERATORS)
        if self.segment.dtype not in SEGMENT_DTYPES:
            raise UnknownNameError("segment dtype", self.segment.dtype, SEGMENT_DTYPES)
        if self.segment.encoder_dtype not in SEGMENT_DTYPES:
            raise UnknownNameError("segment encoder dtype", self.segment.encoder_dtype, SEGMENT_DTYPES)
        if self.search.text_dtype not in TEXT_DTYPES:
            raise UnknownNameError("text tower dtype", self.search.text_dtype, TEXT_DTYPES)
        if self.video.propagator not in PROPAGATORS:
            raise UnknownNameError("propagator", self.video.propagator, PROPAGATORS)
        v = self.video
        if not v.sample_fps > 0 or v.keyframe_every < 1 or v.n_crops < 1 or not 0 < v.match_iou <= 1:
            raise ConfigError(f"video needs sample_fps > 0, keyframe_every >= 1, n_crops >= 1 and 0 < match_iou <= 1 "
                              f"(got {v.sample_fps}, {v.keyframe_every}, {v.n_crops}, {v.match_iou})")

    def pipeline_key(self) -> str:
        """A short hash of everything that changes the stored regions or vectors of an image.

        Re-indexing an image is skipped only when its content hash *and* this key match.
        """
        payload = {
            "sam": dataclasses.asdict(self.models.sam) | {"cache_dir": None},
            "clip": dataclasses.asdict(self.models.clip) | {"cache_dir": None},
            "amg": self.segment.amg_params(),
            "max_regions": self.segment.max_regions,
            # v2: the fast generator's exact filters (its masks changed); the coarse step when used
            "generator": [self.segment.generator, self.segment.coarse_to_fine, "v2"]
            + ([self.segment.coarse_step] if self.segment.coarse_to_fine else []),
            "whole": self.segment.whole_image_region,
            "embed": {k: v for k, v in dataclasses.asdict(self.embed).items() if k != "batch_size"},
        }
        if self.segment.encoder_dtype != "float32":  # absent when exact: older keys stay valid
            payload["encoder_dtype"] = self.segment.encoder_dtype
        if self.segment.drop_fragments:  # absent when off: keys of data dirs made before it stay valid
            payload["fragments"] = "main"
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def video_settings(self) -> dict[str, Any]:
        """The ``video`` settings that change a video's tracks or their vectors."""
        v = self.video
        return {"sample_fps": v.sample_fps, "keyframe_every": v.keyframe_every, "propagator": v.propagator,
                "n_crops": v.n_crops, "match_iou": v.match_iou}

    def video_pipeline_key(self) -> str:
        """The pipeline key of videos: the image pipeline's (models, segmenter, crops) plus
        :meth:`video_settings`, so a video is tracked again when any of them changes, while the
        images' key (and every existing data dir's) stays what it was."""
        blob = json.dumps({"image": self.pipeline_key(), "video": self.video_settings()}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated dataclass field type (recursively, strictly)."""
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    origin = get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(value)
    args = [a for a in get_args(tp) if a is not type(None)]
    if value is None:
        return None
    if tp is float or float in args:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is int or int in args:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool or bool in args:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is str or str in args:
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))} in {where}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def config_dirs() -> list[Path]:
    """Where named presets are looked up: ``$REGIONSEARCH_CONFIG_DIR``, then the bundled presets."""
    dirs = []
    if os.environ.get("REGIONSEARCH_CONFIG_DIR"):
        dirs.append(Path(os.environ["REGIONSEARCH_CONFIG_DIR"]))
    dirs.append(Path(__file__).resolve().parent.parent / "configs")
    try:
        from importlib.resources import files

        dirs.append(Path(str(files("regionsearch.configs"))))
    except (ModuleNotFoundError, TypeError):
        pass
    return dirs


def list_presets() -> list[str]:
    names: set[str] = set()
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return data


def _resolve_preset(name_or_path: str) -> tuple[str, dict[str, Any]]:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        data = _read_yaml(p)
        default_name = p.stem
    else:
        for d in config_dirs():
            candidate = d / f"{name_or_path}.yaml"
            if candidate.is_file():
                data = _read_yaml(candidate)
                break
        else:
            raise UnknownNameError("config preset", name_or_path, list_presets())
        default_name = name_or_path
    parent = data.pop("extends", None)
    if parent:
        _, base = _resolve_preset(parent)
        data = _merge(base, data)
    data.setdefault("name", default_name)
    return default_name, data


def load_config(name_or_path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load a preset by name (``default``, ``tiny``, ...) or a YAML file, apply ``overrides``
    (a nested dict), then the environment (``REGIONSEARCH_DEVICE``)."""
    name = name_or_path or os.environ.get("REGIONSEARCH_CONFIG") or "default"
    _, data = _resolve_preset(name)
    if overrides:
        data = _merge(data, overrides)
    if os.environ.get("REGIONSEARCH_DEVICE"):
        data["device"] = os.environ["REGIONSEARCH_DEVICE"]
    return _build(Config, data)
