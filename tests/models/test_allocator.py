"""configure_allocator: freed large buffers are reused instead of page-faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys
import numpy as np
from regionsearch.models.device import configure_allocator
applied = configure_allocator() if sys.argv[1] == "on" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(8 << 20)  # 64 MB, allocated and freed once
before = faults()
for _ in range(5):
    np.ones(8 << 20)
print(applied, (faults() - before) // 5)
"""


def _probe(mode: str, env: dict | None = None) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_large_buffers_are_reused_after_configure_allocator():
    applied, faults_on = _probe("on")
    _, faults_off = _probe("off")
    assert applied
    # glibc's default maps a 64 MB buffer fresh each time: one fault per page touched (16k with
    # 4 KiB pages, 32 with transparent 2 MiB huge pages)
    assert faults_off >= 30, faults_off
    assert faults_on < faults_off / 10, (faults_on, faults_off)


def test_configure_allocator_can_be_switched_off():
    applied, _ = _probe("on", {"REGIONSEARCH_MALLOC": "default"})
    assert not applied


@pytest.fixture
def allocator_calls(monkeypatch):
    """Counts calls of ``configure_allocator`` (the entry points import it at call time)."""
    import regionsearch.models.device as device

    calls: list[int] = []
    monkeypatch.setattr(device, "configure_allocator", lambda *a, **k: calls.append(1) or True)
    return calls


def test_the_local_indexer_applies_the_allocator_settings(allocator_calls):
    """``regionsearch index`` (CLI, the Docker ``indexer`` service) and the API's uploads index
    through ``run_local``: it configures the allocator before any image is decoded."""
    from indexer.local import run_local
    from regionsearch.config import load_config

    class _DataDir:
        saved = False

        def save(self) -> None:
            self.saved = True

    dd = _DataDir()
    run_local([], load_config("tiny"), dd, pipeline=object(), progress=False, workers=0)  # type: ignore[arg-type]
    assert allocator_calls == [1] and dd.saved


def test_ray_sam_actors_apply_the_allocator_settings(allocator_calls, monkeypatch):
    """Each Ray SAM actor (``--runner ray``, the Docker ``ray-worker`` service) decodes masks for
    the whole job in its own process: its constructor configures that process's allocator."""
    import regionsearch.pipeline as pipeline_mod
    from indexer.ray_runner import SamStage
    from regionsearch.config import load_config

    class _Pipeline:
        def __init__(self, config):  # type: ignore[no-untyped-def]
            self.config, self.segmenter = config, None

    monkeypatch.setattr(pipeline_mod, "Pipeline", _Pipeline)
    SamStage(load_config("tiny"), 0)
    assert allocator_calls == [1]


def test_docker_indexing_services_start_through_the_configured_entry_points():
    """The Docker images do not set allocator variables of their own: their indexing processes
    start through the entry points tested above (the CLI's ``index`` -> ``run_local``, the API's
    uploads -> ``run_local``, Ray workers -> ``SamStage``)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker" / "compose.yaml").read_text())["services"]
    assert compose["indexer"]["command"][:2] == ["regionsearch", "index"]
    assert compose["api"]["command"][:2] == ["regionsearch", "serve"]
    for name in ("Dockerfile.cpu", "Dockerfile.cuda"):
        text = (root / "docker" / name).read_text()
        assert '"regionsearch"' in text and "GLIBC_TUNABLES" not in text and "REGIONSEARCH_MALLOC" not in text
