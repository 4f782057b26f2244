"""`regionsearch eval` on YouTube-VIS-style ground truth end to end with the tiny models: moving-
shapes clips written with `regionsearch.testing.clips`, indexed as tracks by the real pipeline,
the stored tracks scored; a missing video, a re-run, perturbed ground truth and a broken video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from regionsearch.masks import decode_rle, encode_rle
from regionsearch.testing.clips import clip_spec, export_ytvis

SIZE = 128
#: clip 1 is written at 2 fps (every frame sampled at video.sample_fps 2), clip 2 at 4 fps (every
#: other frame sampled): the evaluated frames must be the sampled ones
CLIPS = ((70_001, 5, 2.0), (70_002, 6, 4.0))
SAMPLED = {1: [0, 1, 2, 3, 4], 2: [0, 2, 4]}


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from regionsearch.cli import main

    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def _perturbed(gt: dict, shift_video: int, relabel_video: int) -> dict:
    """Ground truth with every mask of ``shift_video`` moved by half the frame width and the
    categories of ``relabel_video``'s objects rotated among them."""
    gt = json.loads(json.dumps(gt))
    anns = [a for a in gt["annotations"] if a["video_id"] == relabel_video]
    cats = [a["category_id"] for a in anns]
    for a, c in zip(anns, cats[1:] + cats[:1]):
        a["category_id"] = c
    for a in gt["annotations"]:
        if a["video_id"] == shift_video:
            a["segmentations"] = [None if s is None else encode_rle(np.roll(decode_rle(s), SIZE // 2, axis=1))
                                  for s in a["segmentations"]]
    return gt


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("ytvis")
    specs = [clip_spec(seed, "slow", n_frames=n, fps=fps, size=SIZE) for seed, n, fps in CLIPS]
    ann = export_ytvis(specs, root / "clips")
    gt = json.loads(ann.read_text())
    # the two clips share no class, so every category's figures belong to one clip
    assert not set(specs[0].captions) & set(specs[1].captions)
    return root, ann, gt


@pytest.mark.slow
def test_eval_ytvis_cli(clips, capsys):
    root, ann, gt = clips
    data = root / "data"
    opts = ["--config", "tiny", "eval", "--data-dir", str(data), "--no-progress"]

    # a video the ground truth names is missing: one clear sentence, nothing created
    missing = root / "missing" / "annotations.json"
    missing.parent.mkdir()
    missing.write_text(ann.read_text())
    rc, _, err = _cli([*opts[:2], "eval", "--ytvis", str(missing), "--data-dir", str(root / "d2")], capsys)
    assert rc == 2 and "2 video(s)" in err and "clip_000001.mp4" in err and "--images" in err
    assert not (root / "d2").exists()

    # first run: indexes the clips as tracks, scores the stored tracks
    rc, out, err = _cli([*opts, "--ytvis", str(ann)], capsys)
    assert rc == 0, err
    assert "track mIoU" in out and "identity switches per clip" in out and "P@3" in out
    doc = json.loads((data / "eval" / "eval.json").read_text())
    s = doc["summary"]
    assert doc["ground_truth"] == "ytvis" and doc["index_seconds"] > 0 and doc["failures"] == []
    assert (s["videos"], s["objects"]) == (2, len(gt["annotations"])) and s["categories"] == len(gt["annotations"])
    assert s["evaluated_frames"] == sum(len(f) for f in SAMPLED.values())
    # every object is scored at the sampled frames where it is present, and only there
    for o in doc["per_object"]:
        segs = next(a for a in gt["annotations"] if a["id"] == o["object_id"])["segmentations"]
        assert o["frames"] == sum(segs[f] is not None for f in SAMPLED[o["video_id"]])
    assert s["tracks"] >= s["objects"] - 1
    assert s["track_miou"] > 0.7 and s["share_miou_ge_0.5"] >= 0.8, s
    assert 0.8 <= s["fragments_per_object"] <= 1.5 and s["max_switches"] <= 1, s
    assert s["track_search_p@1"] >= 0.6 and s["track_search_p@3"] >= s["track_search_p@1"], s

    # the top track of a category, read through `search --media video` and `track --json`,
    # overlaps its object as eval says (spatio-temporal IoU at the sampled frames)
    top_cat = next(c for c in doc["per_category"] if c["hits"][0])
    base = ["--config", "tiny", "--data-dir", str(data)]
    rc, out, _ = _cli(["search", top_cat["name"], "--media", "video", "-k", "1", "--json", *base], capsys)
    hit = json.loads(out)["hits"][0]
    rc, out, _ = _cli(["track", str(hit["region_id"]), "--json", *base], capsys)
    frames = {f["frame"]: decode_rle(f["mask"]).astype(bool) for f in json.loads(out)["frames"]}
    obj = next(a for a in gt["annotations"] if a["category_id"] == top_cat["category_id"])
    inter = union = 0
    for f in SAMPLED[obj["video_id"]]:
        g = np.zeros((SIZE, SIZE), bool) if obj["segmentations"][f] is None else decode_rle(obj["segmentations"][f]) > 0
        p = frames.get(f, np.zeros_like(g))
        inter, union = inter + int((g & p).sum()), union + int((g | p).sum())
    assert inter / union >= 0.5

    # a re-run (the file given to --coco is recognised as YouTube-VIS) indexes nothing, same figures
    rc, out, err = _cli([*opts, "--coco", str(ann)], capsys)
    assert rc == 0, err
    assert "index reused" in out
    again = json.loads((data / "eval" / "eval.json").read_text())
    assert again["index_seconds"] is None and again["summary"] == s

    # perturbed ground truth (clip 1's masks moved, clip 2's classes swapped), same videos: lower figures
    bad_gt = root / "perturbed" / "annotations.json"
    bad_gt.parent.mkdir()
    bad_gt.write_text(json.dumps(_perturbed(gt, shift_video=1, relabel_video=2)))
    rc, out, err = _cli([*opts, "--ytvis", str(bad_gt), "--images", str(ann.parent), "--out", str(root / "p")], capsys)
    assert rc == 0 and "index reused" in out, err
    p = json.loads((root / "p" / "eval.json").read_text())
    miou = {o["object_id"]: o["miou"] for o in doc["per_object"]}
    for o in p["per_object"]:
        if o["video_id"] == 1:
            assert o["miou"] < 0.3 < miou[o["object_id"]]
        else:
            assert o["miou"] == pytest.approx(miou[o["object_id"]])
    assert p["summary"]["track_miou"] < s["track_miou"] - 0.25
    hits_at_1 = sum(c["precision_at"]["1"] for c in doc["per_category"])
    perturbed_at_1 = sum(c["precision_at"]["1"] for c in p["per_category"])
    assert perturbed_at_1 <= 1.0 and hits_at_1 - perturbed_at_1 >= 2.5, (perturbed_at_1, hits_at_1)

    # a broken video: recorded as a failure with its reason, left out of the figures, exit code 1
    broken = ann.parent / "broken.mp4"
    good = (ann.parent / "clip_000002.mp4").read_bytes()
    broken.write_bytes(good[: len(good) // 3])
    gt2 = json.loads(json.dumps(gt))
    gt2["videos"][1]["file_name"] = "broken.mp4"
    (ann.parent / "broken.json").write_text(json.dumps(gt2))
    rc, out, err = _cli([*opts, "--ytvis", str(ann.parent / "broken.json"), "--out", str(root / "b")], capsys)
    assert rc == 1 and "not evaluated: broken.mp4" in err
    b = json.loads((root / "b" / "eval.json").read_text())
    assert [f["file_name"] for f in b["failures"]] == ["broken.mp4"] and b["summary"]["videos"] == 1

    # remove says what it removed
    rc, out, _ = _cli(["remove", str(ann.parent), *base], capsys)
    assert rc == 0 and out.strip() == "removed 3 video(s)"
