"""Issue #14: a data directory a user can trust. Each test drives the CLI (or the HTTP API) the
way the user who found the defect did, on a data dir indexed once with the tiny models."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from regionsearch.cli import main

REPO = Path(__file__).resolve().parents[1]

#: a sitecustomize that blocks (and logs) every network connection and DNS lookup of a process
_NETBLOCK = textwrap.dedent('''
    import os, socket

    _LOG = os.environ["NETBLOCK_LOG"]

    def _note(what):
        with open(_LOG, "a") as f:
            f.write(repr(what) + "\\n")

    def _connect(self, address, *a, **k):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _note(address)
            raise OSError(101, "network blocked by the test")
        return _orig_connect(self, address, *a, **k)

    def _getaddrinfo(host, *a, **k):
        _note(host)
        raise socket.gaierror(-3, "network blocked by the test")

    _orig_connect = socket.socket.connect
    socket.socket.connect = _connect
    socket.socket.connect_ex = lambda self, address: _connect(self, address)
    socket.getaddrinfo = _getaddrinfo
''')


def _run(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code or 0, out.out, out.err


def _tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write_images(folder: Path, n: int, seed: int) -> list[Path]:
    from regionsearch.testing.shapes import make_scenes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(make_scenes(n, seed=seed)):
        paths.append(folder / f"img_{i}.png")
        Image.fromarray(scene.image).save(paths[-1])
    return paths


def _blocked_env(tmp: Path, **extra: str) -> tuple[dict[str, str], Path]:
    site = tmp / "netblock"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_NETBLOCK)
    log = tmp / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "REGIONSEARCH_CONFIG",
                                                            "REGIONSEARCH_DATA_DIR")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), NETBLOCK_LOG=str(log),
               HF_HOME=str(tmp / "hf-home"), **extra)
    return env, log


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> tuple[Path, Path]:
    """(images folder, data dir) indexed through the CLI with ``--config tiny`` (2 images)."""
    root = tmp_path_factory.mktemp("trust")
    images = root / "photos"
    _write_images(images, 2, seed=21)
    data = root / "data"
    with pytest.raises(SystemExit) as info:
        main(["index", str(images), "--config", "tiny", "-d", str(data), "--no-progress"])
    assert info.value.code in (0, None)
    return images, data


def _copy(tiny_dir, tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(tiny_dir[1], dst)
    return dst


def _default_sigint() -> None:
    """Run in the child before exec: restore SIGINT's default disposition.

    A non-interactive shell that starts a job in the background (``bash -c 'pytest ... & wait'``, as some CI
    runners do) sets SIGINT to SIG_IGN for it, and children inherit that; Python then installs no
    KeyboardInterrupt handler, so the SIGINT these tests send would be ignored (respecting an inherited
    SIG_IGN is correct Unix behaviour for the CLI, so the test, not the CLI, restores the default).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# -- 1 + acceptance: the data dir remembers its models; no hub is contacted ------------------------

def test_search_without_config_uses_the_data_dirs_models_and_no_network(tiny_dir, tmp_path, capsys):
    _, data = tiny_dir
    code, out, _ = _run(["search", "-d", str(data), "red circle", "--json", "--config", "tiny"], capsys)
    assert code == 0
    with_config = [(h["region_id"], round(h["score"], 5)) for h in json.loads(out)["hits"]]
    assert with_config

    env, log = _blocked_env(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "regionsearch.cli", "search", "-d", str(data), "red circle",
                           "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    without = [(h["region_id"], round(h["score"], 5)) for h in json.loads(proc.stdout)["hits"]]
    assert without == with_config
    assert not log.exists(), f"the process tried the network: {log.read_text()}"
    assert "huggingface" not in proc.stderr.lower()


def test_scene_without_config_labels_with_the_presets_vocabulary(tiny_dir, capsys):
    """The dir remembers its preset too, not only its models: ``scene`` without ``--config`` on a
    tiny dir labels with the shapes world's vocabulary (``configs/tiny.yaml``), as with it."""
    from regionsearch.config import load_config

    images, data = tiny_dir
    image = str(sorted(images.iterdir())[0])
    vocabulary = set(load_config("tiny").scene.vocabulary)
    code, out, _ = _run(["scene", "-d", str(data), image, "--json"], capsys)
    assert code == 0
    labels = [o["label"] for o in json.loads(out)["objects"]]
    assert labels and set(labels) <= vocabulary, labels
    assert json.loads((data / "manifest.json").read_text())["preset"] == "tiny"


def test_another_embedder_is_refused_in_one_sentence_naming_both(tiny_dir, capsys, monkeypatch):
    _, data = tiny_dir
    _no_models(monkeypatch)
    code, _, err = _run(["search", "-d", str(data), "red circle", "--config", "default"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tiny:tiny_clip" in err and "ViT-B-32" in err


# -- 2 + acceptance: reading never writes -------------------------------------------------------------
def test_search_info_doctor_and_serve_leave_every_byte(tiny_dir, tmp_path, capsys):
    import socket
    import urllib.request

    _, data = tiny_dir
    before = _tree_hash(data)
    for args in (["search", "red circle"], ["info"], ["info", "--errors", "--json"], ["doctor"]):
        code, out, err = _run([*args, "-d", str(data)], capsys)
        assert code == 0, (args, err)
        assert _tree_hash(data) == before, args

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "REGIONSEARCH_CONFIG"}
    env["PYTHONPATH"] = str(REPO)
    server = subprocess.Popen([sys.executable, "-m", "regionsearch.cli", "serve", "-d", str(data), "--port",
                               str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              preexec_fn=_default_sigint)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        req = urllib.request.Request(base + "/v1/search", data=json.dumps({"text": "red circle", "k": 3}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            hits = json.loads(r.read())["hits"]
        assert hits
        with urllib.request.urlopen(f"{base}/v1/images/{hits[0]['image_id']}/overlay.png", timeout=60) as r:
            assert r.status == 200
        _check_docs_are_self_hosted(base)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert _tree_hash(data) == before


def _check_docs_are_self_hosted(base: str) -> None:
    """11: /docs and /redoc load every script and stylesheet from this server (no CDN)."""
    import re
    import urllib.request

    for page, needed in (("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")), ("/redoc", ("redoc.standalone.js",))):
        with urllib.request.urlopen(base + page, timeout=30) as r:
            html = r.read().decode()
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/") for u in urls), (page, urls)
        for name in needed:
            url = next(u for u in urls if u.endswith(name))
            with urllib.request.urlopen(base + url, timeout=30) as r:
                assert r.status == 200 and len(r.read()) > 10_000, url


def test_read_commands_on_a_photo_folder_create_nothing(tiny_dir, capsys):
    photos, _ = tiny_dir
    before = sorted(p.name for p in photos.iterdir())
    for args in (["search", "red circle"], ["info"], ["doctor"]):
        code, _, err = _run([*args, "-d", str(photos)], capsys)
        assert code == 2, args
        assert err.strip() == f"error: no regionsearch data dir at {photos}; create one with `regionsearch index`"
    assert sorted(p.name for p in photos.iterdir()) == before


# -- 3: a data dir that is a file -------------------------------------------------------------------------
def _no_models(monkeypatch) -> None:
    """Any model load fails the test: the checks under test must come first."""
    import regionsearch.models.clip as clip
    import regionsearch.models.sam as sam

    def boom(*_a, **_k):
        raise AssertionError("a model was loaded before the argument checks")

    monkeypatch.setattr(clip, "load_clip", boom)
    monkeypatch.setattr(sam, "load_sam2", boom)


def test_data_dir_that_is_a_file_is_one_line_before_models(tiny_dir, capsys, monkeypatch):
    photos, _ = tiny_dir
    _no_models(monkeypatch)
    a_file = next(photos.glob("*.png"))
    for args in (["search", "red circle"], ["info"], ["index", str(photos)], ["remove", str(a_file)]):
        code, _, err = _run([*args, "-d", str(a_file), "--config", "tiny"], capsys)
        assert code == 2, args
        assert err.strip().splitlines() == [f"error: the data dir {a_file} is a file, not a directory; pass a "
                                            "directory with --data-dir"], args


def test_bad_k_and_per_image_fail_before_models(tiny_dir, capsys, monkeypatch):
    _, data = tiny_dir
    _no_models(monkeypatch)
    for args in (["-k", "0"], ["-k", "5000"], ["--per-image", "0"]):
        code, _, err = _run(["search", "x", "-d", str(data), *args], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (args, err)


# -- 4 + acceptance: offline with real models is fast and quiet ----------------------------------------------
@pytest.mark.parametrize("hf_offline", [None, "1"])
def test_offline_default_models_fail_fast_in_few_lines(tmp_path, hf_offline):
    _write_images(tmp_path / "photos", 1, seed=3)
    extra = {"HF_HUB_OFFLINE": hf_offline} if hf_offline else {}
    env, _ = _blocked_env(tmp_path, **extra)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "regionsearch.cli", "index", "photos", "-d", "fresh",
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    seconds = time.monotonic() - t0
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert seconds < 10, f"took {seconds:.1f} s"
    assert 1 <= len(lines) <= 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot be reached" in proc.stderr and "--sam-checkpoint" in proc.stderr
    assert not (tmp_path / "fresh").exists()


# -- 5: settings that change what vectors mean are per-image facts, never silently mixed --------------------
def test_changed_crop_is_refused_then_reindexed_and_shown_per_image(tiny_dir, tmp_path, capsys):
    photos, _ = tiny_dir
    data = _copy(tiny_dir, tmp_path)
    before = _tree_hash(data)
    code, _, err = _run(["index", str(photos / "img_0.png"), "-d", str(data), "--crop", "box", "--no-progress"],
                        capsys)
    assert code == 2 and "2 image(s) indexed with other settings" in err and "crop mask -> box" in err
    assert "--reindex-changed" in err
    assert _tree_hash(data) == before

    code, out, err = _run(["index", str(photos / "img_0.png"), "-d", str(data), "--crop", "box",
                           "--reindex-changed", "--no-progress", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["indexed"] == 2  # the one given and the other image of the old settings
    code, out, _ = _run(["info", "-d", str(data), "--json"], capsys)
    pipes = json.loads(out)["pipelines"]
    assert [(p["images"], p["settings"]["crop"]["crop"], p["current"]) for p in pipes] == [(2, "box", True)]
    code, out, _ = _run(["info", "-d", str(data)], capsys)
    assert "2 image(s): crop box" in out


# -- 6: a copy at another path is recorded, searchable by prefix, removable ------------------------------------
def test_copy_at_another_path_is_recorded_searchable_and_removable(tiny_dir, tmp_path, capsys):
    photos, _ = tiny_dir
    data = _copy(tiny_dir, tmp_path)
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(photos / "img_1.png", copies / "same.png")
    code, out, err = _run(["index", str(copies), "-d", str(data), "--no-progress", "--json"], capsys)
    assert code == 0, err
    assert (json.loads(out)["indexed"], json.loads(out)["unchanged"]) == (0, 1)  # no model work: content known
    code, out, _ = _run(["search", "-d", str(data), "red circle", "-k", "50", "--json", "--path-prefix",
                         str(copies)], capsys)
    hits = json.loads(out)["hits"]
    assert hits and {h["image_path"] for h in hits} == {str(copies / "same.png")}
    code, out, _ = _run(["info", "-d", str(data), "--json"], capsys)
    assert json.loads(out)["images_indexed"] == 2  # content stored once
    code, out, _ = _run(["remove", str(copies / "same.png"), "-d", str(data)], capsys)
    assert code == 0 and "removed 1 image(s)" in out
    code, out, _ = _run(["search", "-d", str(data), "red circle", "--json", "--path-prefix", str(copies)], capsys)
    assert json.loads(out)["hits"] == []
    code, out, _ = _run(["search", "-d", str(data), "red circle", "-k", "50", "--json", "--path-prefix",
                         str(photos / "img_1.png")], capsys)
    assert json.loads(out)["hits"], "removing the copy removed the original"


# -- 7: remove folders, globs; unknown paths listed ----------------------------------------------------------
def test_remove_folder_glob_and_unknown(tiny_dir, tmp_path, capsys):
    photos, _ = tiny_dir
    data = _copy(tiny_dir, tmp_path)
    code, out, err = _run(["remove", str(photos / "img_0.*"), str(tmp_path / "never.png"), "-d", str(data)], capsys)
    assert code == 1 and "removed 1 image(s)" in out
    assert err.strip().splitlines() == [f"not indexed: {tmp_path / 'never.png'}"]
    code, out, _ = _run(["remove", str(photos), "-d", str(data)], capsys)
    assert code == 0 and "removed 1 image(s)" in out
    code, out, _ = _run(["info", "-d", str(data), "--json"], capsys)
    assert json.loads(out)["images_indexed"] == 0 and json.loads(out)["vectors"] == 0


# -- 8: a mistyped folder is a usage error, never stored ------------------------------------------------------
def test_index_missing_path_is_a_usage_error_and_stores_nothing(tiny_dir, tmp_path, capsys, monkeypatch):
    _no_models(monkeypatch)
    data = _copy(tiny_dir, tmp_path)
    before = _tree_hash(data)
    code, _, err = _run(["index", str(tmp_path / "nope"), "-d", str(data)], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope'} does not exist; nothing was indexed"
    assert _tree_hash(data) == before
    code, _, _ = _run(["index", str(tmp_path / "nope"), "-d", str(tmp_path / "new")], capsys)
    assert code == 2 and not (tmp_path / "new").exists()


# -- 9: info while an index job writes ---------------------------------------------------------------------------
def test_info_during_a_running_index_reports_it(tiny_dir, tmp_path, capsys):
    from regionsearch.datadir import DataDir

    data = _copy(tiny_dir, tmp_path)
    with DataDir.open(data):  # holds the writer lock, as `regionsearch index` does while it runs
        code, out, err = _run(["info", "-d", str(data)], capsys)
        assert code == 0, err
        assert "index job running: 2 images indexed so far" in out
        code, out, err = _run(["info", "-d", str(data), "--json"], capsys)
        assert json.loads(out)["writer_running"] is True
    code, out, _ = _run(["info", "-d", str(data), "--json"], capsys)
    assert json.loads(out)["writer_running"] is False


# -- 10: the text embedder under concurrency with a tiny cache ---------------------------------------------------
def test_text_embedder_many_threads_tiny_cache_no_deadlock(tiny_config):
    from regionsearch.embed.clip import ClipEmbedder
    from regionsearch.models.clip import load_clip

    emb = ClipEmbedder(load_clip(tiny_config.models.clip, "cpu"), text_cache_size=2, text_dtype="float32")
    texts = [f"a {c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "star")]
    expected = {t: emb.embed_texts([t])[0] for t in texts}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(10):
                batch = [texts[(i + j + d) % len(texts)] for d in range(3)]
                got = emb.embed_texts(batch)
                for t, v in zip(batch, got):
                    assert abs(float(v @ expected[t]) - 1.0) < 1e-4
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "embed_texts hung (deadlock)"
    assert not errors, errors[0]


# -- 12: Ctrl-C says what was saved --------------------------------------------------------------------------
def test_ctrl_c_says_what_was_saved_and_the_same_command_resumes(tmp_path):
    from regionsearch.datadir import DataDir

    # 16 images: with the faster generator 4 tiny images could all be indexed between the poll that
    # saw the first one and the signal (the job then exited 0 before the interrupt could land)
    _write_images(tmp_path / "photos", 16, seed=5)
    (tmp_path / "cfg.yaml").write_text("extends: tiny\ningest:\n  batch_images: 1\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "regionsearch.cli", "index", "photos", "-d", "data", "--config", "cfg.yaml",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            with DataDir.open(tmp_path / "data", readonly=True) as dd:
                if dd.store.counts()["images_indexed"] >= 1:
                    break
        except Exception:  # noqa: BLE001 - not created yet
            continue
    assert proc.poll() is None, "indexing finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and line.endswith("image(s) indexed and saved; run the same command "
                                                             "to resume"), err
    saved = int(line.split()[1])
    with DataDir.open(tmp_path / "data", readonly=True) as dd:
        assert dd.store.counts()["images_indexed"] == saved >= 1
        assert dd.doctor().ok
