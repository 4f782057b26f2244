"""Refit the tiny SAM 2.1 checkpoint to the corrected memory dimensions of ``tiny_sam2.yaml``.

The first tiny config left ``MemoryEncoder``/``MaskDownSampler`` at sam2's 256-channel defaults
in a 64-wide model, so the video path failed on its first memory-encoder call. The memory path
was never trained (``_train_sam.py`` trains the image path only), so the refit keeps every
tensor whose shape still fits (the whole image path, bit for bit) and gives the resized
memory-encoder tensors a seeded fresh initialisation.

    python -m regionsearch.testing._memory_dims OLD.pt NEW.pt
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from .tiny import SAM_CONFIG, SEED, WEIGHTS_DIR

log = logging.getLogger(__name__)


def refit_checkpoint(old: Path, new: Path, config: Path = WEIGHTS_DIR / SAM_CONFIG, seed: int = SEED) -> list[str]:
    """Write ``new``: ``old``'s tensors where shapes fit ``config``, seeded init elsewhere.

    Tensors are stored as fp16 like the committed checkpoint. Returns the re-initialised keys.
    """
    import torch

    from ..models.sam import build_sam2_model

    state = torch.load(str(old), map_location="cpu", weights_only=True)
    state = state.get("model", state)
    torch.manual_seed(seed)
    model = build_sam2_model(config, None, "cpu")
    fresh = model.state_dict()
    out, reinit = {}, []
    for key, value in fresh.items():
        if key in state and tuple(state[key].shape) == tuple(value.shape):
            out[key] = state[key]
        else:
            out[key] = value.to(torch.float16) if value.is_floating_point() else value
            reinit.append(key)
    tmp = new.with_suffix(".tmp")
    torch.save({"model": out}, tmp)
    os.replace(tmp, new)
    return reinit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="checkpoint made with the old config")
    parser.add_argument("new", type=Path, help="where to write the refitted checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keys = refit_checkpoint(args.old, args.new)
    log.info("re-initialised %d tensors: %s", len(keys), ", ".join(keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
