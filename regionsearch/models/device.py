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


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def configure_allocator(trim_threshold: int = 1 << 30) -> bool:
    """Tune glibc malloc for long indexing processes; returns whether it was applied.

    glibc serves every buffer above its mmap threshold (32 MB at most) with a fresh ``mmap`` and
    returns it on free, so each large decoder intermediate is page-faulted in again on every
    call: measured with sam2's 64-prompt decoder batches on this CPU, ~77 ms per prompt of kernel
    time. With ``mmap`` off for the heap (``M_MMAP_MAX=0``) and freed memory kept up to
    ``trim_threshold`` bytes, the pages are reused. A no-op off glibc (or when
    ``REGIONSEARCH_MALLOC=default``); ``GLIBC_TUNABLES`` set by the user take precedence for
    anything set there.
    """
    import ctypes
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("REGIONSEARCH_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    ok = True
    if "mmap_max" not in tunables:
        ok &= bool(mallopt(_M_MMAP_MAX, 0))
    if "trim_threshold" not in tunables:
        ok &= bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    return ok
