"""Lay out files as a Hugging Face hub cache (``models--org--name/snapshots/<rev>/...``), so the
hub-id code paths can run offline against the project's own tiny models."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path


def populate_hf_cache(cache_dir: str | Path, repo_id: str, files: dict[str, str | Path]) -> Path:
    """Copy ``files`` (name in repo -> local file) into ``cache_dir`` as revision ``main`` of
    ``repo_id``; returns the snapshot folder."""
    cache = Path(cache_dir)
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for name, src in files.items():
        dst = snapshot / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return snapshot
