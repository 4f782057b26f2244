"""Indexing runners by name, so the engine can run one without importing the applications built
on the library (``indexer/``): runners register themselves (``indexer/__init__.py`` registers
``local`` and ``ray``), and the composition roots (the CLI, the API, the test suite) import
``indexer`` before asking for one. Installed packages may also advertise runners as entry points
in the ``regionsearch.runners`` group; they are loaded on the first request for an unknown name.

A runner is called as ``runner(paths, config, datadir, pipeline, progress=..., **options)`` and
returns an index report (``.as_dict()``, ``.indexed``, ``.failed``, ...).
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import ConfigError, UnknownNameError

Runner = Callable[..., Any]
ENTRY_POINT_GROUP = "regionsearch.runners"
_RUNNERS: dict[str, Runner] = {}


def register_runner(name: str, runner: Runner) -> None:
    """Make ``runner`` available as ``name`` (replaces an earlier registration)."""
    _RUNNERS[name] = runner


def _load_entry_points() -> None:
    """Register the runners installed packages advertise in the ``regionsearch.runners`` entry-point
    group (this distribution advertises ``local`` and ``ray``); explicit registrations win."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _RUNNERS:
            _RUNNERS[ep.name] = ep.load()


def get_runner(name: str) -> Runner:
    """The runner registered as ``name`` (or advertised as an entry point);
    :class:`UnknownNameError` listing the known ones."""
    if name not in _RUNNERS:
        _load_entry_points()
    if not _RUNNERS:
        raise ConfigError(f"no indexing runner is registered (asked for {name!r}): `import indexer` first, which "
                          "registers 'local' and 'ray' (the CLI and the API do), or call "
                          "regionsearch.runners.register_runner")
    try:
        return _RUNNERS[name]
    except KeyError:
        raise UnknownNameError("runner", name, sorted(_RUNNERS)) from None
