"""The cold hybrid query (search/cold/bm25.py, search/cold/hybridpath.py): the default
`pixfind search "words"` answered from the query snapshot, keyword half included, without
importing LanceDB. Its hits must be the ordinary path's, hit for hit, keyword parts too."""

from __future__ import annotations

import json
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


def _cli(home: Path, *args: str, fast: str = "1") -> tuple[str, list[str]]:
    """`pixfind ...` in a fresh process: (its stdout, the heavy modules it imported)."""
    code = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('pixfind.cli', run_name='__main__')\n"
        "finally:\n"
        "    heavy = [m for m in ('open_clip', 'lancedb', 'torch', 'typer') if m in sys.modules]\n"
        "    print('IMPORTED', ','.join(heavy), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "--index", str(home), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PIXFIND_FAST_PATH": fast},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr.rsplit("IMPORTED", 1)[1].strip().split(",")


@pytest.mark.parametrize(
    "args",
    [
        ("search", "tokyo", "-k", "3"),
        ("search", "dogs on the beach", "--json", "--top-k=4"),
        ("search", "--mode", "vector", "red car", "--json", "-k", "2"),
    ],
)
def test_cold_cli_search_prints_what_typer_prints_without_lancedb_or_typer(home, args):
    fast, heavy = _cli(home, *args)
    # (torch: this model directory's text tower is the plain torch one, search/cold/texttower.py)
    assert not {"lancedb", "typer", "open_clip"} & set(heavy)
    ordinary, heavy = _cli(home, *args, fast="0")
    assert {"lancedb", "typer"} <= set(heavy)
    assert fast.strip() and fast.splitlines()[0] == ordinary.splitlines()[0]
    if "--json" not in args:
        assert fast == ordinary
        return
    # numpy and FAISS sum a dot product in other orders: the last printed digit may differ
    fast_hits, ordinary_hits = json.loads(fast)["results"], json.loads(ordinary)["results"]
    assert len(fast_hits) == len(ordinary_hits) > 0
    for f, o in zip(fast_hits, ordinary_hits, strict=True):
        for key in ("score", "image_score", "vector_score", "keyword_score"):
            assert abs((f.pop(key, 0) or 0) - (o.pop(key, 0) or 0)) < 1e-5
        assert f == o


def test_cli_lines_the_plain_path_does_not_take_go_to_typer(home):
    for args in (
        ("search", "tokyo", "--paths"),  # an option it does not know
        ("search", "tokyo", "-k", "x"),  # Typer words the error
        ("search", '"beach days" dog'),  # answered warm, through LanceDB
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pixfind.cli", "--index", str(home), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
        if args[-1] == "x":
            assert proc.returncode == 2 and "Invalid value" in proc.stderr
        else:
            assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr[-2000:]


def test_a_snapshot_of_an_older_format_is_rebuilt(home, tmp_path):
    import json
    import shutil

    from pixfind.search.cold import snapshot
    from pixfind.search.index import INDEX_DIR

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    meta_file = copy / INDEX_DIR / snapshot.META
    meta_file.write_text(json.dumps(json.loads(meta_file.read_text()) | {"format": 1}))
    assert Searcher(copy).run(Query.text("tokyo", k=3)).path == "warm"
    assert snapshot.read_meta(copy / INDEX_DIR)["format"] == snapshot.SNAPSHOT_FORMAT
    assert Searcher(copy).run(Query.text("tokyo", k=3)).path == "cold"
