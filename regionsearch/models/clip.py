"""Loading CLIP through open_clip: built-in names + pretrained tags, ``hf-hub:`` repos,
``local-dir:`` folders, local weight files, and ``tiny:`` (the project's test models)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ClipConfig
from ..errors import (
    CheckpointNotFoundError,
    HubUnreachableError,
    MissingDependencyError,
    UnknownNameError,
    WeightsMismatchError,
)
from . import registry
from .device import resolve_device

log = logging.getLogger(__name__)

_LOCAL_HINT = ("pass a local weights file with --clip-pretrained PATH, or a folder holding "
               "open_clip_config.json + weights with --clip-model local-dir:PATH")


@dataclass
class ClipBundle:
    """A loaded open_clip model with its image preprocessing and tokenizer.

    ``image_size`` is the side of the square input, ``mean``/``std`` the normalisation,
    ``dim`` the embedding dimension, ``name``/``pretrained`` identify the weights (they go into
    the index manifest).
    """

    model: Any
    tokenizer: Any
    preprocess: Any
    name: str
    pretrained: str | None
    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    device: str


def _import_open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError("open-clip-torch", "region embedding with CLIP") from exc
    return open_clip


HF_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                   "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")


def _resolve_model_name(name: str, cache_dir: str | None) -> str:
    """``tiny:`` and ``hf-hub:`` become ``local-dir:`` folders, so config, weights and tokenizer
    all come from the same local files (open_clip's tokenizer lookup ignores ``cache_dir``)."""
    if name.startswith("tiny:"):
        from ..testing.tiny import tiny_path
        from .sam import build_sam2_model

        return "local-dir:" + str(tiny_path(name[len("tiny:"):], build_sam2_model))
    if name.startswith("hf-hub:"):
        from ..errors import ModelLoadError
        from .hub import hub_download

        repo = name[len("hf-hub:"):]
        config = hub_download(repo, "open_clip_config.json", cache_dir, "the CLIP config", _LOCAL_HINT)
        for filename in HF_WEIGHT_NAMES[:-1]:
            try:
                hub_download(repo, filename, cache_dir, "the CLIP weights", _LOCAL_HINT)
                return "local-dir:" + str(config.parent)
            except ModelLoadError:
                continue
        hub_download(repo, HF_WEIGHT_NAMES[-1], cache_dir, "the CLIP weights", _LOCAL_HINT)
        return "local-dir:" + str(config.parent)
    return name


def _check_names(open_clip: Any, cfg: ClipConfig, model_name: str) -> str | None:
    """Validate built-in names and tags; return the ``pretrained`` argument for open_clip."""
    if model_name.startswith("local-dir:"):
        folder = Path(model_name[len("local-dir:"):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise CheckpointNotFoundError(
                f"{folder} has no open_clip_config.json; a local-dir: CLIP model is a folder "
                f"with open_clip_config.json and open_clip_model.safetensors"
            )
        return None
    if model_name not in open_clip.list_models():
        raise UnknownNameError("CLIP model", model_name, open_clip.list_models())
    pretrained = cfg.pretrained
    if pretrained is None:
        return None
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        return pretrained
    looks_like_path = any(ch in pretrained for ch in "/\\.") or pretrained.startswith("~")
    if looks_like_path:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise CheckpointNotFoundError(
                f"CLIP weights file {path} does not exist; pass an existing file or one of the "
                f"pretrained tags of {model_name}: {', '.join(tags)}"
            )
        return str(path)
    raise UnknownNameError(f"pretrained tag for {model_name}", pretrained, tags)


def load_clip(cfg: ClipConfig, device: str | None = "auto") -> ClipBundle:
    """The open_clip model of ``cfg`` on ``device``, loaded once per process."""
    dev = resolve_device(device)
    return registry.cached(("clip", cfg, dev), lambda: _load_clip(cfg, dev))


def _load_clip(cfg: ClipConfig, dev: str) -> ClipBundle:
    import torch

    open_clip = _import_open_clip()
    model_name = _resolve_model_name(cfg.model, cfg.cache_dir)
    pretrained = _check_names(open_clip, cfg, model_name)
    if pretrained is not None and pretrained == cfg.pretrained:
        _require_cached_or_hub(open_clip, model_name, pretrained, cfg.cache_dir)
    log.info("loading CLIP %s (%s) on %s", cfg.model, cfg.pretrained, dev)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=dev, cache_dir=cfg.cache_dir
        )
    except RuntimeError as exc:
        text = str(exc)
        if _is_hub_error(exc) or text.startswith("Failed to download"):
            raise HubUnreachableError(
                f"could not get CLIP weights {cfg.model}/{cfg.pretrained} from the Hugging Face hub "
                f"(offline or unreachable); {_LOCAL_HINT}"
            ) from exc
        if "size mismatch" in text or "Missing key" in text or "Unexpected key" in text:
            raise WeightsMismatchError(
                f"CLIP weights {cfg.pretrained or cfg.model} do not fit model {cfg.model} "
                f"({text.splitlines()[0][:200]}); pass the model name that matches the weights"
            ) from exc
        raise
    except Exception as exc:
        if _is_hub_error(exc):
            raise HubUnreachableError(
                f"could not get CLIP weights {cfg.model}/{cfg.pretrained} from the Hugging Face hub "
                f"(offline or unreachable: {exc.__class__.__name__}); {_LOCAL_HINT}"
            ) from exc
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    with torch.inference_mode():
        tokens = tokenizer(["a"]).to(dev)
        dim = int(model.encode_text(tokens).shape[-1])
    pp = getattr(model.visual, "preprocess_cfg", None) or {}
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
    std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
    return ClipBundle(
        model=model, tokenizer=tokenizer, preprocess=preprocess, name=cfg.model,
        pretrained=cfg.pretrained, dim=dim, image_size=size, mean=mean, std=std,  # type: ignore[arg-type]
        context_length=int(getattr(tokenizer, "context_length", 77)), device=dev,
    )


def _require_cached_or_hub(open_clip: Any, model_name: str, tag: str, cache_dir: str | None) -> None:
    """Fail at once when the weights of a pretrained tag live on the hub, are not cached and the
    hub cannot be reached (instead of open_clip's download retries)."""
    from .hub import cached_hub_file, require_hub

    hub_id = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub") or ""
    if not hub_id:
        return
    repo, filename = hub_id.rstrip("/"), None
    if not hub_id.endswith("/"):
        repo, filename = hub_id.rsplit("/", 1)
    names = [filename] if filename else list(HF_WEIGHT_NAMES)
    if cached_hub_file(repo, names, cache_dir) is None:
        require_hub(f"the CLIP weights {model_name}/{tag} ({repo})", _LOCAL_HINT)


def _is_hub_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        mod = type(cur).__module__ or ""
        if mod.startswith(("huggingface_hub", "requests", "urllib3", "httpx", "httpcore")):
            return True
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False
