"""The service's one settings object: defaults, overridden by ``REGIONSEARCH_*`` environment
variables (``REGIONSEARCH_API_KEY``, ``REGIONSEARCH_MAX_K``, ...), overridden by explicit values
(the ``serve`` command's options, tests)."""

from __future__ import annotations

import os
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from regionsearch.search import MAX_K

ENV_PREFIX = "REGIONSEARCH_"


class Settings(BaseModel):
    """Everything the API can be configured with (env: ``REGIONSEARCH_<FIELD>``, upper case)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: preset name (default, tiny, gpu) or YAML file (env REGIONSEARCH_CONFIG)
    config: Optional[str] = None
    #: data directory (env REGIONSEARCH_DATA_DIR; default ./regionsearch-data)
    data_dir: Optional[str] = None
    #: metadata database URL instead of the data dir's SQLite file (env REGIONSEARCH_DB)
    db: Optional[str] = None
    #: auto, cpu, cuda, cuda:N, mps (env REGIONSEARCH_DEVICE)
    device: Optional[str] = None
    #: key required in the ``X-API-Key`` header by write endpoints (upload, delete). Unset: those
    #: endpoints answer 503 and the service never writes the data directory (it only creates an
    #: empty one when none exists).
    api_key: Optional[SecretStr] = None
    #: allowed CORS origins (comma-separated in the env); empty = no cross-origin access
    cors_origins: list[str] = Field(default_factory=list)
    #: bytes of one uploaded image
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    #: pixels (width x height) of one image
    max_pixels: int = Field(default=40_000_000, gt=0)
    #: largest ``k`` of a search; default (None): the config's ``search.max_k`` (1000), the same
    #: maximum as the CLI's ``-k``
    max_k: Optional[int] = Field(default=None, ge=1, le=MAX_K)
    #: characters of a query text
    max_text_chars: int = Field(default=1000, ge=1)
    #: points of one segmentation prompt
    max_points: int = Field(default=64, ge=1)
    #: boxes of one segmentation prompt
    max_boxes: int = Field(default=16, ge=1)
    #: regions listed in one overlay request
    max_overlay_regions: int = Field(default=200, ge=1)
    #: image feature sets kept for prompted segmentation (LRU, keyed by content hash)
    segment_cache_size: int = Field(default=16, ge=1)
    #: mask-logit handles kept for refinement (LRU)
    logits_cache_size: int = Field(default=512, ge=1)
    #: video frames whose image features /v1/segment/video keeps (LRU, by video hash and frame)
    video_feature_cache_frames: int = Field(default=64, ge=1)
    #: sampled frames /v1/segment/video holds for one backward propagation
    video_max_backward_frames: int = Field(default=300, ge=1)
    #: decoded video frames kept for the frame endpoint and crops (LRU, by video and frame)
    video_frame_cache_frames: int = Field(default=24, ge=1)
    #: seconds between checks for index data committed by another process
    reload_interval_s: float = Field(default=1.0, ge=0)
    #: load the models during startup (else on first use)
    preload_models: bool = True
    #: log level of the service
    log_level: str = "info"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @property
    def writes_enabled(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults <- ``REGIONSEARCH_*`` env <- ``overrides`` (``None`` values are ignored)."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env and env[key] != "":
                data[name] = env[key]
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
