"""The decode stage alone: real files -> tensors and facts, bad files -> Skipped with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from pixfind.indexer.captions import CaptionFinder
from pixfind.indexer.decode import (
    DecodedImage,
    Skipped,
    decode_batch,
    decode_batches,
    decode_one,
)
from pixfind.search.encoder import load_encoder
from pixfind.search.images import content_hash
from pixfind.search.types import EncoderSpec, FileStat

from ..conftest import TINY, make_picture


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec(*TINY), "cpu")


def _stat(path: Path) -> FileStat:
    st = os.stat(path)
    return FileStat(str(path), st.st_mtime, st.st_size)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    good = [make_picture(tmp_path / f"p{i}{ext}", seed=i) for i, ext in enumerate([".jpg", ".png"])]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"this is not a JPEG at all" * 10)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[1].read_bytes()[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return [good[0], corrupt, good[1], truncated, empty]


def test_good_files_become_model_inputs_and_facts(encoder, files):
    path = files[0]
    out = decode_one(_stat(path), encoder.preprocess, encoder.image_size)
    assert isinstance(out, DecodedImage)
    size = encoder.image_size
    assert tuple(out.pixels.shape) == (3, size, size)
    facts = out.facts
    assert facts.stat == _stat(path) and (facts.width, facts.height) == (160, 120)
    assert facts.content_hash == content_hash(path.read_bytes()) and facts.file_type == "jpeg"
    assert facts.captions == ()


def test_bad_files_are_skipped_with_their_reason_in_order(encoder, files):
    batch = decode_batch([_stat(p) for p in files], encoder.preprocess, encoder.image_size)
    assert [im.facts.stat.path for im in batch.images] == [str(files[0]), str(files[2])]
    reasons = {Path(s.path).name: s.reason for s in batch.skipped}
    assert reasons["corrupt.jpg"] == "not an image (unrecognised format)"
    assert reasons["truncated.png"].startswith(("truncated image", "corrupt image"))
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert batch.size == len(files)


def test_a_file_gone_since_the_scan_is_skipped(encoder, tmp_path):
    gone = make_picture(tmp_path / "gone.jpg", seed=3)
    stat = _stat(gone)
    gone.unlink()
    out = decode_one(stat, encoder.preprocess)
    assert out == Skipped(str(gone), "file vanished during the run")


def test_a_preprocess_failure_is_a_skip_not_an_exception(tmp_path):
    path = make_picture(tmp_path / "ok.jpg", seed=4)

    def broken(image: Image.Image):
        raise RuntimeError("boom")

    out = decode_one(_stat(path), broken)
    assert out == Skipped(str(path), "preprocessing failed: RuntimeError: boom")


def test_captions_from_sidecars_only_when_a_finder_is_given(encoder, tmp_path):
    path = make_picture(tmp_path / "beach.jpg", seed=5)
    (tmp_path / "beach.txt").write_text("a sunny  beach\n")
    stat = _stat(path)
    with_captions = decode_one(stat, encoder.preprocess, captions=CaptionFinder([str(tmp_path)]))
    assert with_captions.facts.captions == ("a sunny beach",)
    assert decode_one(stat, encoder.preprocess).facts.captions == ()


def test_worker_processes_give_the_same_batches(encoder, files):
    stats = [_stat(p) for p in files]
    here = list(decode_batches(stats, encoder.preprocess, batch_size=2, workers=0))
    workers = list(decode_batches(stats, encoder.preprocess, batch_size=2, workers=1))
    assert [b.size for b in here] == [b.size for b in workers] == [2, 2, 1]
    for a, b in zip(here, workers, strict=True):
        assert a.skipped == b.skipped
        assert [im.facts for im in a.images] == [im.facts for im in b.images]
        for x, y in zip(a.images, b.images, strict=True):
            assert (x.pixels == y.pixels).all()
