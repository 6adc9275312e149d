"""Indexing real photos through the int8 ONNX image tower (search/quantize.py): `pixfind
index` picks it on its own where its check against float32 passes, says which precision it
used, and the index it writes answers queries (each photo's own image finds it first, though
queries run the float32 towers); where the check fails, the run is float32 and says so once."""

from __future__ import annotations

import numpy as np
import pytest
from pixfind.search import onnxrt, quantize
from pixfind.search.encoder import _load_cached
from pixfind.search.engine import Searcher
from pixfind.search.query import Query

from ..conftest import TINY, json_out, shared_photos

ARGS = ("--model", TINY[0], "--pretrained", TINY[1], "--json")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in shared_photos(30):
        (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(autouse=True)
def _onnx(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # exports of this test only
    monkeypatch.setenv("PIXFIND_RUNTIME", "auto")
    _load_cached.cache_clear()
    onnxrt.warn_once.cache_clear()
    yield
    _load_cached.cache_clear()
    onnxrt.loaded.clear()


def test_index_through_int8_and_find_each_photo_by_itself(cli, photos, tmp_path):
    report = json_out(cli("index", photos, *ARGS))
    assert report["added"] == 30 and report["precision"] == "int8"
    searcher = Searcher(tmp_path / "index")
    for path in sorted(photos.iterdir()):
        hits = searcher.run(Query.image(str(path), k=3, mode="vector")).hits
        assert hits[0].path == str(path), f"{path.name} is not its own image query's top-1"
    text = searcher.run(Query.text("a dog running on the grass", k=5, mode="vector")).hits
    assert len(text) == 5 and all(np.isfinite(h.score) for h in text)


def test_a_failed_check_indexes_in_fp32_and_says_so(cli, photos, monkeypatch):
    monkeypatch.setattr(quantize, "INT8_MIN", 1.01)
    result = cli("index", photos, *ARGS)
    assert json_out(result)["precision"] == "fp32"
    assert result.stderr.count("failed its check") == 1
    assert (
        json_out(cli("index", photos, "--precision", "fp32", "--rebuild", *ARGS))["precision"]
        == "fp32"
    )
