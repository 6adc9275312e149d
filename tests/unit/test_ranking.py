"""Ranking: pure functions over candidates, records and caption vectors (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.ranking import (
    Candidate,
    CaptionPart,
    by_date,
    calibrate_captions,
    fused_candidates,
    make_hits,
    top_candidates,
)
from pixfind.search.store import Captioned
from pixfind.search.types import ImageRecord


def record(i: int, taken: float = 0.0) -> ImageRecord:
    return ImageRecord(
        id=i, path=f"/p/{i}.jpg", mtime=0.0, size=1, width=4, height=3,
        content_hash=f"h{i}", indexed_at=0.0, file_type="jpeg", taken_at=taken,
    )  # fmt: skip


def test_top_candidates_orders_cuts_and_limits():
    cands = [Candidate(s, i, s) for i, s in enumerate([0.1, 0.5, 0.3, 0.9, 0.2])]
    assert [c.id for c in top_candidates(cands, 3, None)] == [3, 1, 2]
    assert [c.id for c in top_candidates(cands, 10, 0.25)] == [3, 1, 2]


def test_make_hits_skips_deleted_records_and_carries_caption_parts():
    cands = [
        Candidate(0.9, 1, 0.5, CaptionPart("a dog", 0.8, 0.6)),
        Candidate(0.7, 2, 0.7),
        Candidate(0.6, 3, 0.6),  # deleted meanwhile: no record
    ]
    hits = make_hits(cands, {1: record(1), 2: record(2)}, "score", 0.7)
    assert [(h.rank, h.id) for h in hits] == [(1, 1), (2, 2)]
    assert hits[0].caption.text == "a dog" and hits[0].caption.weight == 0.7
    assert hits[1].caption is None
    d = hits[0].to_dict()
    assert d["caption_score"] == 0.8 and d["caption_scaled"] == 0.6 and d["image_score"] == 0.5
    assert "caption" not in hits[1].to_dict()


def test_by_date_is_newest_first_undated_last_and_stable():
    cands = [Candidate(1.0 - i / 10, i, 0.0) for i in range(4)]
    records = {0: record(0, 100.0), 1: record(1, 0.0), 2: record(2, 300.0), 3: record(3, 100.0)}
    hits = make_hits(cands, records, "date", 0.0)
    assert [h.id for h in hits] == [2, 0, 3, 1] and [h.rank for h in hits] == [1, 2, 3, 4]
    assert [h.id for h in by_date(hits[::-1], first_rank=5)] == [2, 3, 0, 1]


def test_calibration_matches_the_image_scores_scale():
    rng = np.random.default_rng(0)
    image = rng.normal(0.2, 0.03, 50)
    caption = rng.normal(0.8, 0.1, 50)
    scaled = calibrate_captions(caption, image)
    assert scaled.mean() == pytest.approx(image.mean()) and scaled.std() == pytest.approx(
        image.std()
    )
    assert np.array_equal(np.argsort(scaled), np.argsort(caption))
    few = caption[:3]
    assert calibrate_captions(few, image[:3]) is few  # too few rows to calibrate


def test_fused_candidates_use_each_images_best_caption():
    dim = 4
    images = np.eye(dim, dtype=np.float32)[:3]  # three captioned images
    captions = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]], np.float32)
    cap = Captioned(
        ids=np.array([10, 11, 12]),
        image_vectors=images,
        texts=["one", "other", "two"],
        vectors=captions,
        owners=np.array([0, 0, 1]),  # image 10 has two captions, 11 one, 12 none
    )
    query = np.array([0, 0, 0, 1], np.float32)
    found = fused_candidates(cap, query, 3, 0.5, None, np.array([], np.int64), calibrate=False)
    assert found[0].id == 10 and found[0].caption.text == "other"
    assert found[0].score == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert {c.id for c in found} == {10, 11, 12}
    assert next(c for c in found if c.id == 12).caption is None
    allowed = fused_candidates(cap, query, 3, 0.5, np.array([11]), np.array([], np.int64))
    assert [c.id for c in allowed] == [11]
    assert fused_candidates(cap, query, 3, 0.5, None, np.array([10, 11, 12])) == []
