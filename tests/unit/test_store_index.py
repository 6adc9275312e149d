"""Store (real LanceDB on disk) + FAISS ranking vs brute-force numpy."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.errors import IndexMismatch
from pixfind.search.index import INDEX_DIR, VectorIndex
from pixfind.search.store import Store, path_id
from pixfind.search.types import ImageRecord, ModelInfo

INFO = ModelInfo("test-model", None, "test-model:random", 32, 64, (0.5,) * 3, (0.5,) * 3)


def _fill(store: Store, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, INFO.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    records = [
        ImageRecord(path_id(f"/p/{i}.jpg"), f"/p/{i}.jpg", 1.0, 10, 4, 3, f"h{i}", 0.0)
        for i in range(n)
    ]
    for start in range(0, n, 200):  # several commits, as the indexer writes
        store.upsert(records[start : start + 200], vecs[start : start + 200])
    return vecs


def test_faiss_topk_equals_numpy_bruteforce(tmp_path):
    store = Store.create(tmp_path, INFO)
    vecs = _fill(store, 1000)
    index = VectorIndex.for_store(store)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((20, INFO.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores, ids = index.search(queries, 10)
    ids_by_pos = np.array([path_id(f"/p/{i}.jpg") for i in range(1000)])
    sims = queries @ vecs.T
    expected = np.argsort(-sims, axis=1)[:, :10]
    np.testing.assert_array_equal(ids, ids_by_pos[expected])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, expected, 1), atol=1e-5)


def test_index_is_saved_and_rebuilt_when_stale(tmp_path):
    store = Store.create(tmp_path, INFO)
    _fill(store, 50)
    first = VectorIndex.for_store(store)
    assert (tmp_path / INDEX_DIR / "infos.json").is_file()
    again = VectorIndex.for_store(store)
    assert again.infos.built_at == first.infos.built_at  # loaded, not rebuilt
    store.delete_paths(["/p/0.jpg"])
    rebuilt = VectorIndex.for_store(store)
    assert rebuilt.infos.rows == 49 and rebuilt.infos.store_version == store.version
    assert path_id("/p/0.jpg") not in set(rebuilt.ids.tolist())


def test_upsert_replaces_by_path_and_reopen_keeps_model(tmp_path):
    store = Store.create(tmp_path, INFO)
    _fill(store, 10)
    _fill(store, 10, seed=5)  # same paths again
    reopened = Store.open(tmp_path)
    assert reopened.count() == 10
    assert reopened.info == INFO


def test_other_model_is_refused_with_both_names(tmp_path):
    store = Store.create(tmp_path, INFO)
    other = ModelInfo("ViT-B-32", "openai", "ViT-B-32:openai", 512, 224, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(IndexMismatch, match=r"test-model.*ViT-B-32/openai.*rebuild"):
        store.check_model(other)
