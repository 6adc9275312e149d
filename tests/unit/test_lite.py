"""The cold path's FAISS-free Flat search (search/cold/lite.py) gives FAISS's hits: the same
positions in the same order and the same scores, duplicates (equal scores) included, where
it hands those to FAISS."""

from __future__ import annotations

import faiss
import numpy as np
from pixfind.search.cold.lite import LiteFlatIndex
from pixfind.search.index import IndexInfos, VectorIndex
from pixfind.search.ranking import search_positions


def _saved(tmp_path, rows: int = 400, dim: int = 32):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for a, b in ((5, 300), (17, 3), (200, 201), (200, 202)):
        x[b] = x[a]  # duplicate photos: equal scores
    flat = faiss.IndexFlatIP(dim)
    flat.add(x)
    infos = IndexInfos("Flat", rows, dim, 1, "test", 0.0, 0.0)
    ids = rng.permutation(rows * 10)[:rows].astype(np.int64)
    VectorIndex(flat, ids, infos).save(tmp_path / "faiss")
    return x, tmp_path / "faiss"


def test_lite_flat_search_gives_faiss_hits(tmp_path):
    x, directory = _saved(tmp_path)
    lite, real = LiteFlatIndex.load(directory), VectorIndex.load(directory)
    assert lite is not None and real is not None and np.array_equal(lite.ids, real.ids)
    rng = np.random.default_rng(1)
    handed = 0
    for n in range(120):
        base = x[[5, 17, 200, n][n % 4]] if n < 40 else rng.standard_normal(x.shape[1])
        q = (base + 0.2 * rng.standard_normal(x.shape[1])).astype(np.float32)
        q /= np.linalg.norm(q)
        handed += lite._top(x @ q, np.arange(len(x)), 10) is None
        for k in (1, 10, 60):
            got, want = lite.search_positions(q[None], k), real.search_positions(q[None], k)
            assert got[1].tolist() == want[1].tolist()
            np.testing.assert_allclose(got[0], want[0], atol=1e-6)
            among = np.sort(rng.choice(len(x), 150, replace=False))
            g, w = lite.search_among(q, k, among), search_positions(real, q, k, among)
            assert g[2].tolist() == w[2].tolist() and g[1].tolist() == w[1].tolist()
            np.testing.assert_allclose(g[0], w[0], atol=1e-6)
    assert 0 < handed < 120  # both ways were taken


def test_lite_refuses_what_it_cannot_read(tmp_path):
    _, directory = _saved(tmp_path)
    (directory / "index.faiss").write_bytes((directory / "index.faiss").read_bytes()[:-4])
    assert LiteFlatIndex.load(directory) is None  # damaged: its checksum no longer matches
    assert LiteFlatIndex.load(tmp_path / "nowhere") is None
