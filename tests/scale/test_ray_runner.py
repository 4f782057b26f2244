"""The Ray Data runner on a local Ray instance (``num_cpus=2``) against the local runner: the same
regions (images, boxes, masks) and the same failures on the same corpus; resumable by shard."""

from __future__ import annotations

import numpy as np
import pytest

from regionsearch.testing.ci import require

ray = require("ray", "pip install -r requirements/scale.txt")
require("ray.data", "pip install -r requirements/scale.txt")
require("pyarrow")

from regionsearch.datadir import DataDir  # noqa: E402
from regionsearch.masks import decode_rle  # noqa: E402
from regionsearch.pipeline import Pipeline  # noqa: E402

from indexer.local import run_local  # noqa: E402
from indexer.ray_runner import RayOptions, run_ray  # noqa: E402
from indexer.shards import pending_shards, read_shard  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    import os

    # the machine is shared with heavy jobs: give the GCS more than the default 30 s to come up
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "180")
    for attempt in range(3):  # the raylet's 30 s registration window is fixed in Ray: retry on a busy machine
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def config(scale_config):
    return scale_config


@pytest.fixture(scope="module")
def local_dir(corpus, config, tmp_path_factory):
    root = tmp_path_factory.mktemp("local_data")
    with DataDir.open(root, Pipeline(config).manifest()) as dd:
        report = run_local([str(corpus)], config, dd, progress=False)
    assert report.indexed == 6 and report.failed == 2
    return root


def snapshot(root):
    """{path: [(kind, box, area, rle)]} and {path: failure reason} of a data dir."""
    with DataDir.open(root, readonly=True) as dd:
        regions = {}
        for rec in dd.iter_images(status="indexed"):
            regions[rec.path] = (rec.sha256, [(r.kind, r.bbox, r.area, r.rle) for r in dd.regions_of_image(rec.id)])
        failures = {f.path: (f.sha256 or None, f.error) for f in dd.failures()}
        assert dd.doctor().ok
    return regions, failures


def mask_iou(a, b):
    ma, mb = decode_rle(a).astype(bool), decode_rle(b).astype(bool)
    union = np.logical_or(ma, mb).sum()
    return 1.0 if union == 0 else np.logical_and(ma, mb).sum() / union


def assert_same_regions(got, want):
    assert got.keys() == want.keys()
    for path, (sha, regs) in want.items():
        gsha, gregs = got[path]
        assert gsha == sha and len(gregs) == len(regs), path
        for (k1, b1, a1, r1), (k2, b2, a2, r2) in zip(gregs, regs):
            assert k1 == k2
            np.testing.assert_allclose(b1, b2, atol=1.0)
            assert r1 == r2 or mask_iou(r1, r2) >= 0.99, (path, mask_iou(r1, r2))
            assert abs(a1 - a2) <= 0.01 * max(a1, a2)


def test_ray_matches_local_and_resumes_by_shard(ray_cluster, corpus, config, local_dir, tmp_path):
    want_regions, want_failures = snapshot(local_dir)
    assert len(want_regions) == 6 and len(want_failures) == 2
    n_masks = sum(k == "mask" for _, regs in want_regions.values() for k, *_ in regs)
    assert n_masks >= 6, "the tiny SAM found (almost) no masks: nothing to compare"
    root = tmp_path / "ray_data"
    manifest = Pipeline(config).manifest()

    # 1. an "interrupted" run: every image went through decode -> SAM -> CLIP and into shards,
    #    nothing merged yet
    with DataDir.open(root, manifest) as dd:
        rep = run_ray([str(corpus)], config, dd, progress=False,
                      options=RayOptions(shard_images=3, batch_images=2, merge=False))
        assert dd.store.counts()["regions"] == 0 and len(dd.index) == 0
    shards = pending_shards(root)
    assert rep.shards_written == len(shards) == 3  # 8 files, 3 per shard
    rows = [r for p in shards for r in read_shard(p)]
    assert sorted(r["status"] for r in rows) == ["failed"] * 2 + ["indexed"] * 6
    assert all(len(r["regions"][0]["embedding"]) == 2 * manifest.dim for r in rows if r["status"] == "indexed")

    # 2. the re-run merges the finished shards: no model work, nothing left in shards/
    with DataDir.open(root, manifest) as dd:
        rep = run_ray([str(corpus)], config, dd, progress=False, options=RayOptions(shard_images=3))
    assert rep.reused_from_shards == 8 and rep.shards_written == 0 and rep.times.segment == 0
    assert (rep.indexed, rep.failed, rep.unchanged) == (6, 2, 0)
    assert pending_shards(root) == []

    got_regions, got_failures = snapshot(root)
    assert_same_regions(got_regions, want_regions)
    assert got_failures == want_failures
    assert sum(len(r) for _, r in got_regions.values()) == rep.regions

    # 3. a third run: indexed files are skipped by lookup (a file that cannot be read is recorded
    #    again without any model stage)
    (corpus.parent / "empty.png").write_bytes(b"")
    with DataDir.open(root, manifest) as dd:
        rep = run_ray([str(p) for p in sorted(corpus.glob("scene_*.png"))] + [str(corpus.parent / "empty.png")],
                      config, dd, progress=False, options=RayOptions(shard_images=3))
        assert (rep.indexed, rep.unchanged, rep.failed, rep.shards_written) == (0, 6, 1, 0)
        assert rep.failures == [(str(corpus.parent / "empty.png"), "empty file (0 bytes)")]
        assert dd.store.image_by_path(str(corpus.parent / "empty.png")).status == "failed"
    assert snapshot(root)[0].keys() == want_regions.keys()


def test_cli_runner_ray_on_a_locally_indexed_dir(ray_cluster, corpus, local_dir, scale_config_path, tmp_path,
                                                 capsys):
    """``regionsearch index --runner ray`` on the local runner's data dir: nothing to redo; an
    unreadable file is recorded with exit code 1; an unknown runner is a usage error."""
    import json
    import shutil

    from regionsearch.cli import main

    data_dir = tmp_path / "copy_of_local"
    shutil.copytree(local_dir, data_dir)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    scenes = [str(p) for p in sorted(corpus.glob("scene_*.png"))]
    with pytest.raises(SystemExit) as info:
        main(["index", *scenes, str(empty), "--config", str(scale_config_path), "--data-dir", str(data_dir),
              "--runner", "ray", "--json"])
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{"):])
    assert info.value.code == 1
    assert data["runner"] == "ray" and (data["indexed"], data["unchanged"], data["failed"]) == (0, 6, 1)
    assert data["failures"] == [{"path": str(empty), "reason": "empty file (0 bytes)"}]
    with pytest.raises(SystemExit) as info:
        main(["index", str(empty), "--config", "tiny", "--data-dir", str(tmp_path / "d"), "--runner", "spark"])
    assert info.value.code == 2 and "unknown runner" in capsys.readouterr().err


def stored_tracks(root):
    """{video path: [(frame_start, frame_end, [(frame, box, rle), ...]), ...]} of a data dir."""
    out = {}
    with DataDir.open(root, readonly=True) as dd:
        for rec in dd.iter_images(status="indexed"):
            if dd.store.video_info(rec.id) is None:
                continue
            out[rec.path] = []
            for r in dd.regions_of_image(rec.id):
                _, frames = dd.store.get_track(r.region_id)
                out[rec.path].append((r.track.frame_start, r.track.frame_end,
                                      [(f.frame, f.bbox, f.rle) for f in frames]))
    return out


@pytest.mark.slow
def test_ray_indexes_videos_like_local(ray_cluster, config, tmp_path):
    """A folder with a moving-shapes clip beside an image through the Ray runner: the video is
    stored with its tracks and per-frame masks exactly as the local runner stores them (the image
    goes through the actor pools), and a re-run has nothing to do."""
    from PIL import Image

    from regionsearch.testing.clips import clip_spec, write_mp4
    from regionsearch.testing.shapes import make_scenes

    folder = tmp_path / "media"
    write_mp4(clip_spec(4_243, "slow", n_frames=4, size=128), folder / "clip.mp4")
    Image.fromarray(make_scenes(1, seed=4_244)[0].image).save(folder / "scene.png")
    manifest = Pipeline(config).manifest()
    with DataDir.open(tmp_path / "local", manifest) as dd:
        local = run_local([str(folder)], config, dd, progress=False)
    with DataDir.open(tmp_path / "ray", manifest) as dd:
        rep = run_ray([str(folder)], config, dd, progress=False, options=RayOptions(shard_images=2))
        assert dd.info()["tracks"] == local.tracks
    assert (rep.indexed, rep.failed, rep.videos, rep.tracks) == (2, 0, 1, local.tracks) and local.videos == 1
    assert local.tracks >= 2, "the tiny models found (almost) no tracks: nothing to compare"
    want, got = stored_tracks(tmp_path / "local"), stored_tracks(tmp_path / "ray")
    assert list(got) == list(want) and got == want
    assert all(len(frames) >= 2 for tracks in got.values() for _, _, frames in tracks)
    assert_same_regions(snapshot(tmp_path / "ray")[0], snapshot(tmp_path / "local")[0])
    with DataDir.open(tmp_path / "ray", manifest) as dd:
        again = run_ray([str(folder)], config, dd, progress=False)
    assert (again.indexed, again.unchanged, again.videos) == (0, 2, 0)
