"""Videos end to end with the tiny models: a folder of images, moving-shapes clips and bad videos
through `regionsearch index`, then text search over regions and tracks, `track ID --json`,
re-runs, `remove` and `doctor`."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regionsearch.masks import decode_rle, mask_iou
from regionsearch.testing.clips import encode_video, make_clip, write_mp4
from regionsearch.testing.shapes import make_scenes

#: per-frame pixel limit of the run: the clips (256x256) pass, the "huge" video does not
MAX_VIDEO_PIXELS = 256 * 256
N_FRAMES = 6


def _write(path: Path, frames, pts=None, time_base=None, rate=2, rotation=None) -> Path:
    """H.264 mp4 of HWC uint8 frames; ``pts`` in ``time_base`` units for a variable frame rate."""
    return encode_video(path, frames, pts=pts, time_base=time_base, rate=rate, rotation=rotation)


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_video_corpus(root: Path) -> tuple[dict[str, str], dict[str, object]]:
    """Images, clips and every kind of bad video; returns ``({file name: "ok" or the reason it
    must be recorded with}, {clip file name: Clip})``."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    for i, scene in enumerate(make_scenes(2, seed=31)):
        Image.fromarray(scene.image).save(root / f"img_{i}.png")
        expected[f"img_{i}.png"] = "ok"
    clips = {}
    for name, seed in (("clip_a.mp4", 90_011), ("clip_b.mp4", 90_012)):
        clip = make_clip(seed, "slow", n_frames=N_FRAMES)
        write_mp4(clip.spec, root / name)
        clips[name], expected[name] = clip, "ok"
    good = (root / "clip_a.mp4").read_bytes()
    (root / "zero.mp4").write_bytes(b"")
    expected["zero.mp4"] = "empty file"
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    expected["truncated.mp4"] = "truncated"
    (root / "not_a_video.mp4").write_text("a text file pretending to be a video\n" * 20)
    expected["not_a_video.mp4"] = "not a video"
    _audio_only(root / "audio_only.mp4")
    expected["audio_only.mp4"] = "no video stream (audio only)"
    _write(root / "huge.mp4", [np.zeros((256, 320, 3), np.uint8)] * 2)
    expected["huge.mp4"] = "video too large"
    frames = list(make_clip(90_013, "slow", n_frames=5).frames)
    _write(root / "vfr.mp4", frames, pts=[0, 300, 450, 1400, 2100], time_base=Fraction(1, 1000), rate=10)
    expected["vfr.mp4"] = "ok"
    _write(root / "rotated.mp4", [np.ascontiguousarray(f[:, :192]) for f in frames[:3]], rotation=90)
    expected["rotated.mp4"] = "ok"
    return expected, clips


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from regionsearch.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    from regionsearch.cli import main

    root = tmp_path_factory.mktemp("video_run")
    expected, clips = write_video_corpus(root / "corpus")
    cfg = root / "cfg.yaml"
    cfg.write_text(f"extends: tiny\nvideo:\n  max_pixels: {MAX_VIDEO_PIXELS}\n  keyframe_every: 3\n")
    data = root / "data"
    try:
        main(["index", str(root / "corpus"), "--config", str(cfg), "--data-dir", str(data), "--no-progress",
              "--json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return root, expected, clips, cfg, data, code


@pytest.mark.slow
def test_index_search_track_rerun_remove(video_run, capsys):
    from regionsearch.config import load_config
    from regionsearch.engine import Engine
    from regionsearch.imageio import path_to_db

    root, expected, clips, cfg, data, code = video_run
    corpus = root / "corpus"
    opts = ["--config", str(cfg), "--data-dir", str(data)]
    assert code == 1  # finished, and says that some files failed
    # every bad file recorded with its reason, every good one indexed (VFR and rotated included)
    with Engine(load_config(str(cfg)), data, readonly=True, create=False) as eng:
        dd = eng.datadir
        failures = {f.path: f.error for f in dd.failures()}
        assert len(failures) == sum(e != "ok" for e in expected.values()), failures
        for name, want in expected.items():
            key = path_to_db(str(corpus / name))
            if want == "ok":
                rec = dd.image_by_path(key)
                assert rec is not None and rec.status == "indexed", name
                if name.endswith(".mp4"):
                    assert dd.store.video_info(rec.id) is not None, name
            else:
                assert want in failures[key], (name, failures[key])
        rot = dd.image_by_path(path_to_db(str(corpus / "rotated.mp4")))
        assert (rot.width, rot.height) == (256, 192)  # upright
        info = dd.info()
        assert info["videos_indexed"] == 4 and info["images_indexed"] == 2 and info["tracks"] >= 6
        assert dd.doctor().ok

    # a text query for a clip's object: a track hit with the contracted fields, on the right object
    clip = clips["clip_a.mp4"]
    j = 0
    caption = clip.captions[j]
    rc, out, _ = _cli(["search", caption, "-k", "5", "--json", *opts], capsys)
    assert rc == 0
    hits = json.loads(out)["hits"]
    assert {h["kind"] for h in hits} <= {"track", "region"}
    top = hits[0]
    assert top["kind"] == "track", hits
    assert set(top) == {"kind", "region_id", "score", "video", "t_start", "t_end", "frame_start", "frame_end",
                        "best_frame"}
    assert set(top["video"]) == {"id", "path", "fps", "duration_s"} and top["video"]["path"].endswith("clip_a.mp4")
    assert top["video"]["fps"] == pytest.approx(2.0) and top["video"]["duration_s"] == pytest.approx(N_FRAMES / 2)
    assert set(top["best_frame"]) == {"frame", "t", "bbox", "mask"} and len(top["best_frame"]["bbox"]) == 4
    present = np.flatnonzero(clip.present[:, j])
    assert (top["frame_start"], top["frame_end"]) == (present[0], present[-1])
    assert top["t_start"] == pytest.approx(present[0] / 2) and top["t_end"] == pytest.approx(present[-1] / 2)
    best = top["best_frame"]
    assert mask_iou(decode_rle(best["mask"]), clip.masks[best["frame"], j]) >= 0.8
    image_hits = [h for h in hits if h["kind"] == "region"]
    assert all({"image_id", "image_path", "region_kind"} <= set(h) for h in image_hits)

    # track ID --json: every stored frame's mask, matching the ground truth
    rc, out, _ = _cli(["track", str(top["region_id"]), "--json", *opts], capsys)
    assert rc == 0
    doc = json.loads(out)
    assert [f["frame"] for f in doc["frames"]] == present.tolist()
    assert [f["t"] for f in doc["frames"]] == pytest.approx((present / 2).tolist())
    ious = [mask_iou(decode_rle(f["mask"]), clip.masks[f["frame"], j]) for f in doc["frames"]]
    assert np.mean(ious) >= 0.85, ious
    assert {k: doc[k] for k in top if k != "score"} == {k: top[k] for k in top if k != "score"}
    rc, _, err = _cli(["track", "987654", *opts], capsys)
    assert rc == 2 and "no track with id 987654" in err

    # --media image leaves tracks out; --media video only tracks; text output reads as a track
    rc, out, _ = _cli(["search", caption, "-k", "5", "--json", "--media", "image", *opts], capsys)
    assert rc == 0 and all(h["kind"] == "region" for h in json.loads(out)["hits"])
    rc, out, _ = _cli(["search", caption, "-k", "3", "--json", "--media", "video", *opts], capsys)
    assert rc == 0 and [h["kind"] for h in json.loads(out)["hits"]] == ["track"] * 3
    rc, out, _ = _cli(["search", caption, "-k", "1", *opts], capsys)
    assert "clip_a.mp4" in out and f"track {top['region_id']}" in out and "s (frames" in out
    rc, _, err = _cli(["search", caption, "--media", "films", *opts], capsys)
    assert rc == 2 and "media must be one of" in err

    # re-running skips every file (content hash), and remove deletes a video with its tracks
    rc, out, _ = _cli(["index", str(corpus), "--no-progress", "--json", *opts], capsys)
    report = json.loads(out)
    assert (report["indexed"], report["unchanged"]) == (0, 6) and report["videos"] == 0
    rc, out, _ = _cli(["remove", str(corpus / "clip_a.mp4"), *opts], capsys)
    assert rc == 0 and out.strip() == "removed 1 video(s)"
    rc, _, err = _cli(["track", str(top["region_id"]), *opts], capsys)
    assert rc == 2 and "not in this data dir" in err
    rc, out, _ = _cli(["search", caption, "-k", "20", "--json", *opts], capsys)
    assert all(not h.get("video", {}).get("path", "").endswith("clip_a.mp4") for h in json.loads(out)["hits"])
    rc, out, _ = _cli(["doctor", "--json", *opts], capsys)
    assert rc == 0 and json.loads(out)["ok"]
