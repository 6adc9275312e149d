"""Hybrid keyword + vector search (issue 16): the keyword index lives in the store, is kept
current by `pixfind index` through everything the vectors survive, and finds photos by the
words around them even with a random-weight model (no help from the vectors)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pixfind.indexer import IndexOptions, run_index
from pixfind.search import keywords
from pixfind.search.encoder import load_encoder
from pixfind.search.engine import Searcher
from pixfind.search.errors import BadQuery
from pixfind.search.query import Query
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec, Filters

from ..conftest import ROOT, TINY, json_out, make_picture


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec(TINY[0], None), "cpu")


def _photos(root: Path, n_other: int = 24) -> Path:
    for i in range(5):
        make_picture(root / "Tokyo 2023" / f"IMG_{i:04d}.jpg", seed=i)
    for i in range(n_other):
        make_picture(root / "misc" / f"IMG_{100 + i:04d}.jpg", seed=100 + i)
    make_picture(root / "misc" / "lisbonWedding_anna.jpg", seed=999)
    return root


def _index(home: Path, root: Path, encoder, **options) -> dict:
    opts = IndexOptions(roots=[str(root)], workers=0, batch_size=8, **options)
    return run_index(home, opts, encoder=encoder)


def _names(hits) -> list[str]:
    return [f"{Path(h.path).parent.name}/{Path(h.path).name}" for h in hits]


def _tokyo(hits) -> int:
    """How many of the leading hits are in the Tokyo folder, in a row."""
    n = 0
    for h in hits:
        if Path(h.path).parent.name != "Tokyo 2023":
            break
        n += 1
    return n


def test_cli_search_tokyo_returns_the_tokyo_folder_first_with_a_random_model(tmp_path, cli):
    root = _photos(tmp_path / "photos")
    cli("index", root, "--model", TINY[0], "--pretrained", TINY[1], "--workers", "0")
    hits = json_out(cli("search", "tokyo", "-k", "8", "--json"))["results"]
    assert [Path(h["path"]).parent.name for h in hits[:5]] == ["Tokyo 2023"] * 5
    assert all(h["matched_fields"] == ["folder"] for h in hits[:5])
    assert all(h["matched_words"] == ["Tokyo"] for h in hits[:5])
    # vector mode alone does not find them (random weights): the keywords did it
    vec = json_out(cli("search", "tokyo", "-k", "5", "--mode", "vector", "--json"))["results"]
    assert [Path(h["path"]).parent.name for h in vec].count("Tokyo 2023") < 5
    kw = json_out(cli("search", "tokyo", "--mode", "keyword", "--json"))["results"]
    assert sorted(Path(h["path"]).parent.name for h in kw) == ["Tokyo 2023"] * 5
    # camelCase file names are split into words
    top = json_out(cli("search", "wedding", "-k", "1", "--json"))["results"][0]
    assert Path(top["path"]).name == "lisbonWedding_anna.jpg" and top["matched_fields"] == ["name"]
    explained = cli("search", "tokyo", "-k", "2", "--explain").stdout
    assert (
        "vector" in explained and "keyword (bm25" in explained and "in folder: Tokyo" in explained
    )


def test_hybrid_keeps_filters_min_score_pages_phrases_and_algebra(tmp_path, encoder):
    root = _photos(tmp_path / "photos")
    home = tmp_path / "index"
    _index(home, root, encoder)
    s = Searcher(home)
    # pages cover the ranking once
    full = s.run(Query.text("tokyo", k=12)).hits
    seen, offset = [], 0
    while offset is not None and offset < 12:
        page = s.run(Query.text("tokyo", k=5, offset=offset))
        seen += [h.id for h in page.hits]
        offset = page.next_offset
    assert seen[:12] == [h.id for h in full]
    # filters apply to the keyword part too
    only_misc = s.run(Query.text("tokyo", k=5, filters=Filters(folder=str(root / "misc")))).hits
    assert all("/misc/" in h.path for h in only_misc)
    # min_score on the fused score
    cut = full[4].score
    assert len(s.run(Query.text("tokyo", k=12, min_score=cut)).hits) == 5
    # a quoted phrase must match
    assert _names(s.run(Query.text('"lisbon wedding"', k=5)).hits) == [
        "misc/lisbonWedding_anna.jpg"
    ]
    assert s.run(Query.text('"wedding lisbon"', k=5)).hits == []
    # query algebra: keyword part from the positive text terms only
    q = Query(terms=(Query.text("tokyo").terms[0], Query.text("2:misc").terms[0]), k=5)
    hits = s.run(q).hits
    assert all(h.keyword is not None for h in hits)
    # an image query is a vector query
    image_q = s.run(Query.image(str(root / "misc" / "IMG_0100.jpg"), k=3)).hits
    assert all(h.keyword is None for h in image_q)
    with pytest.raises(BadQuery):
        s.run(Query.image(str(root / "misc" / "IMG_0100.jpg"), mode="keyword"))
    # a query no keyword matches ranks exactly as in vector mode
    plain = s.run(Query.text("zzyzx qwv", k=10, mode="vector")).hits
    hybrid = s.run(Query.text("zzyzx qwv", k=10)).hits
    assert [(h.id, h.score) for h in plain] == [(h.id, h.score) for h in hybrid]


def test_keyword_index_follows_updates_renames_and_deletions(tmp_path, encoder):
    root = _photos(tmp_path / "photos", n_other=10)
    home = tmp_path / "index"
    _index(home, root, encoder)
    store = Store.open(home)
    assert keywords.index_ready(store)
    version = store.version
    _index(home, root, encoder)  # nothing changed: nothing written, no index rebuilt
    assert Store.open(home).version == version

    make_picture(root / "Kyoto trip" / "temple.jpg", seed=500)  # a new photo
    shutil.move(root / "Tokyo 2023" / "IMG_0000.jpg", root / "misc" / "osaka_castle.jpg")
    (root / "Tokyo 2023" / "IMG_0001.jpg").unlink()
    report = _index(home, root, encoder)
    assert report.moved == 1 and report.removed == 2  # the old path of the move, too
    s = Searcher(home)
    assert _names(s.run(Query.text("kyoto", k=1)).hits) == ["Kyoto trip/temple.jpg"]
    assert _names(s.run(Query.text("temple", k=1)).hits) == ["Kyoto trip/temple.jpg"]
    assert _names(s.run(Query.text("osaka", k=1)).hits) == ["misc/osaka_castle.jpg"]
    tokyo = s.run(Query.text("tokyo", mode="keyword", k=10)).hits
    assert sorted(_names(tokyo)) == [f"Tokyo 2023/IMG_{i:04d}.jpg" for i in (2, 3, 4)]
    stats = Store.open(home).table.index_stats(f"{keywords.COLUMN}_idx")
    assert stats.num_unindexed_rows == 0  # folded into the index after the changes


def test_keyword_index_survives_kill_9_mid_index(tmp_path):
    root = tmp_path / "photos"
    for i in range(60):
        make_picture(root / f"album{i % 3}" / f"shot{i:03d}.png", seed=i, size=(32, 24))
    home = tmp_path / "index"
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(root)]
    cmd += ["--model", TINY[0], "--pretrained", TINY[1], "--batch-size", "4", "--workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    versions = home / "db" / "images.lance" / "_versions"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if versions.is_dir() and len(list(versions.glob("*.manifest"))) >= 5:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    store = Store.open(home)
    committed = store.count()
    assert 0 < committed < 60
    # committed rows are found by their words before any index is built
    ids, _ = keywords.search(store, keywords.parse_keywords("album1"), 100)
    assert 0 < len(ids) <= committed
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    s = Searcher(home)
    hits = s.run(Query.text("album1", mode="keyword", k=100)).hits
    assert len(hits) == 60  # "album 1": album matches all, "1" ranks album1 first
    assert {Path(h.path).parent.name for h in hits[:20]} == {"album1"}
    exact = s.run(Query.text('"album1"', mode="keyword", k=100)).hits  # a phrase must match
    assert len(exact) == 20 and {Path(h.path).parent.name for h in exact} == {"album1"}
    assert keywords.index_ready(s.store)


def test_model_change_rebuild_and_old_index_migration(tmp_path, encoder):
    root = _photos(tmp_path / "photos", n_other=8)
    home = tmp_path / "index"
    _index(home, root, encoder)
    # an index written before keywords existed: no column, searched by vectors alone
    Store.open(home).table.drop_columns([keywords.COLUMN])
    with pytest.raises(BadQuery, match="no keyword index"):  # a fresh searcher: not cold
        Searcher(home).run(Query.text("tokyo", mode="keyword"))
    s = Searcher(home)
    assert s.mode(Query.text("tokyo")) == "vector"
    assert s.run(Query.text("tokyo")).mode == "vector"
    _index(home, root, encoder)  # adds the column in place: no re-embedding
    s = Searcher(home)
    assert s.mode(Query.text("tokyo")) == "hybrid"
    assert _tokyo(s.run(Query.text("tokyo", k=5)).hits) == 5
    # another model: --rebuild starts a new table, keyword index included
    import torch
    from pixfind.search.encoder import save_model_dir
    from pixfind.search.models import get_open_clip

    open_clip = get_open_clip()
    torch.manual_seed(7)
    model = open_clip.create_model("pixfind-tiny", pretrained=None).eval()
    model_dir = save_model_dir(model, tmp_path / "m2", open_clip.get_model_config("pixfind-tiny"))
    other = load_encoder(EncoderSpec(str(model_dir), None), "cpu")
    _index(home, root, other, rebuild=True)
    s = Searcher(home)
    assert s.store.info.identity == other.info.identity
    assert _tokyo(s.run(Query.text("tokyo", k=5)).hits) == 5


def test_api_search_mode_and_matched_words(tmp_path, encoder):
    from fastapi.testclient import TestClient
    from pixfind.api.app import create_app
    from pixfind.api.settings import Settings

    root = _photos(tmp_path / "photos", n_other=6)
    _index(tmp_path / "index", root, encoder)
    app = create_app(Settings(index=tmp_path / "index"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        body = client.get("/api/search", params={"q": "tokyo", "k": 5}).json()
        assert body["mode"] == "hybrid"
        assert [Path(r["path"]).parent.name for r in body["results"]] == ["Tokyo 2023"] * 5
        top = body["results"][0]
        assert top["matched_words"] == ["Tokyo"] and top["matched_fields"] == ["folder"]
        assert top["vector_score"] < top["score"] and top["keyword_score"] > 0
        vec = client.get("/api/search", params={"q": "tokyo", "mode": "vector"}).json()
        assert vec["mode"] == "vector" and all(not r["matched_words"] for r in vec["results"])
        kw = client.get("/api/search", params={"q": "tokyo", "mode": "keyword"}).json()
        assert kw["mode"] == "keyword" and len(kw["results"]) == 5
        assert client.get("/api/search", params={"q": "x", "mode": "nope"}).status_code == 422
