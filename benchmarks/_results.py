"""Where benchmark figures go: one JSON file per run under ``benchmarks/results/``.

Every figure the README quotes names the results file it comes from, and that file says which
command produced it, on which commit and on which machine. Usage from a benchmark script::

    from _results import save_results
    path = save_results("api_latency-20000", {"search_p50_ms": 12.3, ...})

The file ``benchmarks/results/{name}.json`` holds::

    {"name": ..., "figures": {...}, "command": "python benchmarks/x.py --flag",
     "commit": "<git HEAD>[-dirty]", "date": "<UTC ISO 8601>",
     "machine": {"cpu": ..., "cores": ..., "ram_gib": ..., "torch": ..., "numpy": ...,
                 "faiss": ..., "gpu": ...}}

A later run with the same name replaces the file (the results are the latest measurement; git
history keeps the earlier ones).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _commit() -> str:
    """git HEAD, with ``-dirty`` when tracked or untracked files differ (results files excluded:
    writing a result does not change what was measured)."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return "unknown"
    status = _git("status", "--porcelain", "--", ".", ":(exclude)benchmarks/results")
    return head + ("-dirty" if status else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _version(dist: str, *alternatives: str) -> str | None:
    for name in (dist, *alternatives):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _gpu() -> str | None:
    """GPU name(s): from torch when the benchmark already imported it, else ``nvidia-smi``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            return None
        except Exception:  # a broken CUDA install must not lose the figures
            pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return ", ".join(names) if out.returncode == 0 and names else None


def machine_facts() -> dict:
    """CPU model, logical cores, RAM (GiB), torch/numpy/faiss versions (None when not
    installed), GPU name(s) (None when there is none)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "faiss": _version("faiss-cpu", "faiss-gpu", "faiss"),
        "gpu": _gpu(),
    }


def _command(argv: list[str]) -> str:
    parts = list(argv)
    if parts:
        script = Path(parts[0])
        try:
            parts[0] = str(script.resolve().relative_to(ROOT))
        except ValueError:
            pass
    return shlex.join(["python", *parts])


def _jsonable(value):
    """numpy scalars/arrays and paths -> plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"figure of type {type(value).__name__} is not JSON-serialisable")


def save_results(name: str, figures: dict, *, argv: list[str] | None = None) -> Path:
    """Write ``benchmarks/results/{name}.json`` (see the module docstring) and return its path.

    ``name``: file stem, letters/digits/``._-`` only (e.g. ``"api_latency-2000-full_text"``).
    ``figures``: JSON-serialisable mapping; state units in the keys (``_ms``, ``_s``, ``_mib``).
    ``argv``: the command line to record; defaults to ``sys.argv``.
    """
    if not _NAME.match(name):
        raise ValueError(f"results name {name!r}: use letters, digits, '.', '_' and '-' only")
    if not isinstance(figures, dict):
        raise TypeError(f"figures must be a dict, not {type(figures).__name__}")
    record = {
        "name": name,
        "figures": figures,
        "command": _command(sys.argv if argv is None else argv),
        "commit": _commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": machine_facts(),
    }
    text = json.dumps(record, indent=2, default=_jsonable) + "\n"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
