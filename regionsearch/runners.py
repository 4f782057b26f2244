"""Indexing runners by name, so the engine can run one without importing the applications built
on the library (``indexer/``): runners register themselves (``indexer/__init__.py`` registers
``local`` and ``ray``), and the composition roots (the CLI, the API, the test suite) import
``indexer`` before asking for one.

A runner is called as ``runner(paths, config, datadir, pipeline, progress=..., **options)`` and
returns an index report (``.as_dict()``, ``.indexed``, ``.failed``, ...).
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import ConfigError, UnknownNameError

Runner = Callable[..., Any]
_RUNNERS: dict[str, Runner] = {}


def register_runner(name: str, runner: Runner) -> None:
    """Make ``runner`` available as ``name`` (replaces an earlier registration)."""
    _RUNNERS[name] = runner


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``; :class:`UnknownNameError` listing the registered ones."""
    if not _RUNNERS:
        raise ConfigError(f"no indexing runner is registered (asked for {name!r}): `import indexer` first, which "
                          "registers 'local' and 'ray' (the CLI and the API do), or call "
                          "regionsearch.runners.register_runner")
    try:
        return _RUNNERS[name]
    except KeyError:
        raise UnknownNameError("runner", name, sorted(_RUNNERS)) from None
