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


def native_bfloat16(device: str) -> bool:
    """Whether ``device`` multiplies bfloat16 natively (CUDA with bf16, or a CPU with AVX512-BF16 /
    AMX): only there does bfloat16 pay off (text tower, SAM decoder). Elsewhere bf16 is emulated and slower."""
    import torch

    if str(device).startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if str(device) != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
