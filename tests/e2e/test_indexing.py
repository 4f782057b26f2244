"""The indexing job end to end with the tiny models: idempotency, moved and changed files,
the hostile corpus, kill -9 crash recovery, and the CLI around them."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionsearch.config import load_config
from regionsearch.engine import Engine
from regionsearch.imageio import path_to_db
from regionsearch.testing.hostile import MAX_PIXELS, write_hostile_corpus
from regionsearch.testing.shapes import make_scenes

REPO = Path(__file__).resolve().parents[2]


def _write_scenes(folder: Path, n: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(make_scenes(n, seed=seed)):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(scene.image).save(p)
        paths.append(p)
    return paths


def _counts(data_dir: Path) -> tuple[int, int]:
    from regionsearch.datadir import DataDir

    with DataDir.open(data_dir, readonly=True) as dd:
        info = dd.info()
    return info["images_indexed"], info["regions"]


def test_rerun_moved_changed_and_remove(tmp_path):
    corpus = tmp_path / "corpus"
    paths = _write_scenes(corpus, 3, seed=11)
    cfg = load_config("tiny")
    with Engine(cfg, tmp_path / "data") as eng:
        first = eng.index([str(corpus)], progress=False)
        assert first.indexed == 3 and first.regions > 3
        again = eng.index([str(corpus)], progress=False)
        assert (again.indexed, again.unchanged) == (0, 3)
        assert again.times.segment == 0.0 and again.times.embed == 0.0  # no model work
        regions_before = {r.region_id for r in eng.datadir.regions_of_image(
            eng.datadir.image_by_path(path_to_db(str(paths[0]))).id)}

        moved = corpus / "renamed.png"
        paths[0].rename(moved)
        rep = eng.index([str(corpus)], progress=False)
        assert (rep.moved, rep.indexed) == (1, 0)
        rec = eng.datadir.image_by_path(path_to_db(str(moved)))
        assert rec is not None and eng.datadir.image_by_path(path_to_db(str(paths[0]))) is None
        assert {r.region_id for r in eng.datadir.regions_of_image(rec.id)} == regions_before

        Image.fromarray(make_scenes(1, seed=12)[0].image).save(paths[1])  # content changes
        old_ids = {r.region_id for r in eng.datadir.regions_of_image(
            eng.datadir.image_by_path(path_to_db(str(paths[1]))).id)}
        rep = eng.index([str(corpus)], progress=False)
        assert rep.indexed == 1
        new_rec = eng.datadir.image_by_path(path_to_db(str(paths[1])))
        new_ids = {r.region_id for r in eng.datadir.regions_of_image(new_rec.id)}
        assert new_ids and not (new_ids & old_ids)
        for text in ("red circle", "blue square", "green star"):
            returned = {h.region_id for h in eng.search(text, k=50)}
            assert not (returned & old_ids), "a replaced region came back"
        assert eng.datadir.doctor().ok

        n = eng.datadir.remove_paths([path_to_db(str(paths[2]))])
        assert n == 1
        assert eng.datadir.doctor().ok
        assert all(h.image_path != path_to_db(str(paths[2])) for h in eng.search("red circle", k=50))


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """The hostile corpus indexed once through the CLI (``index`` exit code kept)."""
    from regionsearch.cli import main

    root = tmp_path_factory.mktemp("hostile_run")
    expected = write_hostile_corpus(root / "hostile")
    cfg_file = root / "cfg.yaml"
    cfg_file.write_text(f"extends: tiny\ningest:\n  max_pixels: {MAX_PIXELS}\n")
    data = root / "data"
    with pytest.raises(SystemExit) as info:
        main(["index", str(root / "hostile"), "--config", str(cfg_file), "--data-dir", str(data), "--no-progress",
              "--json"])
    return expected, cfg_file, data, info.value.code


def test_hostile_corpus_finishes_and_records_every_reason(hostile_run):
    expected, cfg_file, data, code = hostile_run
    assert code == 1  # finished, and says that some files failed
    with Engine(load_config(str(cfg_file)), data) as eng:
        failures = {f.path: f.error for f in eng.datadir.failures()}
        for path, expectation in expected.items():
            key = path_to_db(path)
            if expectation == "ok":
                rec = eng.datadir.image_by_path(key)
                assert rec is not None and rec.status == "indexed", path
                assert eng.datadir.regions_of_image(rec.id), path
            else:
                assert key in failures, f"{path} was not recorded"
                assert expectation in failures[key], (path, failures[key])
        assert len(failures) == sum(1 for e in expected.values() if e != "ok")
        rec = eng.datadir.image_by_path(path_to_db(str(Path(next(iter(expected))).parent / "exif_rotated.jpg")))
        assert (rec.width, rec.height) == (96, 128)  # stored upright


def test_cli_info_errors_search_json_and_save(hostile_run, tmp_path, capsys):
    from regionsearch.cli import main

    _, cfg_file, data, _ = hostile_run
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["info", "--errors", "--json", "--config", str(cfg_file), "--data-dir", str(data)])
    assert info.value.code in (0, None)
    doc = json.loads(capsys.readouterr().out)
    reasons = {Path(f["path"]).name: f["reason"] for f in doc["failures"]}
    assert "empty file" in reasons["zero.jpg"] and "symlink loop" in reasons["loop_a.jpg"]
    with pytest.raises(SystemExit) as info:
        main(["search", "orange square", "--json", "-k", "3", "--config", str(cfg_file), "--data-dir", str(data),
              "--save", str(tmp_path / "overlays")])
    assert info.value.code in (0, None)
    doc = json.loads(capsys.readouterr().out)
    assert doc["query"] == "orange square" and len(doc["hits"]) == 3
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 3
    with pytest.raises(SystemExit) as info:
        main(["search", "x", "-k", "0", "--config", str(cfg_file), "--data-dir", str(data)])
    assert info.value.code == 2
    assert "k must be between" in capsys.readouterr().err


def test_opening_with_another_embedder_is_an_error(tmp_path):
    import dataclasses

    from regionsearch.datadir import DataDir
    from regionsearch.errors import IndexMismatchError

    corpus = tmp_path / "c"
    _write_scenes(corpus, 1, seed=3)
    with Engine(load_config("tiny"), tmp_path / "data") as eng:
        eng.index([str(corpus)], progress=False)
        manifest = eng.pipeline.manifest()
    other = dataclasses.replace(manifest, embedder="ViT-B-32", pretrained="datacomp_xl_s13b_b90k", dim=512)
    with pytest.raises(IndexMismatchError, match="ViT-B-32"):
        DataDir.open(tmp_path / "data", manifest=other)


def _index_cmd(corpus: Path, data: Path, cfg: Path) -> list[str]:
    return [sys.executable, "-m", "regionsearch.cli", "--config", str(cfg), "index", str(corpus),
            "--data-dir", str(data), "--no-progress"]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path):
    n_images = 20
    corpus = tmp_path / "corpus"
    _write_scenes(corpus, n_images, seed=21)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("extends: tiny\ningest:\n  batch_images: 1\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")

    reference = tmp_path / "reference"
    t0 = time.monotonic()
    subprocess.run(_index_cmd(corpus, reference, cfg), env=env, check=True, capture_output=True, timeout=900)
    full_s = time.monotonic() - t0
    want = _counts(reference)
    t0 = time.monotonic()  # a run with nothing to do: process start + model load
    subprocess.run(_index_cmd(corpus, reference, cfg), env=env, check=True, capture_output=True, timeout=900)
    startup_s = time.monotonic() - t0
    per_image_s = max(0.2, (full_s - startup_s) / n_images)

    # kill moments: after start-up, within the next 0.2-2.5 images of work, so that five kills
    # land mid-indexing whatever the machine's speed (each kill costs at most ~3 images)
    data = tmp_path / "data"
    rng = random.Random(1234)
    kills = 0
    for attempt in range(12):
        proc = subprocess.Popen(_index_cmd(corpus, data, cfg), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(startup_s * rng.uniform(0.6, 1.0) + per_image_s * rng.uniform(0.2, 2.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if kills >= 5:
            break
    assert kills >= 5
    done = subprocess.run(_index_cmd(corpus, data, cfg), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    doctor = subprocess.run([sys.executable, "-m", "regionsearch.cli", "--config", str(cfg), "doctor", "--json",
                             "--data-dir", str(data)], env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(doctor.stdout)
    assert report["ok"], report
    assert doctor.returncode == 0
    assert _counts(data) == want
