"""Query algebra: pure vector math, no model."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.errors import BadQuery
from pixfind.search.query import Term, combine, make_terms, normalize, split_weight


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("beach", (1.0, "beach")),
        ("2:beach", (2.0, "beach")),
        ("0.5:sunset at sea", (0.5, "sunset at sea")),
        (".25:x", (0.25, "x")),
        ("-1:fog", (-1.0, "fog")),
        ("3: spaced ", (3.0, "spaced")),
        ("2:./photos/a.jpg", (2.0, "./photos/a.jpg")),
        ("time: 12:30", (1.0, "time: 12:30")),  # a colon after words is text, not a weight
        ("C:/pics/x.jpg", (1.0, "C:/pics/x.jpg")),
    ],
)
def test_split_weight(spec, expected):
    assert split_weight(spec) == expected


def test_make_terms_signs_weights_and_order():
    terms = make_terms("dog", None, ["2:beach"], ["people"], ["./x.jpg"], ["0.5:./y.png"])
    assert terms == [
        Term("text", "dog", 1.0),
        Term("text", "beach", 2.0),
        Term("text", "people", -1.0),
        Term("image", "./x.jpg", 1.0),
        Term("image", "./y.png", -0.5),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"query": "   "},
        {"query": "dog", "add": ["0:beach"]},
        {"query": "-1:dog"},  # only negative terms
        {"query": "dog", "add": ["2:"]},
    ],
)
def test_make_terms_rejects(kwargs):
    with pytest.raises(BadQuery):
        make_terms(**kwargs)


def test_combine_is_weighted_sum_of_unit_vectors_normalised():
    a, b, c = unit(1, 0, 0), unit(0, 3, 0), unit(1, 1, 1)
    got = combine([a, b * 7, c], [1.0, 2.0, -0.5])  # b's length must not matter
    want = a + 2 * unit(0, 1, 0) - 0.5 * c
    np.testing.assert_allclose(got, want / np.linalg.norm(want), rtol=1e-6)
    assert abs(np.linalg.norm(got) - 1) < 1e-6


def test_single_term_is_the_term_itself():
    v = unit(3, -4, 12)
    np.testing.assert_allclose(combine([v], [2.5]), v, rtol=1e-6)


def test_subtracting_moves_ranking_away_from_the_term():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    dog, people = unit(*rng.standard_normal(16)), base[7]
    plain = base @ combine([dog], [1])
    steered = base @ combine([dog, people], [1, -1])
    assert steered[7] < plain[7] - 0.3  # the subtracted direction loses the most
    assert np.argmin(steered - plain) == 7


def test_cancelling_terms_are_an_error():
    v = unit(1, 2, 3)
    with pytest.raises(BadQuery, match="cancel"):
        combine([v, v], [1, -1])
    with pytest.raises(BadQuery):
        normalize(np.zeros(4))


def test_query_needs_exactly_one_source_and_sane_options():
    from pixfind.search.query import MAX_K, Query

    assert Query.text("dog").plain_text == "dog"
    assert Query(terms=(Term("text", "dog", 2.0),)).plain_text is None
    assert Query.image("./x.jpg").texty is False
    assert Query(terms=(Term("image", "x"), Term("text", "sea"))).texty is True
    bad = [
        {},
        {"terms": (Term("text", "a"),), "similar_to": 3},
        {"similar_to": 1, "k": 0},
        {"similar_to": 1, "k": MAX_K + 1},
        {"similar_to": 1, "offset": -1},
        {"similar_to": 1, "sort": "name"},
        {"similar_to": 1, "caption_weight": 1.5},
    ]
    for kwargs in bad:
        with pytest.raises(BadQuery):
            Query(**kwargs)


def test_parse_filters_dates_folders_and_types(tmp_path, monkeypatch):
    from datetime import datetime

    from pixfind.search.query import parse_filters

    monkeypatch.chdir(tmp_path)
    f = parse_filters("trips", "2024-05-01", "2024-05-02", 10, 0, ["jpeg,png", "webp"])
    assert f.folder == str(tmp_path / "trips")  # made absolute
    assert f.after == datetime(2024, 5, 1).timestamp()
    assert datetime(2024, 5, 2, 23, 59).timestamp() < f.before < datetime(2024, 5, 3).timestamp()
    assert f.file_types == ("jpeg", "png", "webp") and f.min_width == 10
    assert parse_filters("*/trips/*").folder == "*/trips/*"  # a glob stays as typed
    assert parse_filters(before="2024-05-01T12:00").before == datetime(2024, 5, 1, 12).timestamp()
    assert not parse_filters()
    with pytest.raises(BadQuery, match="not a date"):
        parse_filters(after="yesterday")
