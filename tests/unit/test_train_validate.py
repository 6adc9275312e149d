"""Issue 18: the pure parts of validation-driven training (split, early stopping, schedule,
recall ceilings)."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search.errors import PixfindError
from pixfind.train import validate as V
from pixfind.train.fit import lr_at


def test_validation_slice_is_ten_percent_by_photo_seeded_and_capped():
    train, val = V.split(1500, 0.1, seed=0)
    assert len(val) == 150 and len(train) == 1350
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(1500))
    again, val2 = V.split(1500, 0.1, seed=0)
    assert (val2 == val).all() and (again == train).all()
    assert not (V.split(1500, 0.1, seed=1)[1] == val).all()
    assert len(V.split(50_000, 0.1, seed=0)[1]) == V.VAL_MAX == 1000
    assert len(V.split(150, 0.1, seed=0)[1]) == 0  # 15 photos: too few to validate on
    assert len(V.split(1500, 0.0, seed=0)[1]) == 0
    with pytest.raises(PixfindError, match="--val-fraction"):
        V.split(100, 1.0, seed=0)


def _scores(*r5):
    return [{"R@1": 0.0, "R@5": r, "R@10": 1.0} for r in r5]


def test_early_stopping_waits_patience_epochs_after_the_best():
    assert not V.should_stop(_scores(0.1, 0.2, 0.3), patience=2)
    assert not V.should_stop(_scores(0.1, 0.3, 0.2), patience=2)
    assert V.should_stop(_scores(0.1, 0.3, 0.2, 0.3), patience=2)  # a tie is no improvement
    assert not V.should_stop(_scores(0.1, 0.3, 0.2, 0.3), patience=0)  # 0: never
    tie_better_r1 = [*_scores(0.3), {"R@1": 0.2, "R@5": 0.3, "R@10": 1.0}]
    assert V.better(tie_better_r1[1], tie_better_r1[0])
    assert not V.should_stop(tie_better_r1, patience=1)


def test_auto_epochs_and_warmup_scale_with_the_steps():
    assert V.auto_epochs(101) == 50  # the demo: 3,240 photos in batches of 32, ~5,000 steps
    assert V.auto_epochs(42) == V.AUTO_MAX_EPOCHS  # 1,350 photos: capped (early stopping ends it)
    assert V.auto_epochs(1560) == V.AUTO_MIN_EPOCHS  # 50,000 photos: at least 10 epochs
    assert V.warmup_steps(1500, 0.1) == 150
    assert V.warmup_steps(15_600, 0.1) == V.WARMUP_MAX_STEPS
    assert V.warmup_steps(5, 0.1) == 1
    lrs = [lr_at(s, 100, 1.0, V.warmup_steps(100, 0.1)) for s in range(100)]
    assert max(lrs) == pytest.approx(1.0) and np.argmax(lrs) == 9


def test_curves_plot_needs_only_the_history(tmp_path):
    pytest.importorskip("matplotlib")
    history = [
        {
            "epoch": e,
            "loss": 4 - e / 2,
            "lr": 1e-3,
            "temperature": 0.07,
            "best": e == 2,
            "val": {"R@1": 0.1 * e, "R@5": 0.2 * e, "R@10": 0.3 * e},
        }
        for e in (1, 2, 3)
    ]
    path = V.plot_curves(history, tmp_path / "curves.png")
    assert path.stat().st_size > 5000


def test_recall_ceiling_counts_photos_that_share_a_caption():
    from pixfind.train.evaluate import recall_ceiling

    # 10 photos captioned "a star" (one caption each), 2 photos with captions of their own
    texts = ["a star"] * 10 + ["A  red star", "a blue circle"]
    owner = np.arange(12)
    ceiling = recall_ceiling(texts, owner, ks=(1, 5, 10))
    assert ceiling[1] == pytest.approx((10 * 0.1 + 2) / 12)
    assert ceiling[5] == pytest.approx((10 * 0.5 + 2) / 12)
    assert ceiling[10] == pytest.approx(1.0)
    # distinct captions: nothing in the way of a perfect score
    assert recall_ceiling(["a", "b", "c"], np.arange(3), ks=(1,)) == {1: 1.0}


def test_simple_photos_are_found_only_where_the_collection_has_a_simpler_part():
    from pixfind.train.data import simple_rows, tile

    # 200 scenes described in 4+ words and 100 one-object photos whose shortest caption is 1
    words = [["red", "circle", "left", "large"]] * 200 + [["star"], ["large", "star"]] * 50
    captions_of = [np.array([i]) for i in range(300)]
    rows = np.arange(300)
    simple = simple_rows(words, captions_of, rows, batch_size=16)
    assert simple is not None and set(simple) == set(range(200, 300))  # the one-object ones
    # a photo counts by its shortest caption
    both = [np.array([i, 200]) if i < 10 else np.array([i]) for i in range(300)]
    assert 0 in simple_rows(words, both, rows, 16)
    # every photo alike (a test collection, CIFAR's "a photo of a cat"): no curriculum
    assert simple_rows([["photo", "cat"]] * 300, captions_of, rows, 16) is None
    # free captions of varied length (Flickr's: 3 to 9 words) have no simple part
    varied = [["w"] * (3 + i % 7) for i in range(300)]
    assert simple_rows(varied, captions_of, rows, 16) is None
    # too few simple photos to fill batches: none either
    assert simple_rows(words[:200] + [["star"]] * 30, captions_of[:230], rows[:230], 16) is None

    drawn = tile(np.random.default_rng(0), np.array([7, 8, 9]), 8)
    assert len(drawn) == 8 and sorted(drawn[:3]) == [7, 8, 9] and sorted(drawn[3:6]) == [7, 8, 9]
