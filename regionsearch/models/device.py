"""Device choice: ``auto`` means cuda > mps > cpu."""

from __future__ import annotations

from ..errors import ConfigError

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | None = "auto") -> str:
    """Return a concrete torch device string for ``device`` (``auto``/``None`` picks the best)."""
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    base = name.split(":", 1)[0]
    if base not in VALID_DEVICES:
        raise ConfigError(f"unknown device {device!r}; use one of: auto, cpu, cuda, cuda:N, mps")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was requested but CUDA is not available; use --device cpu")
    return name
