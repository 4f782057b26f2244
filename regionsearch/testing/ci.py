"""The one place the test suite decides "are we on CI?" and what a missing piece means there.

Locally a missing optional dependency or service skips the tests that need it; on CI it fails
them, so a green CI run never hides a quietly skipped part of the suite. CI is detected from the
``CI`` environment variable (``.ci/run`` exports ``CI=true``; GitHub Actions and most CI systems
set it too): ``1``, ``true``, ``yes`` or ``on``, any case.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

_TRUE = ("1", "true", "yes", "on")


def on_ci(environ: dict[str, str] | None = None) -> bool:
    """True when the ``CI`` environment variable is set to a true value."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() in _TRUE


def unavailable(reason: str) -> None:
    """Skip the calling test (locally) or fail it (on CI): ``reason`` says what is missing and
    how to get it."""
    import pytest

    if on_ci():
        pytest.fail(f"required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require(module: str, hint: str | None = None) -> ModuleType:
    """Import ``module`` or skip (locally) / fail (on CI); ``pytest.importorskip`` that CI cannot
    ignore. ``hint``: how to install it (default: ``pip install <top-level name>``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not importable ({exc}); {hint or 'pip install ' + module.split('.')[0]}")
        raise  # unreachable: unavailable() always raises
