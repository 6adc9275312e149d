"""The saved file states are used only while the table's newest manifest is the one they name."""

from __future__ import annotations

import os
from pathlib import Path

from pixfind.indexer.filestate import STATE_FILE, load_fresh, save

U64 = (1 << 64) - 1


def versions_dir(home: Path) -> Path:
    return home / "db" / "images.lance" / "_versions"


def _commit(home: Path, version: int) -> None:
    """A table version as Lance names it (V2 scheme: u64max - version)."""
    folder = versions_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{U64 - version:020d}.manifest").write_bytes(b"m" * version)


STATES = {
    "/photos/a.jpg": (1700000000.123456, 1234),
    "/photos/sub dir/b é.png": (1.5, 0),
    "/photos/bad-\udcff-name.jpg": (1700000001.0, 2**40),  # not UTF-8: surrogate escape
}


def test_saved_states_read_back_exactly_while_the_table_is_unchanged(tmp_path):
    _commit(tmp_path, 3)
    assert save(tmp_path, STATES, 3, "m:random", "m")
    saved = load_fresh(tmp_path)
    assert saved is not None
    assert saved.states == STATES and (saved.identity, saved.label) == ("m:random", "m")
    assert saved.manifest["version"] == 3


def test_files_that_failed_to_decode_are_kept_with_their_reason(tmp_path):
    _commit(tmp_path, 2)
    failed = {"/photos/bad-\udcff.jpg": (12.5, 40, "cannot identify image file")}
    save(tmp_path, STATES, 2, "m:random", "m", failed=failed)
    assert load_fresh(tmp_path).failed == failed


def test_a_new_table_version_makes_the_saved_states_stale(tmp_path):
    _commit(tmp_path, 3)
    save(tmp_path, STATES, 3, "m:random", "m")
    _commit(tmp_path, 4)
    assert load_fresh(tmp_path) is None


def test_a_re_created_table_at_the_same_version_is_not_taken_for_the_old_one(tmp_path):
    _commit(tmp_path, 2)
    save(tmp_path, STATES, 2, "m:random", "m")
    manifest = next(versions_dir(tmp_path).iterdir())
    os.utime(manifest, ns=(1, 1))  # same number, another file
    assert load_fresh(tmp_path) is None


def test_damaged_or_missing_states_mean_ask_the_table(tmp_path):
    assert load_fresh(tmp_path) is None
    _commit(tmp_path, 1)
    assert not save(tmp_path, STATES, 5, "m:random", "m")  # no manifest of that version
    save(tmp_path, STATES, 1, "m:random", "m")
    data = bytearray((tmp_path / STATE_FILE).read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / STATE_FILE).write_bytes(bytes(data))
    assert load_fresh(tmp_path) is None


def test_an_empty_table_has_empty_states(tmp_path):
    _commit(tmp_path, 1)
    save(tmp_path, {}, 1, "m:random", "m")
    saved = load_fresh(tmp_path)
    assert saved is not None and saved.states == {}


def test_derived_files_rewritten_or_deleted_since_make_the_saved_states_stale(tmp_path):
    _commit(tmp_path, 1)
    faiss = tmp_path / "faiss"
    faiss.mkdir()
    (faiss / "infos.json").write_text("{}")
    derived = [faiss / "infos.json", faiss / "snapshot.json"]  # the second one absent
    save(tmp_path, STATES, 1, "m:random", "m", derived)
    assert load_fresh(tmp_path) is not None
    (faiss / "infos.json").write_text('{"rebuilt": 1}')
    assert load_fresh(tmp_path) is None
    save(tmp_path, STATES, 1, "m:random", "m", derived)
    (faiss / "snapshot.json").write_text("{}")  # appeared since
    assert load_fresh(tmp_path) is None
    save(tmp_path, STATES, 1, "m:random", "m", derived)
    (faiss / "infos.json").unlink()
    assert load_fresh(tmp_path) is None
