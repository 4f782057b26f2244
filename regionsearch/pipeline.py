"""The per-image pipeline: segment (SAM 2.1) -> crops -> CLIP embeddings.

Models load lazily, once per process (see :mod:`regionsearch.models.registry`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Config
from .masks import decode_rle, encode_rle, main_component, mask_to_bbox
from .types import Region


@dataclass
class StageTimes:
    """Seconds spent per stage (accumulated)."""

    decode: float = 0.0
    segment: float = 0.0
    embed: float = 0.0
    write: float = 0.0

    def add(self, other: "StageTimes") -> None:
        self.decode += other.decode
        self.segment += other.segment
        self.embed += other.embed
        self.write += other.write

    def as_dict(self) -> dict[str, float]:
        return {"decode": self.decode, "segment": self.segment, "embed": self.embed, "write": self.write}


class Pipeline:
    """Turns an ``HWC uint8 RGB`` image into regions and their embeddings."""

    def __init__(self, config: Config):
        self.config = config
        self._lock = threading.Lock()
        self._segmenter: Any = None
        self._embedder: Any = None

    @property
    def device(self) -> str:
        from .models.device import resolve_device

        return resolve_device(self.config.device)

    def preflight(self) -> None:
        """Fail in seconds, before torch loads, when a hub model is neither cached nor reachable."""
        from .models.sam import preflight_sam

        preflight_sam(self.config.models.sam)

    @property
    def sam_model(self) -> Any:
        from .models.sam import load_sam2

        return load_sam2(self.config.models.sam, self.config.device)

    @property
    def segmenter(self) -> Any:
        with self._lock:
            if self._segmenter is None:
                seg = self.config.segment
                if seg.generator == "fast":
                    from .segment.fast_amg import FastAutomaticSegmenter

                    self._segmenter = FastAutomaticSegmenter(self.sam_model, seg, self.config.embed.min_region_area,
                                                             coarse_to_fine=seg.coarse_to_fine,
                                                             coarse_step=seg.coarse_step)
                else:
                    from .segment.amg import AutomaticSegmenter

                    self._segmenter = AutomaticSegmenter(self.sam_model, seg, self.config.embed.min_region_area)
            return self._segmenter

    @property
    def embedder(self) -> Any:
        with self._lock:
            if self._embedder is None:
                from .embed.clip import ClipEmbedder
                from .models.clip import load_clip

                bundle = load_clip(self.config.models.clip, self.config.device)
                self._embedder = ClipEmbedder(bundle, self.config.embed.batch_size,
                                              self.config.search.text_cache_size,
                                              text_dtype=self.config.search.text_dtype)
            return self._embedder

    @property
    def embedder_loaded(self) -> bool:
        """Whether the CLIP model is loaded (without loading it)."""
        return self._embedder is not None

    def encode_text(self, text: str) -> np.ndarray:
        """A query text's embedding (float32 ``(dim,)``, L2-normalised)."""
        return self.embedder.embed_texts([text])[0]

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """A whole query image's (or crop's) embedding, ``HWC uint8 RGB`` in, float32 ``(dim,)`` out."""
        from .embed.crops import _fill_colour, square_resize

        emb = self.embedder
        return emb.embed_images([square_resize(image, emb.image_size, _fill_colour(emb.bundle.mean))])[0]

    def crops(self, image: np.ndarray, regions: list[Region]) -> list[np.ndarray]:
        from .embed.crops import region_crop

        cfg = self.config.embed
        emb = self.embedder
        out = []
        for region in regions:
            mask = None if region.kind == "whole" else decode_rle(region.rle)
            out.append(region_crop(image, mask, region.bbox, cfg.crop, emb.image_size, cfg.context,
                                   cfg.blur_sigma, emb.bundle.mean))
        return out

    def segment(self, image: np.ndarray) -> list[Region]:
        """The regions to store for ``image`` (``HWC uint8 RGB``): the segmenter's, each mask cut to
        its largest connected component when ``segment.drop_fragments`` (see the config)."""
        regions = self.segmenter.segment(image)
        if not self.config.segment.drop_fragments:
            return regions
        return [_main_part(r) if r.kind == "mask" else r for r in regions]

    def process(self, image: np.ndarray, times: StageTimes | None = None) -> tuple[list[Region], np.ndarray]:
        """Segment ``image`` and embed every kept region; ``(regions, (n, dim) float32)``."""
        t0 = time.perf_counter()
        regions = self.segment(image)
        t1 = time.perf_counter()
        vectors = self.embedder.embed_images(self.crops(image, regions))
        t2 = time.perf_counter()
        if times is not None:
            times.segment += t1 - t0
            times.embed += t2 - t1
        return regions, vectors

    def settings(self) -> dict[str, Any]:
        """What changes an image's regions and vectors besides the embedder (the manifest's
        ``segmenter`` and ``crop``), from the config alone: no model loads."""
        seg = self.config.segment
        return {"segmenter": {"sam": dataclasses.asdict(self.config.models.sam) | {"cache_dir": None},
                              "amg": seg.amg_params(), "max_regions": seg.max_regions, "generator": seg.generator,
                              "coarse_to_fine": seg.coarse_to_fine, "coarse_step": seg.coarse_step,
                              "whole_image_region": seg.whole_image_region, "drop_fragments": seg.drop_fragments},
                "crop": dataclasses.asdict(self.config.embed)}

    def manifest(self) -> Any:
        """The data-directory manifest describing this pipeline (loads CLIP for its dimension)."""
        from .manifest import Manifest

        from .config import list_presets

        clip = self.config.models.clip
        preset = self.config.name if self.config.name in list_presets() else None
        return Manifest(embedder=clip.model, pretrained=clip.pretrained, dim=self.embedder.dim, metric="ip",
                        index_factory=self.config.index.factory, **self.settings(),
                        pipeline_key=self.config.pipeline_key(), preset=preset)


def _main_part(region: Region) -> Region:
    """``region`` with only its mask's largest connected component (box and area follow)."""
    mask = decode_rle(region.rle)
    main = main_component(mask)
    if main is mask or main.sum() == mask.sum():
        return region
    return dataclasses.replace(region, rle=encode_rle(main), bbox=mask_to_bbox(main), area=int(main.sum()))
