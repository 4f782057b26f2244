"""A data dir whose vectors live in Milvus Lite: index with the tiny preset, search (filters pushed
down), remove, doctor, reindex, reopen from the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from regionsearch.testing.ci import require

require("pymilvus", "pip install -r requirements/scale.txt")
require("milvus_lite", "pip install -r requirements/scale.txt")

from regionsearch.engine import Engine  # noqa: E402
from regionsearch.errors import StoreError  # noqa: E402
from regionsearch.search import SearchFilters  # noqa: E402
from regionsearch.vectors.milvus_index import MilvusIndex  # noqa: E402


def test_milvus_data_dir_end_to_end(corpus, scale_config, tmp_path):
    data = tmp_path / "data"
    url = f"milvus://{tmp_path / 'milvus' / 'vectors.db'}"
    paths = sorted(str(p) for p in corpus.glob("scene_0[0-2].png"))
    with Engine(scale_config, data, vectors_url=url) as eng:
        report = eng.index(paths + [str(corpus / "truncated.png")], progress=False)
        dd = eng.datadir
        assert isinstance(dd.index, MilvusIndex)
        assert report.indexed == 3 and report.failed == 1 and report.regions > 0
        rep = dd.doctor()
        assert rep.ok and rep.index_vectors == report.regions == rep.sql_embeddings
        assert sorted(dd.index.ids().tolist()) == sorted(dd.store.embedding_ids().tolist())

        # search: the best hit for a stored embedding is that region, as with FAISS
        rid = int(dd.store.embedding_ids()[0])
        hits = eng.similar(rid, k=3)
        assert hits and rid not in [h.region_id for h in hits]
        s, i = dd.search_vectors(dd.region_embedding(rid)[None], 1)
        assert i[0, 0] == rid and s[0, 0] == pytest.approx(1.0, abs=1e-2)

        # filters pushed into Milvus: only regions of the one image come back, k of them if there are k
        target = dd.image_by_path(paths[1])
        n_target = len(dd.regions_of_image(target.id))
        q = dd.region_embedding(rid)[None]
        _, ids = dd.search_vectors(q, 50, path_prefix=paths[1])
        got = ids[ids >= 0]
        assert got.size == n_target
        assert {r.image_id for r in dd.fetch_regions(got)} == {target.id}
        hits = eng.search("red circle", k=5, filters=SearchFilters(path_prefix=paths[1], kinds=("whole",)))
        assert [h.image_path for h in hits] == [paths[1]] and hits[0].kind == "whole"

        # remove an image: its vectors leave Milvus
        gone = [r.region_id for r in dd.regions_of_image(dd.image_by_path(paths[0]).id)]
        assert dd.remove_paths([paths[0]]) == 1
        assert not np.isin(dd.index.ids(), gone).any()
        assert dd.doctor().ok

        # doctor repairs a vector lost from Milvus behind SQL's back
        victim = int(dd.store.embedding_ids()[0])
        dd.index.remove(np.array([victim]))
        rep = dd.doctor()
        assert not rep.ok and rep.missing_vectors == [victim]
        assert dd.doctor(repair=True).repaired and dd.doctor().ok
        assert dd.reindex() == len(dd.store.embedding_ids())
        n = len(dd.index)

    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["vectors"] == {"backend": "milvus", "url": url}
    assert manifest["index"]["type"].startswith("milvus:") and manifest["index"]["vectors"] == n
    # reopened without --vectors: the manifest says where the vectors are
    with Engine(scale_config, data) as eng:
        assert isinstance(eng.datadir.index, MilvusIndex) and len(eng.datadir.index) == n
        assert eng.datadir.doctor().ok
    with pytest.raises(StoreError, match="keeps its vectors"):
        Engine(scale_config, data, vectors_url=f"milvus://{tmp_path / 'other.db'}").datadir
