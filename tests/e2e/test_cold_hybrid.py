"""The cold hybrid query (search/cold/bm25.py, search/cold/hybridpath.py): the default
`pixfind search "words"` answered from the query snapshot, keyword half included, without
importing LanceDB. Its hits must be the ordinary path's, hit for hit, keyword parts too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.cold.fastpath import hybrid_search
from pixfind.search.encoder import save_model_dir
from pixfind.search.engine import Searcher
from pixfind.search.models import get_open_clip
from pixfind.search.query import Query
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, TINY, make_picture

NAMES = {
    "Tokyo 2023": ["IMG_0001", "IMG_0002", "tokyoTower_night", "shibuya crossing rain"],
    "Wedding Lisbon": ["anna_and_joao", "first-dance", "cake cutting", "IMG_0003"],
    "beach days": ["dog_on_the_beach", "two dogs running", "sunset", "IMG_0004", "IMG_0005"],
    "misc": [f"IMG_{i:04d}" for i in range(10, 22)] + ["red_car", "the dog again"],
}
QUERIES = [
    "tokyo", "a dog", "dogs on the beach", "IMG", "img 0003", "wedding cake", "the",
    "sunset over tokyo", "red car", "nothing matches this", "dance dance", "night rain",
]  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """An index of 27 named pictures, its model a directory (so the snapshot has a text
    tower recipe: random pixfind-tiny weights have no checkpoint file to point to)."""
    open_clip = get_open_clip()
    model = open_clip.create_model(TINY[0], pretrained=None)
    cfg = open_clip.get_model_config(TINY[0])
    model_dir = save_model_dir(model, tmp_path_factory.mktemp("cold-hybrid") / "model", cfg)
    root = tmp_path_factory.mktemp("cold-hybrid-photos")
    seed = 0
    for folder, names in NAMES.items():
        for name in names:
            seed += 1
            make_picture(root / folder / f"{name}.jpg", seed=seed)
    home = root.parent / (root.name + "-index")
    options = IndexOptions(roots=[str(root)], workers=0, batch_size=8)
    run_index(home, options, EncoderSpec(str(model_dir), None), "cpu")
    return home


def _same(fast, ordinary) -> None:
    assert [h.id for h in fast] == [h.id for h in ordinary]
    for f, o in zip(fast, ordinary, strict=True):
        assert (f.rank, f.path, f.width, f.height, f.file_type) == (
            o.rank, o.path, o.width, o.height, o.file_type,
        )  # fmt: skip
        assert abs(f.score - o.score) < 1e-5
        assert (f.keyword is None) == (o.keyword is None)
        if f.keyword is not None:
            fk, ok = f.keyword, o.keyword
            assert (fk.rank, fk.fields, fk.words) == (ok.rank, ok.fields, ok.words)
            assert abs(fk.score - ok.score) < 1e-5 and abs(fk.scaled - ok.scaled) < 1e-5
        assert f.to_dict().keys() == o.to_dict().keys()


@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_cold_hybrid_equals_ordinary_hybrid(home, fusion):
    ordinary = Searcher(home, cold=False)
    ordinary.fusion = fusion
    served = 0
    for text in QUERIES:
        for options in ({"k": 5}, {"k": 12, "min_score": -1.0}):
            query = Query.text(text, **options)
            fast = hybrid_search(home, query, query.k + 1, fusion, 1.0, 0.7)
            served += fast is not None
            want = ordinary.run(query)
            assert want.mode == "hybrid"
            if fast is not None:
                _same(fast[: query.k], want.hits)
    assert served == 2 * len(QUERIES), "the cold hybrid path did not apply"


def test_searcher_answers_hybrid_cold(home):
    results = Searcher(home).run(Query.text("dogs on the beach", k=4))
    assert (results.path, results.mode) == ("cold", "hybrid")
    _same(results.hits, Searcher(home, cold=False).run(Query.text("dogs on the beach", k=4)).hits)
    # what the snapshot can't rank as LanceDB does goes warm: phrases, non-ASCII text
    for text in ['"beach days" dog', "caf\u00e9 tokyo"]:
        assert Searcher(home).run(Query.text(text, k=4)).path == "warm"


def test_cold_cli_hybrid_search_skips_lancedb(home):
    code = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('pixfind.cli', run_name='__main__')\n"
        "finally:\n"
        "    heavy = [m for m in ('open_clip', 'lancedb', 'torch') if m in sys.modules]\n"
        "    print('IMPORTED', ','.join(heavy), file=sys.stderr)\n"
    )
    outs = {}
    for fast in ("1", "0"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "--index", str(home), "search", "tokyo", "-k", "3"],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**os.environ, "PIXFIND_FAST_PATH": fast},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[fast] = proc.stdout
        heavy = proc.stderr.rsplit("IMPORTED", 1)[1].strip()
        assert ("lancedb" in heavy) == (fast == "0")
    assert outs["1"] == outs["0"] and "Tokyo 2023" in outs["1"]
