"""The command line surface: help, presets, error translation (no model work)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from regionsearch.cli import main

COMMANDS = ("index", "search", "serve", "info", "doctor", "remove", "eval", "reindex", "demo", "scene", "mcp",
            "export")


def _run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def test_help_lists_every_command(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for cmd in COMMANDS:
        assert cmd in out


def test_bare_config_tiny_works_offline(capsys):
    code, out, _ = _run(["--config", "tiny"], capsys)
    assert code == 0
    assert "active config: tiny" in out and "tiny:tiny_sam2.pt" in out


def test_unknown_preset_is_one_line_with_valid_names(capsys):
    code, _, err = _run(["--config", "nope", "search", "x"], capsys)
    assert code == 2
    assert err.startswith("error: unknown config preset 'nope'") and "tiny" in err
    assert "Traceback" not in err


def test_missing_data_dir_is_explained(tmp_path, capsys):
    code, _, err = _run(["--config", "tiny", "info", "--data-dir", str(tmp_path / "none")], capsys)
    assert code == 2 and err.strip() == (f"error: no regionsearch data dir at {tmp_path / 'none'}; create one with "
                                         "`regionsearch index`")
    assert not (tmp_path / "none").exists()


def test_every_command_has_help(capsys):
    for cmd in COMMANDS:
        code, out, _ = _run([cmd, "--help"], capsys)
        assert code == 0 and "Usage" in out, cmd


def test_import_is_cheap():
    code = ("import sys, regionsearch, regionsearch.cli, regionsearch.config, regionsearch.search; "
            "heavy = [m for m in ('torch', 'sam2', 'open_clip', 'faiss') if m in sys.modules]; "
            "print(heavy); assert not heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
