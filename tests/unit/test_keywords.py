"""The keyword text of a photo and how queries are read (search/keywords.py), and the fusion
of vector and keyword rankings (search/hybrid.py): pure functions, no model, no store."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.errors import BadQuery
from pixfind.search.hybrid import fuse
from pixfind.search.keywords import (
    fields_of,
    folder_names,
    keyword_text,
    matched_fields,
    parse_keywords,
    split_words,
)
from pixfind.search.query import Query
from pixfind.search.types import Hit


@pytest.mark.parametrize(
    "name, words",
    [
        ("IMG_2023_tokyo", "IMG 2023 tokyo"),
        ("sunsetBeach", "sunset Beach"),
        ("HTMLParser", "HTML Parser"),
        ("DSC01234", "DSC 01234"),
        ("trip-to.lisbon+porto", "trip to lisbon porto"),
        ("Tokyo 2023", "Tokyo 2023"),
        ("café_crème", "café crème"),
    ],
)
def test_names_are_split_into_words(name, words):
    assert split_words(name) == words


def test_folder_names_run_from_the_indexed_root_down():
    roots = ["/home/me/Pictures"]
    assert folder_names("/home/me/Pictures/Tokyo 2023/day1/a.jpg", roots) == [
        "Pictures",
        "Tokyo 2023",
        "day1",
    ]
    # the deepest root holding the path counts; outside every root, the last three folders
    assert folder_names("/p/Wedding 2019/x.jpg", ["/p", "/p/Wedding 2019"]) == ["Wedding 2019"]
    assert folder_names("/a/b/c/d/x.jpg", ["/elsewhere"]) == ["b", "c", "d"]


def test_keyword_text_keeps_one_line_per_field():
    text = keyword_text(
        "/r/Tokyo 2023/IMG_0001.jpg",
        ["/r"],
        ["Anna's wedding", "Lisbon\nat night"],
        "Canon",
        "EOS R5",
    )
    fields = fields_of(text)
    assert fields["name"] == "IMG 0001"
    assert fields["folder"] == "r Tokyo 2023"
    assert fields["camera"] == "Canon EOS R5"
    assert fields["ocr"] == ""
    assert fields["caption"] == "Anna's wedding Lisbon at night"
    # a name that is not UTF-8 (surrogate escapes) is still valid text
    assert "\ufffd" in keyword_text("/r/bad\udcff.jpg", ["/r"])


def test_queries_keep_quoted_phrases_apart():
    q = parse_keywords('tokyo "shibuya crossing" IMG_2023 night')
    assert q.phrases == ("shibuya crossing",)
    assert q.words == "tokyo IMG 2023 night"
    unclosed = parse_keywords('say "cheese')
    assert unclosed.phrases == () and unclosed.words == "say cheese"
    assert not parse_keywords('""')


def test_matched_fields_name_the_field_and_the_words_as_written():
    fields = fields_of(keyword_text("/r/Tokyo 2023/sunsetBeach.jpg", ["/r"], ["Beaches of Japan"]))
    names, words = matched_fields(parse_keywords("tokyo beach"), fields)
    assert names == ["name", "folder", "caption"]
    assert words == ["Beach", "Tokyo", "Beaches"]


def test_query_mode_is_checked_and_keyword_text_takes_positive_text_terms():
    with pytest.raises(BadQuery, match="mode"):
        Query.text("x", mode="fuzzy")
    q = Query(terms=(*Query.text("tokyo").terms, *Query.text("night").terms), mode="hybrid")
    assert q.keyword_text == "tokyo night"
    assert Query.image("/x.jpg").keyword_text == ""


def _hit(i: int, score: float) -> Hit:
    return Hit(rank=0, score=score, id=i, path=f"/p/{i}.jpg", image_score=score)


def test_linear_fusion_lifts_full_matches_to_the_top_and_leaves_the_rest_alone():
    pool = [_hit(i, s) for i, s in enumerate([0.30, 0.25, 0.20, 0.10])]
    ids, bm25 = np.array([3, 2], np.int64), np.array([2.0, 1.0], np.float32)
    fused = fuse(pool, ids, bm25, "linear", cover=np.array([1.0, 0.5]))
    assert [h.id for h in fused] == [3, 0, 1, 2]  # the weakest vector hit, fully matched, first
    assert fused[0].keyword.vector_score == pytest.approx(0.10)
    assert fused[0].score > 0.30
    by_id = {h.id: h for h in fused}
    assert by_id[0].score == 0.30 and by_id[0].keyword is None  # untouched
    # a half-covered weaker match barely rises: (0.5 ** 8) * (1 / 2) of the span
    span = 0.30 - 0.10 + 0.01
    assert by_id[2].score == pytest.approx(0.20 + span * 0.5 * 0.5**8)
    assert [h.rank for h in fused] == [1, 2, 3, 4]


def test_rrf_fusion_adds_reciprocal_ranks():
    pool = [_hit(i, s) for i, s in enumerate([0.3, 0.2, 0.1])]
    fused = fuse(pool, np.array([2], np.int64), np.array([1.0], np.float32), "rrf")
    assert fused[0].id == 2
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    with pytest.raises(ValueError):
        fuse(pool, np.array([], np.int64), np.array([], np.float32), "max")
