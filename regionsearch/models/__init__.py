"""Real model loading: SAM 2.1 via ``sam2`` and CLIP via ``open_clip``.

Heavy packages are imported inside the functions, so importing this module is cheap.
"""

from .device import resolve_device
from .registry import clear as clear_model_cache


def load_sam2(*args, **kwargs):  # type: ignore[no-untyped-def]
    from .sam import load_sam2 as _load

    return _load(*args, **kwargs)


def load_clip(*args, **kwargs):  # type: ignore[no-untyped-def]
    from .clip import load_clip as _load

    return _load(*args, **kwargs)


__all__ = ["resolve_device", "load_sam2", "load_clip", "clear_model_cache"]
