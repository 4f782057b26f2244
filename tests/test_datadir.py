"""DataDir end to end on real SQLite / PostgreSQL: manifest, lookup, commit, crash recovery."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from regionsearch.datadir import DataDir, ImageResult, Manifest
from regionsearch.errors import IndexMismatchError, StoreError
from regionsearch.types import Region

_spec = importlib.util.spec_from_file_location("_regionsearch_conftest_store",
                                               Path(__file__).resolve().parent / "conftest_store.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
pg_database, pg_url, db_url = _mod.pg_database, _mod.pg_url, _mod.db_url

DIM = 16
MANIFEST = Manifest(embedder="ViT-B-32", pretrained="datacomp_xl_s13b_b90k", dim=DIM, pipeline_key="k1",
                    segmenter={"preset": "fast"}, crop={"strategy": "blur"})


def result(path, n=3, sha=None, key="k1", seed=0):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, DIM)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    regs = [Region((0.0, 0.0, 5.0, 5.0), 25 * (i + 1), {"size": [10, 10], "counts": "xyz"}, 0.9, 0.95)
            for i in range(n)]
    return ImageResult(str(path), sha or f"sha-{Path(path).name}", 10, 10, key, regs, e)


@pytest.fixture
def dd_args(tmp_path, db_url):
    url = None if db_url.startswith("sqlite") else db_url
    return tmp_path / "data", url


def assert_consistent(dd):
    rep = dd.doctor()
    assert rep.ok, rep
    assert sorted(dd.index.ids().tolist()) == sorted(dd.store.embedding_ids().tolist())


def test_create_commit_search_reopen(dd_args, tmp_path):
    root, url = dd_args
    with DataDir.open(root, MANIFEST, db_url=url) as dd:
        ids = dd.commit([result(tmp_path / "a.jpg", seed=1), result(tmp_path / "b.jpg", seed=2)],
                        [(str(tmp_path / "c.jpg"), None, "cannot decode")])
        assert len(ids) == 2
        regions = dd.regions_of_image(ids[0])
        emb = dd.region_embedding(regions[1].region_id)
        s, i = dd.search_vectors(emb[None], 3)
        assert i[0, 0] == regions[1].region_id and s[0, 0] == pytest.approx(1, abs=1e-3)
        hits = dd.fetch_regions(i[0], min_area=50)
        assert all(h.area >= 50 for h in hits)
        assert [f.path for f in dd.failures()] == [str(tmp_path / "c.jpg")]
        info = dd.info()
        assert (info["images_indexed"], info["images_failed"], info["regions"], info["vectors"]) == (2, 1, 6, 6)
        assert info["index_type"] == "Flat"
    files = {p.name for p in root.iterdir()}
    assert {"manifest.json", "vectors.faiss"} <= files and ("metadata.sqlite" in files) == (url is None)
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk["embedder"] == "ViT-B-32" and on_disk["dim"] == DIM and on_disk["generation"] >= 2
    with DataDir.open(root, db_url=url) as dd:  # manifest=None: open existing
        assert dd.manifest == MANIFEST and len(dd.index) == 6
        assert_consistent(dd)


def test_lookup_done_moved_changed_new(dd_args, tmp_path):
    root, url = dd_args
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"a")
    with DataDir.open(root, MANIFEST, db_url=url) as dd:
        dd.commit([result(a, sha="S")])
        assert dd.lookup(str(a), "S", "k1") == "done"
        assert dd.lookup(str(a), "S", "k2") == "changed"  # pipeline changed
        assert dd.lookup(str(a), "T", "k1") == "changed"  # content changed
        c = tmp_path / "c.jpg"
        assert dd.lookup(str(c), "S", "k1") == "done"     # a copy: a.jpg still exists
        assert dd.image_by_path(str(c)).id == dd.image_by_path(str(a)).id  # ... and c is recorded as its path
        assert dd.lookup(str(c), "U", "k1") == "changed"  # the copy's content changed
        assert dd.lookup(str(b), "U", "k1") == "new"
        a.rename(b)
        before = [r.region_id for r in dd.regions_of_image(dd.image_by_path(str(a)).id)]
        assert dd.lookup(str(b), "S", "k1") == "moved"
        img = dd.image_by_path(str(b))
        assert dd.image_by_path(str(a)) is None
        assert [r.region_id for r in dd.regions_of_image(img.id)] == before  # nothing re-indexed
        assert dd.lookup(str(b), "S", "k1") == "done"
        dd.record_failure(str(tmp_path / "x.jpg"), "X", "boom")
        assert dd.lookup(str(tmp_path / "x.jpg"), "X", "k1") == "changed"  # failures are retried


def test_replace_changed_image_and_remove(dd_args, tmp_path):
    root, url = dd_args
    with DataDir.open(root, MANIFEST, db_url=url, index_factory="HNSW32,Flat") as dd:
        first = dd.commit([result(tmp_path / "a.jpg", n=4, seed=1), result(tmp_path / "b.jpg", n=2, seed=5)])
        old = [r.region_id for r in dd.regions_of_image(first[0])]
        old_vecs = np.stack([dd.region_embedding(i) for i in old])
        second = dd.commit([result(tmp_path / "a.jpg", n=2, sha="new", seed=2)])
        assert second[0] != first[0] and dd.fetch_regions(old) == []
        # the replaced regions' vectors never come back
        assert not np.isin(dd.search_vectors(old_vecs, 8)[1], old).any()
        assert dd.index.index_type == "HNSW32,Flat" and len(dd.index) == 4
        assert_consistent(dd)
        assert dd.remove_paths([str(tmp_path / "b.jpg"), str(tmp_path / "nope.jpg")]) == 1
        assert len(dd.index) == 2
        assert_consistent(dd)
    with DataDir.open(root, db_url=url) as dd:
        assert not np.isin(dd.search_vectors(old_vecs, 4)[1], old).any()
        assert_consistent(dd)


def test_manifest_mismatch(tmp_path):
    root = tmp_path / "data"
    DataDir.open(root, MANIFEST).close()
    for bad in (Manifest("ViT-L-14", "openai", DIM), Manifest("ViT-B-32", "laion2b", DIM),
                Manifest("ViT-B-32", "datacomp_xl_s13b_b90k", 32)):
        with pytest.raises(IndexMismatchError, match="--data-dir"):
            DataDir.open(root, bad)
    # segmenter / crop / pipeline key changes are allowed and recorded
    changed = Manifest("ViT-B-32", "datacomp_xl_s13b_b90k", DIM, segmenter={"preset": "dense"}, pipeline_key="k2")
    with DataDir.open(root, changed) as dd:
        assert dd.manifest.pipeline_key == "k2"
    data = json.loads((root / "manifest.json").read_text())
    assert data["pipeline_key"] == "k2" and data["history"][-1]["pipeline_key"] == "k1"
    with pytest.raises(StoreError, match="no regionsearch data dir at .*; create one with"):
        DataDir.open(tmp_path / "elsewhere")


def test_writer_lock_and_reader_reload(tmp_path):
    root = tmp_path / "data"
    writer = DataDir.open(root, MANIFEST)
    with pytest.raises(StoreError, match="another process"):
        DataDir.open(root, MANIFEST)
    reader = DataDir.open(root, readonly=True)
    assert len(reader.index) == 0 and reader.reload_if_changed() is False
    writer.commit([result(tmp_path / "a.jpg", n=3)])
    writer.save()
    assert reader.reload_if_changed() is True and len(reader.index) == 3
    assert reader.fetch_regions(reader.search_vectors(np.ones(DIM, np.float32), 3)[1][0])
    with pytest.raises(StoreError, match="read-only"):
        reader.commit([result(tmp_path / "b.jpg")])
    writer.close()
    reader.close()


def test_crash_recovery_sync_doctor_repair(dd_args, tmp_path):
    """Rows committed without their vectors saved, and vectors saved for rows that are gone."""
    root, url = dd_args
    dd = DataDir.open(root, MANIFEST, db_url=url, index_factory="HNSW32,Flat")
    dd.commit([result(tmp_path / f"{i}.jpg", n=3, seed=i) for i in range(5)])
    dd.save()
    # simulate kill -9: more rows committed in SQL, index never saved again
    dd.commit([result(tmp_path / "late.jpg", n=3, seed=9)])
    # ... and rows deleted in SQL whose vectors are still in the saved index
    n, gone = dd.store.delete_paths([str(tmp_path / "0.jpg")])
    dd.store.close()
    dd._closed = True
    dd._writer_lock.release()
    # doctor on the raw state (readonly open does not sync) reports both problems
    with DataDir.open(root, readonly=True, db_url=url) as ro:
        rep = ro.doctor()
        assert not rep.ok
        assert len(rep.missing_vectors) == 3 and sorted(rep.orphan_vectors) == sorted(gone.tolist())
    # opening for writing syncs; everything agrees and removed ids never come back
    with DataDir.open(root, db_url=url) as dd2:
        assert_consistent(dd2)
        assert not np.isin(dd2.index.ids(), gone).any()
        assert len(dd2.index) == 15
    # doctor --repair path (corrupt the index by hand: drop one vector, add an orphan)
    with DataDir.open(root, db_url=url) as dd3:
        some = int(dd3.index.ids()[0])
        dd3.index.remove(np.array([some]))
        dd3.index.add(np.array([10**6]), np.ones((1, DIM), np.float32) / 4)
        rep = dd3.doctor()
        assert rep.missing_vectors == [some] and rep.orphan_vectors == [10**6]
        fixed = dd3.doctor(repair=True)
        assert fixed.repaired and fixed.actions
        assert_consistent(dd3)
        assert 10**6 not in dd3.search_vectors(np.ones(DIM, np.float32) / 4, 20)[1]


def test_regions_without_embeddings_are_repaired(tmp_path):
    from sqlalchemy import delete

    from regionsearch.store import embeddings

    with DataDir.open(tmp_path / "d", MANIFEST) as dd:
        ids = dd.commit([result(tmp_path / "a.jpg", n=2), result(tmp_path / "b.jpg", n=2, seed=3)])
        rid = dd.regions_of_image(ids[0])[0].region_id
        with dd.store.engine.begin() as conn:
            conn.execute(delete(embeddings).where(embeddings.c.region_id == rid))
        rep = dd.doctor()
        assert rep.regions_without_embeddings == [rid] and not rep.ok
        dd.doctor(repair=True)
        assert dd.image_by_path(str(tmp_path / "a.jpg")) is None  # will be indexed again
        assert_consistent(dd)


def test_reindex_changes_type(dd_args, tmp_path):
    root, url = dd_args
    with DataDir.open(root, MANIFEST, db_url=url) as dd:
        dd.commit([result(tmp_path / f"{i}.jpg", n=5, seed=i) for i in range(20)])
        q = dd.region_embedding(dd.regions_of_image(1)[2].region_id)
        before = dd.search_vectors(q, 5)[1]
        assert dd.reindex("HNSW32,Flat") == 100
        assert dd.index.index_type == "HNSW32,Flat" and dd.manifest.index_factory == "HNSW32,Flat"
        assert dd.search_vectors(q, 1)[1][0, 0] == before[0, 0]
        assert_consistent(dd)
    with DataDir.open(root, db_url=url) as dd:
        assert dd.index.index_type == "HNSW32,Flat" and len(dd.index) == 100


def test_temp_file_from_crashed_save_is_ignored(tmp_path):
    root = tmp_path / "d"
    with DataDir.open(root, MANIFEST) as dd:
        dd.commit([result(tmp_path / "a.jpg", n=3)])
    (root / ".vectors.faiss.tmp-99-abc").write_bytes(b"half")
    (root / ".manifest.json.tmp-99-abc").write_text("{")
    with DataDir.open(root, readonly=True) as ro:
        assert len(ro.index) == 3
    with DataDir.open(root) as dd:  # the writer cleans them up
        assert len(dd.index) == 3
    assert not [p for p in root.iterdir() if ".tmp-" in p.name]


def test_other_database_is_refused(tmp_path):
    root = tmp_path / "d"
    with DataDir.open(root, MANIFEST) as dd:
        dd.commit([result(tmp_path / "a.jpg")])
    (root / "metadata.sqlite").unlink()
    for extra in ("-wal", "-shm"):
        (root / f"metadata.sqlite{extra}").unlink(missing_ok=True)
    with pytest.raises(StoreError, match="--db "):
        DataDir.open(root)
