"""Runners are found by name without the library importing ``indexer``: through the
``regionsearch.runners`` entry points the distribution advertises (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from regionsearch.errors import UnknownNameError
from regionsearch.runners import get_runner


def test_a_plain_script_finds_the_runners_without_importing_indexer():
    code = ("import sys; from regionsearch.runners import get_runner; "
            "assert 'indexer' not in sys.modules; "
            "print(get_runner('local').__module__, get_runner('ray').__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["indexer", "ray_data_runner"]


def test_an_unknown_runner_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as err:
        get_runner("spark")
    assert "local" in str(err.value) and "ray" in str(err.value)
