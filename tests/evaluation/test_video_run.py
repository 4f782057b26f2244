"""The parts of `eval` on YouTube-VIS ground truth that need no model: telling the ground truth's
kind, finding its videos, the report and its JSON; and `python -m regionsearch.testing.clips`."""

from __future__ import annotations

import json
import math

import pytest

from regionsearch.errors import ConfigError
from regionsearch.evaluation.video import ObjectResult, TrackingResult, parse_ytvis
from regionsearch.evaluation.video_run import (
    CategoryRetrieval,
    VideoEvalRun,
    format_video_report,
    ground_truth_kind,
    load_video_gt,
    video_paths,
    write_video_json,
)

YTVIS = {"videos": [{"id": 1, "length": 2, "file_name": "a.mp4"}, {"id": 2, "length": 1, "file_name": "sub/b.mp4"}],
         "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "segmentations": [None, None]}],
         "categories": [{"id": 1, "name": "red circle"}]}
COCO = {"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}], "annotations": [],
        "categories": [{"id": 1, "name": "red circle"}]}


def test_ground_truth_kind_by_content(tmp_path):
    (tmp_path / "v.json").write_text(json.dumps(YTVIS))
    (tmp_path / "c.json").write_text(json.dumps(COCO))
    (tmp_path / "bad.json").write_text("{not json")
    assert ground_truth_kind(tmp_path / "v.json") == "ytvis"
    assert ground_truth_kind(tmp_path / "c.json") == "coco"
    # a video list whose annotations carry COCO-style 'segmentation' is not YouTube-VIS
    mixed = {**COCO, "videos": [], "annotations": [{"id": 1, "segmentation": []}]}
    (tmp_path / "m.json").write_text(json.dumps(mixed))
    assert ground_truth_kind(tmp_path / "m.json") == "coco"
    with pytest.raises(ConfigError, match="is not valid JSON"):
        ground_truth_kind(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="does not exist"):
        ground_truth_kind(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="pass COCO image annotations with --coco"):
        load_video_gt(tmp_path / "c.json")


def test_video_paths_relative_to_the_root_and_missing_ones_named(tmp_path):
    gt = parse_ytvis(YTVIS, "gt.json")
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"1 video\(s\) of gt.json are not under .* \(e.g. sub/b.mp4\).*--images"):
        video_paths(gt, tmp_path)
    (tmp_path / "sub" / "b.mp4").write_bytes(b"x")
    assert video_paths(gt, tmp_path) == {1: tmp_path / "a.mp4", 2: tmp_path / "sub" / "b.mp4"}
    frames = parse_ytvis({**YTVIS, "videos": [{"id": 1, "length": 2, "file_names": ["0.jpg", "1.jpg"]},
                                              YTVIS["videos"][1]]}, "yt.json")
    with pytest.raises(ConfigError, match="folder of frames"):
        video_paths(frames, tmp_path)


def _run() -> VideoEvalRun:
    tracking = TrackingResult([ObjectResult(1, 1, 1, 0.9, 4, 0, 1), ObjectResult(1, 2, 2, 0.4, 4, 2, 2)], {1: 2})
    retrieval = [CategoryRetrieval(1, "red circle", 1, (True, False), {1: 1.0, 3: 1.0}),
                 CategoryRetrieval(2, "blue star", 1, (False, False), {1: 0.0, 3: 0.0})]
    return VideoEvalRun(tracking, retrieval, (1, 3), index_seconds=None, tracks=3, evaluated_frames=4,
                        failures=[{"file_name": "b.mp4", "reason": "truncated video"}])


def test_report_and_json(tmp_path):
    run = _run()
    text = format_video_report(run)
    assert "index reused" in text and "0.650" in text and "0.500" in text  # mIoU mean, share >= 0.5
    assert "2.00 (max 2)" in text and "1.50" in text  # switches per clip, fragments per object
    assert "mean (2)" in text.splitlines()[-2] and "0.500" in text.splitlines()[-2]
    doc = json.loads(write_video_json(run, tmp_path / "o" / "eval.json", extra={"templates": ["{}"]}).read_text())
    s = doc["summary"]
    assert doc["templates"] == ["{}"] and doc["index_seconds"] is None and doc["failures"][0]["file_name"] == "b.mp4"
    assert (s["track_miou"], s["share_miou_ge_0.5"], s["max_switches"], s["track_search_p@1"]) == (0.65, 0.5, 2, 0.5)
    assert doc["per_category"][0]["precision_at"] == {"1": 1.0, "3": 1.0}
    # no objects: undefined figures are null in the JSON, '-' in the table
    empty = VideoEvalRun(TrackingResult(), [], (1,), 1.0, 0, 0)
    assert math.isnan(empty.tracking.mean_miou)
    assert json.loads(write_video_json(empty, tmp_path / "e.json").read_text())["summary"]["track_miou"] is None
    assert "-" in format_video_report(empty)


def test_clips_module_writes_a_corpus_for_eval(tmp_path, capsys):
    from regionsearch.testing.clips import main

    assert main([str(tmp_path / "c"), "--count", "2", "--frames", "3", "--size", "64", "--preset", "fast"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 clips" in out and "eval --ytvis" in out
    gt = json.loads((tmp_path / "c" / "annotations.json").read_text())
    assert [v["file_name"] for v in gt["videos"]] == ["clip_000001.mp4", "clip_000002.mp4"]
    assert all((tmp_path / "c" / v["file_name"]).is_file() and v["length"] == 3 for v in gt["videos"])
    assert ground_truth_kind(tmp_path / "c" / "annotations.json") == "ytvis"
    for bad in (["--size", "63"], ["--count", "0"], ["--preset", "slowish"], ["--fps", "0"]):
        with pytest.raises(SystemExit) as info:
            main([str(tmp_path / "d"), *bad])
        assert info.value.code == 2
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "file")])
