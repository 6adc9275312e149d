"""decode -> embed -> write called one by one, without run_index, into a real LanceDB store;
and the per-stage seconds of a real run_index."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pixfind.indexer import IndexOptions, run_index
from pixfind.indexer.captions import CaptionFinder
from pixfind.indexer.decode import decode_batch
from pixfind.indexer.embed import embed_batch
from pixfind.indexer.write import Writer, WriteResult
from pixfind.search.encoder import load_encoder
from pixfind.search.images import decode_file
from pixfind.search.index import VectorIndex
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec, FileStat

from ..conftest import TINY, make_picture

STAGES = ["scan", "plan", "decode", "embed", "write", "index", "ocr"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec(*TINY), "cpu")


def _stats(paths) -> list[FileStat]:
    return [FileStat(str(p), os.stat(p).st_mtime, os.stat(p).st_size) for p in paths]


def _write(store, encoder, paths, captions=None, **writer_kw) -> WriteResult:
    decoded = decode_batch(_stats(paths), encoder.preprocess, encoder.image_size, captions=captions)
    writer = Writer(store, **writer_kw)
    embedded = embed_batch(encoder, decoded, writer.reusable(decoded))
    return writer.write(embedded)


def test_stages_one_by_one_fill_a_searchable_store(encoder, tmp_path):
    photos = [make_picture(tmp_path / "p" / f"img{i}.jpg", seed=i) for i in range(5)]
    bad = tmp_path / "p" / "bad.jpg"
    bad.write_bytes(b"garbage")
    (tmp_path / "p" / "img1.txt").write_text("a caption")
    store = Store.create(tmp_path / "index", encoder.info)

    finder = CaptionFinder([str(tmp_path / "p")])
    result = _write(store, encoder, [*photos, bad], captions=finder)
    assert (result.added, result.updated, result.reused, result.captioned) == (5, 0, 0, 1)
    assert store.record(store.id_for_path(str(photos[1]))).captions == ("a caption",)
    assert [(s.path, s.reason) for s in result.skipped] == [
        (str(bad), "not an image (unrecognised format)")
    ]
    assert store.count() == 5 and sorted(store.file_states()) == sorted(map(str, photos))

    index = VectorIndex.for_store(store)
    query = encoder.encode_images([decode_file(photos[3]).image])
    _, ids = index.search(query, 1)
    assert store.record(int(ids[0][0])).path == str(photos[3])


def test_writer_reuses_vectors_by_content_and_counts_moves(encoder, tmp_path, monkeypatch):
    folder = tmp_path / "p"
    photos = [make_picture(folder / f"img{i}.jpg", seed=i) for i in range(3)]
    store = Store.create(tmp_path / "index", encoder.info)
    _write(store, encoder, photos)
    before = store.vector(store.id_for_path(str(photos[0])))

    moved = folder / "trip" / "img0.jpg"
    moved.parent.mkdir()
    photos[0].rename(moved)
    calls: list[int] = []
    real = encoder.encode_image_tensors
    monkeypatch.setattr(encoder, "encode_image_tensors", lambda b: calls.append(len(b)) or real(b))
    result = _write(store, encoder, [moved], removed=[str(photos[0])])
    assert (result.added, result.moved, result.reused) == (1, 1, 1) and calls == []
    np.testing.assert_array_equal(store.vector(store.id_for_path(str(moved))), before)

    deleted = Writer(store).delete([str(photos[0])])
    assert deleted == WriteResult(removed=1) and store.count() == 3


def test_a_changed_file_that_no_longer_decodes_leaves_the_index(encoder, tmp_path):
    photo = make_picture(tmp_path / "p" / "img.jpg", seed=1)
    store = Store.create(tmp_path / "index", encoder.info)
    _write(store, encoder, [photo])
    photo.write_bytes(b"broken now")
    result = _write(store, encoder, [photo], changed=[str(photo)])
    assert (result.removed, len(result.skipped), store.count()) == (1, 1, 0)


def test_run_index_reports_seconds_per_stage(encoder, tmp_path):
    folder = tmp_path / "p"
    for i in range(4):
        make_picture(folder / f"img{i}.jpg", seed=i)
    options = IndexOptions([str(folder)], workers=0, batch_size=2)
    report = run_index(tmp_path / "index", options, encoder=encoder)
    assert report.added == 4 and report.total == 4
    stages = report.to_dict()["stages"]
    assert list(stages) == STAGES
    assert all(isinstance(s, float) and s >= 0 for s in stages.values())
    assert stages["embed"] > 0 and stages["write"] > 0
    assert stages["ocr"] == 0 and report.ocr_read == 0  # no --ocr: no OCR
    assert sum(stages.values()) <= report.seconds + 0.01
    summary = report.stage_summary()
    assert summary.startswith("scan ") and all(f"{name} " in summary for name in STAGES[:-1])
    assert "ocr" not in summary
