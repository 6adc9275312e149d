"""Duplicate finding without an index: the pair search is exact, groups and best copies."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pixfind.search import phash
from pixfind.search.duplicates import best_order, check_options, components, exact_pairs
from pixfind.search.errors import BadQuery


def _codes(n: int, seed: int, planted: int, most: int) -> np.ndarray:
    """Random weight-32 hashes (like phash's), ``planted`` rows copies of others with up to
    ``most`` bits flipped."""
    rng = np.random.default_rng(seed)
    bits = np.zeros((n, 64), bool)
    np.put_along_axis(bits, np.argsort(rng.random((n, 64)), axis=1)[:, :32], True, axis=1)
    for row in rng.choice(n, planted, replace=False):
        bits[row] = bits[rng.integers(0, n)]
        bits[row, rng.choice(64, rng.integers(0, most + 1), replace=False)] ^= True
    return np.packbits(bits, axis=1)


@pytest.mark.parametrize("threshold", [0, 3, 7, 10, 13])
def test_near_pairs_finds_exactly_what_brute_force_finds(threshold):
    full = _codes(1500, seed=threshold, planted=200, most=14)
    crop = _codes(1500, seed=99, planted=0, most=0)
    crop[:100] = full[100:200]  # some centres equal to other photos' whole pictures
    i, j = phash.near_pairs(full, crop, threshold, budget=5000)  # small slices, too
    d = phash.hamming(full[:, None], full[None])
    dc = phash.hamming(crop[:, None], full[None])
    centre = min(threshold, phash.CROP_BITS)
    near = (d <= threshold) | (dc <= centre) | (centre >= dc.T)
    np.fill_diagonal(near, False)
    want_i, want_j = np.nonzero(np.triu(near))
    assert len(want_i) > 10
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(
        zip(want_i.tolist(), want_j.tolist(), strict=True)
    )


def test_image_hashes_find_a_centre_crop_and_tell_other_pictures_apart():
    def picture(seed: int) -> Image.Image:
        rng = np.random.default_rng(seed)
        img = Image.new("RGB", (400, 300), tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.integers(0, 360), rng.integers(0, 260)
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            draw.ellipse((x, y, x + rng.integers(20, 120), y + rng.integers(20, 90)), colour)
        return img

    a, b = picture(1), picture(2)
    cropped = a.crop((20, 15, 380, 285))  # the centre 90%
    codes = {k: phash.to_codes(phash.image_hashes(im)) for k, im in
             {"a": a, "b": b, "crop": cropped, "small": a.resize((200, 150))}.items()}  # fmt: skip
    assert phash.hamming(codes["a"][0], codes["small"][0]) <= 4
    assert phash.hamming(codes["a"][1], codes["crop"][0]) <= 4  # centre vs whole picture
    assert phash.hamming(codes["a"][0], codes["b"][0]) > 16
    assert phash.to_codes([-1]).tolist() == [[255] * 8]  # signed storage keeps every bit


def test_groups_join_chains_and_exact_copies():
    a, b = exact_pairs(["x", "y", "x", None, "y", "x"])
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 2), (0, 5), (1, 4)]
    groups = components(7, np.array([0, 1, 5]), np.array([1, 2, 6]))  # 0-1-2 is a chain
    assert sorted(g.tolist() for g in groups) == [[0, 1, 2], [5, 6]]
    assert components(3, np.zeros(0, np.int64), np.zeros(0, np.int64)) == []


def _row(path, w, size, taken, **meta):
    return {"path": path, "width": w, "height": w, "size": size, "taken_at": taken,
            "mtime": taken, "taken_source": meta.get("source", "mtime"),
            "camera_make": meta.get("make"), "camera_model": None,
            "gps_lat": meta.get("lat"), "has_caption": False}  # fmt: skip


def test_best_copy_rules():
    rows = [
        _row("/b/small.jpg", 100, 10, 50.0, source="exif", make="Canon", lat=1.0),
        _row("/b/big.png", 400, 900, 300.0),
        _row("/a/big.jpg", 400, 900, 200.0),
        _row("/c/old.jpg", 200, 20, 10.0),
    ]
    assert [rows[k]["path"] for k in best_order(rows, "largest")][:2] == [
        "/a/big.jpg",  # ties on pixels and bytes: the older one
        "/b/big.png",
    ]
    assert rows[best_order(rows, "oldest")[0]]["path"] == "/c/old.jpg"
    assert rows[best_order(rows, "metadata")[0]]["path"] == "/b/small.jpg"
    with pytest.raises(BadQuery, match="threshold"):
        check_options(40, "largest")
    with pytest.raises(BadQuery, match="keep"):
        check_options(10, "newest")
