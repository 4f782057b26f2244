"""The evaluation harness on the held-out shapes world exported as COCO, with the tiny preset."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

# From benchmarks/results/quality_seeds.json (the committed tiny models on 3 held-out corpora,
# seeds 90210-90212; this test's corpus is the first): mean AP 0.825 / 0.803 / 0.775, mean P@5
# 0.833 / 0.807 / 0.747, ceiling 0.980 / 0.975 / 0.975. Threshold = min - spread, rounded down:
# seed-to-seed noise passes; falling further below the worst seed than the seeds spread fails.
MIN_MEAN_AP = 0.72
MIN_MEAN_P5 = 0.66
MIN_CEILING = 0.96


def test_eval_reuses_the_index_and_meets_thresholds(shapes_coco, shapes_engine, tmp_path):
    from regionsearch.evaluation.coco import load_coco
    from regionsearch.evaluation.run import evaluate

    scenes, ann, root = shapes_coco
    summary = evaluate(shapes_engine, load_coco(ann), root, ks=(1, 5, 10))
    doc = summary.to_json()
    json.dumps(doc)
    print("mean AP", summary.mean_ap, "P@k", dict(summary.mean_precision_at), "ceiling", summary.ceiling.fraction)
    assert summary.n_categories_evaluated == 30
    assert summary.mean_ap >= MIN_MEAN_AP
    assert summary.mean_precision_at[5] >= MIN_MEAN_P5
    assert summary.ceiling.fraction >= MIN_CEILING


def test_eval_cli_writes_table_json_and_plots(shapes_coco, shapes_engine, tmp_path, capsys):
    from regionsearch.cli import main

    scenes, ann, root = shapes_coco
    out = tmp_path / "out"
    shapes_engine.close()  # the CLI opens the data dir itself (one writer at a time)
    with pytest.raises(SystemExit) as info:
        main(["--config", "tiny", "eval", "--coco", str(ann), "--images", str(root), "--data-dir",
              str(shapes_engine.data_dir), "--k", "1,5", "--out", str(out), "--no-progress"])
    assert info.value.code in (0, None)
    text = capsys.readouterr().out
    assert "red circle" in text and "mean" in text
    doc = json.loads((out / "eval.json").read_text())
    assert doc["mean"]["ap"] is not None and doc["templates"] == ["a photo of a {}."]
    assert {c["name"] for c in doc["per_category"]} >= {"red circle", "purple hexagon"}
    assert (out / "pr_curves.png").stat().st_size > 1000
    assert (out / "per_category.png").stat().st_size > 1000
