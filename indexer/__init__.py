"""Bulk indexing jobs: the local runner (this process) and the Ray Data runner.

Importing this package registers both with :mod:`regionsearch.runners` (the library never imports
``indexer``; its composition roots - the CLI, the API, the tests - import this package). The two are
also advertised as ``regionsearch.runners`` entry points (pyproject.toml), so a plain script that
calls ``Engine.index`` finds them without importing this package."""

from __future__ import annotations

from typing import Any, Sequence

from regionsearch.runners import register_runner


def local_runner(paths: Sequence[str], config: Any, datadir: Any, pipeline: Any, *, progress: bool = True,
           workers: int | None = None, **_: Any) -> Any:
    from .local import run_local

    return run_local(paths, config, datadir, pipeline, progress=progress, workers=workers)


def ray_data_runner(paths: Sequence[str], config: Any, datadir: Any, pipeline: Any, *, progress: bool = True,
         ray_address: str | None = None, **_: Any) -> Any:
    from .ray_runner import run_ray

    return run_ray(paths, config, datadir, pipeline, progress=progress, address=ray_address)


register_runner("local", local_runner)
register_runner("ray", ray_data_runner)
