"""Scenes end to end with the tiny trained models on the held-out shapes corpus (seed 90210,
never used while developing the scene code): labels, relations, relational search (figures of
issue #16's acceptance; definitions in regionsearch/testing/scene_eval.py), the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.masks import decode_rle
from regionsearch.testing.heldout import scene_paths

pytestmark = pytest.mark.slow


def test_labels_relations_and_relational_search_meet_the_targets(shapes_coco, shapes_engine):
    from regionsearch.testing.scene_eval import run_scene_eval

    scenes, _, root = shapes_coco
    figs = run_scene_eval(shapes_engine, scenes, scene_paths(root, len(scenes)))
    sc, rel = figs["scene"], figs["relational"]
    print("scene figures:", json.dumps({k: v for k, v in sc.items() if k != "per_predicate"}))
    print("relational: mean P@5", rel["mean_precision_at_k"], "over", rel["triples"], "triples; strict",
          rel["mean_strict_precision_at_k"], "; plain P@5", figs["plain"]["mean_precision_at_k"])
    assert sc["matched"] >= 0.9 * sc["instances"]
    assert sc["label_accuracy"] >= 0.9
    assert sc["relation_precision"] >= 0.85 and sc["relation_recall"] >= 0.85
    assert rel["triples"] >= 10
    assert rel["mean_precision_at_k"] >= 0.8


def test_a_query_without_a_relation_is_plain_search(shapes_engine):
    from regionsearch.search import search_vector

    eng = shapes_engine
    for text in ("red circle", "a green star", "purple hexagon shape"):
        got = [h.to_json() for h in eng.search(text, k=10)]
        want = [h.to_json() for h in search_vector(eng.datadir, eng.pipeline.encode_text(text), 10, None,
                                                   eng.config.search.oversample,
                                                   whole_margin=eng.config.search.whole_margin)]
        assert got == want and all("relation" not in h for h in got)


def test_relational_hits_hold_and_score_the_mean_of_both_similarities(shapes_engine):
    from regionsearch.scene.relations import ObjectMask, measure, relation_matrices

    eng = shapes_engine
    dd = eng.datadir
    hits = eng.search("a blue square left of a red circle", k=8)
    assert hits
    qs, qo = eng.pipeline.encode_text("a blue square"), eng.pipeline.encode_text("a red circle")
    for h in hits:
        rel = h.relation
        assert rel["predicate"] == "left_of" and not rel.get("scene")
        obj = dd.store.get_region(rel["object"]["region_id"])
        assert obj.image_id == h.image_id and obj.region_id != h.region_id
        s_sim = float(dd.store.embeddings([h.region_id], dd.manifest.dim)[0] @ qs)
        o_sim = float(dd.store.embeddings([obj.region_id], dd.manifest.dim)[0] @ qo)
        # the index holds float32 vectors, SQL float16 copies (used here and for the object): ~1e-4 apart
        assert rel["object"]["score"] == pytest.approx(o_sim, abs=1e-5)
        assert h.score == pytest.approx((s_sim + o_sim) / 2, abs=2e-3)
        w, hh = obj.image_width, obj.image_height
        geom = measure([ObjectMask.from_rle(h.mask).without_specks(), ObjectMask.from_rle(obj.rle).without_specks()],
                       w, hh)
        assert relation_matrices(geom)["left_of"][0, 1]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_cli_scene_indexed_by_path_and_id_and_on_the_fly(shapes_coco, shapes_engine, capsys, tmp_path):
    from PIL import Image

    from regionsearch.cli import main
    from regionsearch.testing.shapes import make_scene

    scenes, _, root = shapes_coco
    path = scene_paths(root, len(scenes))[2]
    dd = str(shapes_engine.data_dir)

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main(["--config", "tiny", *args, "--data-dir", dd])
        out = capsys.readouterr()
        return info.value.code or 0, out.out, out.err

    code, out, err = run("scene", path, "--json", "--save", str(tmp_path / "scene.png"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["image"]["path"] == path and all(o["region_id"] for o in doc["objects"])
    assert (tmp_path / "scene.png").read_bytes()[:4] == b"\x89PNG"
    code, out2, _ = run("scene", str(doc["image"]["id"]), "--json")
    assert code == 0 and json.loads(out2) == doc
    code, text, _ = run("scene", path)
    assert code == 0 and text.strip() == doc["text"]
    # a file that is not indexed: segmented on the fly, nothing stored
    n_before = shapes_engine.datadir.info()["regions"]
    other = make_scene(424242, n_min=3)
    Image.fromarray(other.image).save(tmp_path / "new.png")
    (tmp_path / "labels.txt").write_text("# two names\nred circle\n\nblue square\n" + "\n".join(other.captions) + "\n")
    code, out3, err = run("scene", str(tmp_path / "new.png"), "--json", "--labels", str(tmp_path / "labels.txt"))
    assert code == 0, err
    fly = json.loads(out3)
    assert fly["image"]["id"] is None and fly["objects"] and all(o["region_id"] is None for o in fly["objects"])
    found = {o["label"] for o in fly["objects"]}
    assert found <= {"red circle", "blue square", *other.captions}
    matched = 0
    for o in fly["objects"]:
        m = decode_rle(o["mask"])
        matched += any(np.logical_and(m, g).sum() / np.logical_or(m, g).sum() >= 0.5 and c == o["label"]
                       for g, c in zip(other.masks, other.captions))
    assert matched >= 0.5 * len(other.masks)
    assert shapes_engine.datadir.info()["regions"] == n_before
    # errors: one line, exit code 2
    code, _, err = run("scene", "999999")
    assert code == 2 and err.count("\n") == 1 and "999999" in err
    code, _, err = run("scene", str(tmp_path / "missing.png"))
    assert code == 2 and "neither an indexed image" in err
    code, _, err = run("scene", path, "--labels", " , ")
    assert code == 2 and "vocabulary is empty" in err
