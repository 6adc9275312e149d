"""Bad files, odd-but-valid files, files changing during the run, moves and renames.

Real pipeline (scan -> plan -> decode -> embed -> LanceDB), real open_clip (pixfind-tiny)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.encoder import load_encoder
from pixfind.search.images import content_hash, decode_file
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from .. import badfiles
from ..conftest import make_picture


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec("pixfind-tiny", None), "cpu")


def _index(home: Path, roots, encoder, **kw):
    hook = kw.pop("on_plan", None)
    options = IndexOptions(roots=[str(r) for r in roots], workers=0, batch_size=8, **kw)
    return run_index(home, options, encoder=encoder, on_plan=hook)


def test_bad_file_corpus_each_skipped_with_its_reason(tmp_path, encoder):
    folder = tmp_path / "corpus"
    expect = badfiles.build(folder)
    bad = {n: r for n, r in expect.items() if r}
    good = sorted(n for n, r in expect.items() if r is None)
    assert len(expect) >= 35 and len(bad) >= 20 and len(good) >= 15
    new_content: list[bytes] = []

    report = _index(
        tmp_path / "index",
        [folder],
        encoder,
        max_megapixels=badfiles.MAX_MP,
        on_plan=lambda plan: new_content.append(badfiles.mutate_during_run(folder)),
    )

    skipped = {os.path.relpath(p, folder): r for p, r in report.skipped}
    for name, reason in sorted(bad.items()):
        assert name in skipped, f"{name} was not reported as skipped"
        assert reason in skipped[name], f"{name}: expected '{reason}', got '{skipped[name]}'"
    assert set(skipped) == set(bad), f"unexpected skips: {set(skipped) - set(bad)}"

    store = Store.open(tmp_path / "index")
    states = store.file_states()
    indexed = sorted(os.path.relpath(p, folder) for p in states)
    assert indexed == good  # every odd-but-valid file, nothing from the folder-symlink loop
    assert report.added == len(good) and store.count() == len(good)
    print(f"\n{len(bad)} bad kinds skipped with their reasons, {len(good)} odd-but-valid indexed")

    # a file rewritten after the scan is stored as it was read (content, mtime), not stale
    changed = str(folder / "changes.jpg")
    rec = store.record(store.id_for_path(changed))
    assert rec.mtime == 1_600_000_000 and rec.content_hash == content_hash(new_content[0])
    assert (rec.width, rec.height) == (80, 80)

    # non-UTF-8 names round-trip: stored path is the exact bytes, usable to open the file
    latin1 = os.fsdecode(os.fsencode(folder) + b"/caf\xe9_latin1.jpg")
    image_id = store.id_for_path(latin1)
    assert image_id is not None and store.record(image_id).path == latin1
    assert Path(store.record(image_id).path).read_bytes()[:2] == b"\xff\xd8"

    def vec(name: str) -> np.ndarray:
        return store.vector(store.id_for_path(str(folder / name)))

    # EXIF-rotated photo is embedded upright: same vector as an upright copy of it
    upright = encoder.encode_images([decode_file(tmp_path / "reference_upright.jpg").image])[0]
    sideways = encoder.encode_images(
        [Image.open(folder / "rotated_exif6.jpg").convert("RGB")]  # orientation ignored
    )[0]
    got = vec("rotated_exif6.jpg")
    assert float(got @ upright) > 0.999 and float(got @ sideways) < float(got @ upright) - 1e-3

    # animations: the first frame (red) is what gets embedded
    red, green = encoder.encode_images(
        [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 255, 0))]
    )
    for name in ("animated.gif", "animated.webp"):
        assert float(vec(name) @ red) > 0.999 > float(vec(name) @ green)

    assert store.record(store.id_for_path(str(folder / "png_named.jpg"))).file_type == "png"

    # nothing new on a second run; the bad files are reported again, the index is untouched
    again = _index(tmp_path / "index", [folder], encoder, max_megapixels=badfiles.MAX_MP)
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert store.count() == len(good)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_skipped(tmp_path, encoder):
    folder = tmp_path / "p"
    make_picture(folder / "ok.jpg", 1)
    locked = make_picture(folder / "locked.jpg", 2)
    locked.chmod(0)
    try:
        report = _index(tmp_path / "index", [folder], encoder)
    finally:
        locked.chmod(0o644)
    assert report.skipped == [(str(locked), "permission denied")] and report.added == 1


def test_unreadable_file_reason_when_running_as_root(tmp_path):
    """Root reads any file, so the reason is checked in a forked child that drops to nobody."""
    if os.geteuid() != 0:
        pytest.skip("not root: test_unreadable_file_is_skipped covers it through the pipeline")
    import tempfile

    from pixfind.search.images import DecodeError

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        locked = make_picture(folder / "locked.jpg", 3)
        locked.chmod(0)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no torch here, only the decoder
            try:
                os.setgid(65534)
                os.setuid(65534)
                try:
                    decode_file(locked)
                    message = "decoded"
                except DecodeError as exc:
                    message = str(exc)
                os.write(write_end, message.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        _, status = os.waitpid(pid, 0)
        assert os.read(read_end, 200).decode() == "permission denied" and status == 0
        os.close(read_end)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_moves_and_renames_reuse_vectors_without_embedding(tmp_path, encoder, monkeypatch):
    folder = tmp_path / "p"
    for i in range(6):
        make_picture(folder / f"img{i}.jpg", i)
    first = _index(tmp_path / "index", [folder], encoder)
    assert first.added == 6
    store = Store.open(tmp_path / "index")
    before = {Path(p).name: store.vector(store.id_for_path(p)) for p in store.file_states()}

    (folder / "trip").mkdir()
    shutil.move(folder / "img0.jpg", folder / "trip" / "img0.jpg")  # moved
    shutil.move(folder / "img1.jpg", folder / "renamed.jpg")  # renamed
    shutil.copy(folder / "img2.jpg", folder / "copy_of_2.jpg")  # copied
    make_picture(folder / "brand_new.jpg", 42)  # really new

    embedded: list[int] = []
    real = encoder.encode_image_tensors
    monkeypatch.setattr(
        encoder, "encode_image_tensors", lambda b: embedded.append(len(b)) or real(b)
    )
    report = _index(tmp_path / "index", [folder], encoder)
    assert (report.added, report.removed, report.moved, report.reused) == (4, 2, 2, 3)
    assert sum(embedded) == 1  # only brand_new.jpg went through the image tower

    store = Store.open(tmp_path / "index")
    paths = store.file_states()
    assert len(paths) == 8 and str(folder / "img0.jpg") not in paths
    for new, old in [("trip/img0.jpg", "img0.jpg"), ("renamed.jpg", "img1.jpg")]:
        np.testing.assert_array_equal(
            store.vector(store.id_for_path(str(folder / new))), before[old]
        )
