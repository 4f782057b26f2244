"""Loading SAM 2.1 through Meta's ``sam2`` package: hub ids or local checkpoint + config.

The model is built the way ``sam2.build_sam.build_sam2`` builds it (hydra ``instantiate`` of the
model YAML, the same post-processing switches, strict state-dict loading), but from a YAML *file*
so that configs outside the sam2 package (our tiny test models) go through the same code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SamConfig
from ..errors import (
    CheckpointNotFoundError,
    ConfigError,
    MissingDependencyError,
    UnknownNameError,
    WeightsMismatchError,
)
from . import registry
from .device import resolve_device
from .hub import cached_hub_file, hub_download, require_hub

log = logging.getLogger(__name__)

#: hub id -> (config inside the sam2 package, checkpoint file name in the hub repo)
SAM_HUB_MODELS: dict[str, tuple[str, str]] = {
    "facebook/sam2.1-hiera-tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "facebook/sam2.1-hiera-small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "facebook/sam2.1-hiera-base-plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "facebook/sam2.1-hiera-large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}

#: decoder switches that ``build_sam2(apply_postprocessing=True)`` sets for image prediction
_POSTPROCESSING = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}

_LOCAL_HINT = "pass a local checkpoint with --sam-checkpoint PATH (models.sam.checkpoint in a config file)"


def _import_sam2() -> Any:
    try:
        import sam2  # noqa: F401
        from hydra.utils import instantiate  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("sam2", "segmentation with SAM 2.1") from exc
    return sam2


def resolve_path(value: str) -> Path:
    """Resolve ``tiny:NAME`` (the project's test models) or a plain path."""
    if value.startswith("tiny:"):
        from ..testing.tiny import tiny_path

        return tiny_path(value[len("tiny:"):], build_sam2_model)
    return Path(value).expanduser()


def _config_from_checkpoint_name(ckpt: Path) -> str | None:
    for cfg_name, filename in SAM_HUB_MODELS.values():
        if ckpt.name == filename:
            return cfg_name
    return None


def _resolve_config(name: str) -> Path:
    """A sam2 model YAML: a path, ``tiny:...``, or a name inside the sam2 package."""
    path = resolve_path(name)
    if path.is_file():
        return path
    sam2 = _import_sam2()
    inside = Path(sam2.__file__).parent / name
    if inside.is_file():
        return inside
    raise ConfigError(
        f"SAM config {name!r} is neither a file nor a config of the sam2 package "
        f"(e.g. {next(iter(SAM_HUB_MODELS.values()))[0]})"
    )


@dataclass(frozen=True)
class SamSource:
    """A resolved SAM 2.1 source: model YAML and checkpoint file (``None`` = random init)."""

    config: Path
    checkpoint: Path | None
    label: str


def resolve_sam_source(cfg: SamConfig) -> SamSource:
    """Turn a :class:`SamConfig` into local files, downloading from the hub when needed."""
    if cfg.checkpoint:
        ckpt = resolve_path(cfg.checkpoint)
        if not ckpt.is_file():
            raise CheckpointNotFoundError(
                f"SAM 2.1 checkpoint {ckpt} does not exist; pass the path of a .pt file from "
                f"the sam2 release (e.g. sam2.1_hiera_tiny.pt) or a hub id with --sam-model"
            )
        cfg_name = cfg.config or _config_from_checkpoint_name(ckpt)
        if cfg_name is None and cfg.model in SAM_HUB_MODELS:
            cfg_name = SAM_HUB_MODELS[cfg.model][0]
        if cfg_name is None:
            raise ConfigError(
                f"cannot tell which SAM 2.1 architecture {ckpt.name} is; pass its model YAML "
                f"with --sam-config (e.g. configs/sam2.1/sam2.1_hiera_t.yaml)"
            )
        return SamSource(_resolve_config(cfg_name), ckpt, label=str(cfg.checkpoint))
    if not cfg.model:
        raise ConfigError("no SAM 2.1 model given; set models.sam.model (a hub id) or models.sam.checkpoint")
    if cfg.model not in SAM_HUB_MODELS:
        raise UnknownNameError("SAM 2.1 model", cfg.model, list(SAM_HUB_MODELS))
    cfg_name, filename = SAM_HUB_MODELS[cfg.model]
    ckpt = hub_download(cfg.model, filename, cfg.cache_dir, "the SAM 2.1 checkpoint", _LOCAL_HINT)
    return SamSource(_resolve_config(cfg.config or cfg_name), ckpt, label=cfg.model)


def preflight_sam(cfg: SamConfig) -> None:
    """Before torch is imported: a hub SAM 2.1 that is not cached while the hub cannot be reached
    raises :class:`~regionsearch.errors.HubUnreachableError` in seconds (local files are checked
    when loaded)."""
    if cfg.checkpoint or cfg.model not in SAM_HUB_MODELS:
        return
    filename = SAM_HUB_MODELS[cfg.model][1]
    if cached_hub_file(cfg.model, [filename], cfg.cache_dir) is None:
        require_hub(f"the SAM 2.1 checkpoint ({cfg.model}/{filename})", _LOCAL_HINT)


def build_sam2_model(config_path: Path | str, checkpoint: Path | str | None = None,
                     device: str = "cpu", overrides: dict[str, Any] | None = None,
                     postprocessing: bool = True) -> Any:
    """Instantiate a ``SAM2Base`` from a model YAML file and load a checkpoint strictly.

    ``checkpoint`` may hold ``{"model": state_dict}`` (the sam2 release format) or a bare
    state dict. ``None`` leaves the random initialisation (training, benchmarks).
    """
    import torch
    from omegaconf import OmegaConf

    _import_sam2()
    from hydra.utils import instantiate

    cfg = OmegaConf.load(str(config_path))
    if "model" not in cfg:
        raise ConfigError(f"{config_path} is not a sam2 model config (no 'model' key)")
    if postprocessing:
        extra = cfg.model.get("sam_mask_decoder_extra_args") or {}
        cfg.model.sam_mask_decoder_extra_args = OmegaConf.merge(extra, _POSTPROCESSING)
    if overrides:
        cfg = OmegaConf.merge(cfg, {"model": overrides})
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    if checkpoint is not None:
        try:
            state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise WeightsMismatchError(f"{checkpoint} is not a readable PyTorch checkpoint ({exc})") from exc
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        load_state_dict_strict(model, state, str(checkpoint), str(config_path))
    return model.to(device).eval()


def load_state_dict_strict(model: Any, state: dict[str, Any], ckpt_label: str, cfg_label: str) -> None:
    """``load_state_dict`` that turns any mismatch into one :class:`WeightsMismatchError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        example = (shapes or missing or unexpected)[0]
        raise WeightsMismatchError(
            f"checkpoint {ckpt_label} does not fit config {cfg_label} ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shapes)} wrongly shaped tensors, e.g. {example!r}); "
            f"pass the model config that matches this checkpoint"
        )
    model.load_state_dict(state, strict=True)


def backbone_feature_sizes(model: Any) -> list[tuple[int, int]]:
    """Spatial sizes of the three backbone levels the image predictor uses.

    ``SAM2ImagePredictor`` hard-codes ``[(256, 256), (128, 128), (64, 64)]``, the sizes of a
    1024-px model; for other ``image_size`` values they scale with the backbone stride.
    """
    size = int(model.image_size)
    stride = int(getattr(model, "backbone_stride", 16))
    return [(size // (stride // 4),) * 2, (size // (stride // 2),) * 2, (size // stride,) * 2]


def make_image_predictor(model: Any, **kwargs: Any) -> Any:
    """A ``SAM2ImagePredictor`` that works for any model image size."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model, **kwargs)
    predictor._bb_feat_sizes = backbone_feature_sizes(model)
    return predictor


def load_sam2(cfg: SamConfig, device: str | None = "auto") -> Any:
    """The SAM 2.1 model of ``cfg`` on ``device``, loaded once per process."""
    dev = resolve_device(device)

    def build() -> Any:
        src = resolve_sam_source(cfg)
        log.info("loading SAM 2.1 %s (%s) on %s", src.label, src.config.name, dev)
        return build_sam2_model(src.config, src.checkpoint, dev)

    return registry.cached(("sam2", cfg, dev), build)
