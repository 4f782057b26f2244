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
