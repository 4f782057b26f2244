"""The project's tiny models of the real architectures (offline tests and demos).

``configs/tiny.yaml`` refers to them as ``tiny:NAME`` paths:

* ``tiny:tiny_sam2.yaml`` / ``tiny:tiny_sam2.pt``: a SAM 2.1 (official sam2 classes, 256 px);
* ``tiny:tiny_clip``: an open_clip folder (``open_clip_config.json`` + weights).

Trained weights live in ``regionsearch/testing/weights/`` (see its ``MANIFEST.json``). Where a
weights file is absent, a deterministic random-weight stand-in of the same architecture is
generated once into ``~/.cache/regionsearch/tiny-random`` (only shapes are meaningful then).

This module imports nothing of the library but its errors: the model layer (``models/sam.py``, ``models/clip.py``)
resolves ``tiny:`` references through it and hands it the SAM 2.1 builder it needs for the
random stand-ins (so the dependency points one way: models -> testing.tiny).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelLoadError

#: ``build_sam(config_yaml, checkpoint_or_None, device) -> torch.nn.Module`` (``models.sam.build_sam2_model``)
SamBuilder = Callable[[Path, Any, str], Any]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SAM_CONFIG = "tiny_sam2.yaml"
SAM_CHECKPOINT = "tiny_sam2.pt"
CLIP_DIR = "tiny_clip"
CLIP_WEIGHTS = "open_clip_model.safetensors"
SEED = 1234

_LOCK = threading.Lock()


def trained_available() -> bool:
    """True when the committed, trained tiny weights are present."""
    return (WEIGHTS_DIR / SAM_CHECKPOINT).is_file() and (WEIGHTS_DIR / CLIP_DIR / CLIP_WEIGHTS).is_file()


def random_dir() -> Path:
    base = os.environ.get("REGIONSEARCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "regionsearch")
    return Path(base) / "tiny-random"


def tiny_path(name: str, build_sam: SamBuilder | None = None) -> Path:
    """Resolve a ``tiny:NAME`` reference to a local file or folder (``build_sam`` builds the random
    SAM stand-in when the trained weights are absent; without it that case is an error)."""
    committed = WEIGHTS_DIR / name
    if name in (SAM_CONFIG,) or name.endswith((".yaml", ".json")):
        return committed
    if name == SAM_CHECKPOINT and committed.is_file():
        return committed
    if name == CLIP_DIR and (committed / CLIP_WEIGHTS).is_file():
        return committed
    if name not in (SAM_CHECKPOINT, CLIP_DIR):
        return committed
    if build_sam is None:
        raise ModelLoadError(f"the trained tiny model {name!r} is not in {WEIGHTS_DIR}; load it through "
                             "regionsearch.models (which builds a random-weight stand-in)")
    return ensure_random_weights(build_sam) / name


def ensure_random_weights(build_sam: SamBuilder, target: Path | None = None) -> Path:
    """Write seeded random-weight tiny checkpoints (same architectures) and return their folder."""
    target = target or random_dir()
    with _LOCK:
        done = target / "DONE"
        if done.is_file():
            return target
        target.mkdir(parents=True, exist_ok=True)
        write_random_sam(target / SAM_CHECKPOINT, build_sam)
        write_random_clip(target / CLIP_DIR)
        done.write_text("random-weight tiny models, seed %d\n" % SEED)
    return target


def write_random_sam(path: Path, build_sam: SamBuilder, seed: int = SEED) -> Path:
    import torch

    torch.manual_seed(seed)
    model = build_sam(WEIGHTS_DIR / SAM_CONFIG, None, "cpu")
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def write_random_clip(folder: Path, seed: int = SEED) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(WEIGHTS_DIR / CLIP_DIR / "open_clip_config.json", folder / "open_clip_config.json")
    cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    model = open_clip.CLIP(**cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / CLIP_WEIGHTS))
    return folder
