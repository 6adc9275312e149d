"""Searcher.run(Query): the one entry point picks the cold or the warm path itself, pages,
and gives the same hits on both paths (real index, real model directory, real files)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pixfind.search.encoder import save_model_dir
from pixfind.search.engine import Searcher
from pixfind.search.errors import NoIndex, UnsupportedImage
from pixfind.search.models import get_open_clip
from pixfind.search.query import Query
from pixfind.search.types import EncoderSpec

from ..conftest import make_picture


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """30 real pictures indexed with a model directory (so the cold path has a recipe)."""
    import torch
    from pixfind.indexer.pipeline import IndexOptions, run_index

    open_clip = get_open_clip()
    torch.manual_seed(1)
    model = open_clip.create_model("pixfind-tiny", pretrained=None).eval()
    base = tmp_path_factory.mktemp("engine")
    model_dir = save_model_dir(model, base / "model", open_clip.get_model_config("pixfind-tiny"))
    root = base / "photos"
    for i in range(30):
        make_picture(root / f"p{i:02d}.jpg", seed=200 + i)
    run_index(base / "index", IndexOptions(roots=[root]), EncoderSpec(str(model_dir), None), "cpu")
    return base / "index"


def test_first_plain_text_query_takes_the_cold_path_with_the_warm_paths_hits(indexed):
    # the cold path ranks by vectors alone: an index with a keyword index is searched hybrid
    # by default (tests/e2e/test_hybrid.py), so the cold path serves vector mode
    fresh = Searcher(indexed)
    cold = fresh.run(Query.text("a red square", k=7, mode="vector"))
    assert cold.path == "cold"
    again = fresh.run(Query.text("a red square", k=7, mode="vector"))  # it stays: warm
    assert again.path == "warm"
    warm = Searcher(indexed, cold=False).run(Query.text("a red square", k=7, mode="vector"))
    assert warm.path == "warm"
    for a, b in ((cold, warm), (again, warm)):
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        assert [h.rank for h in a.hits] == list(range(1, 8))
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-5)


def test_hybrid_queries_take_the_cold_path_too(indexed):
    cold = Searcher(indexed).run(Query.text("a red square", k=3))
    warm = Searcher(indexed, cold=False).run(Query.text("a red square", k=3))
    assert (cold.path, cold.mode, warm.path, warm.mode) == ("cold", "hybrid", "warm", "hybrid")
    assert [h.id for h in cold.hits] == [h.id for h in warm.hits]


def test_filters_and_image_terms_take_the_warm_path(indexed):
    from pixfind.search.types import Filters

    assert Searcher(indexed).run(Query.text("x", filters=Filters(min_width=10))).path == "warm"
    photo = indexed.parent / "photos" / "p03.jpg"
    result = Searcher(indexed).run(Query.image(str(photo), k=5))
    assert result.path == "warm"
    assert str(photo) not in [h.path for h in result.hits]  # the query image itself is left out


def test_pages_cover_the_ranking_once_and_say_when_it_ends(indexed):
    searcher = Searcher(indexed, cold=False)
    full = searcher.run(Query.text("a photo", k=30)).hits
    seen, offset, pages = [], 0, 0
    while offset is not None:
        page = searcher.run(Query.text("a photo", k=8, offset=offset))
        assert [h.rank for h in page.hits] == list(range(offset + 1, offset + 1 + len(page.hits)))
        seen += [h.id for h in page.hits]
        offset, pages = page.next_offset, pages + 1
    assert seen == [h.id for h in full] and pages == 4


def test_date_order_sorts_the_top_k_by_score(indexed):
    searcher = Searcher(indexed, cold=False)
    by_score = searcher.run(Query.text("a dog", k=6)).hits
    by_date = searcher.run(Query.text("a dog", k=6, sort="date")).hits
    assert {h.id for h in by_date} == {h.id for h in by_score}
    stamps = [h.taken_at or 0.0 for h in by_date]
    assert stamps == sorted(stamps, reverse=True)


def test_similar_and_upload_queries(indexed):
    searcher = Searcher(indexed, cold=False)
    first = searcher.run(Query.text("a cat", k=1)).hits[0]
    similar = searcher.run(Query(similar_to=first.id, k=5)).hits
    assert first.id not in [h.id for h in similar] and len(similar) == 5
    buf = io.BytesIO()
    Image.open(first.path).save(buf, "PNG")
    uploaded = searcher.run(Query(upload=buf.getvalue(), k=3)).hits
    assert uploaded[0].id == first.id and uploaded[0].score == pytest.approx(1.0, abs=0.02)
    with pytest.raises(UnsupportedImage, match="not a usable image"):
        searcher.run(Query(upload=b"GIF89a not really", k=3))


def test_no_index_is_reported_before_any_heavy_import(tmp_path):
    with pytest.raises(NoIndex, match="no index at"):
        Searcher(tmp_path / "nothing-here")


def test_a_model_name_means_the_same_to_the_python_api_and_the_cli(indexed, cli):
    """`--model RN50` and open_index(model="RN50") resolve alike: RN50's first published tag
    (this index was built with another model, so both refuse it, naming what was asked)."""
    from pixfind.search import open_index
    from pixfind.search.errors import IndexMismatch
    from pixfind.search.models import get_open_clip

    tag = get_open_clip().list_pretrained_tags_by_model("RN50")[0]
    with pytest.raises(IndexMismatch, match=f"RN50/{tag} was asked for"):
        open_index(indexed, model="RN50").search("a dog")
    result = cli("--index", indexed, "search", "a dog", "--model", "RN50", ok=False)
    assert result.exit_code == 1 and f"RN50/{tag} was asked for" in result.output
