"""Issue 15: unreadable folders keep their photos, damaged derived files are rebuilt, damaged or
unusable index folders give one clear line (and `pixfind doctor --repair` recovers what it
can), symlinked roots are stored once, newlines in names don't split the output.

Real pipeline and CLI with pixfind-tiny; every hostile file is made here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pixfind.indexer import IndexOptions, run_index
from pixfind.search.encoder import load_encoder
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from ..conftest import make_picture


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec("pixfind-tiny", None), "cpu")


def _index(home: Path, roots, encoder, **kw):
    options = IndexOptions(roots=[str(r) for r in roots], workers=0, batch_size=8, **kw)
    return run_index(home, options, encoder=encoder)


def _photos(root: Path) -> Path:
    for i in range(3):
        make_picture(root / f"top{i}.jpg", i)
    for i in range(4):
        make_picture(root / "locked" / f"in{i}.jpg", 10 + i)
    return root


# -- 3: a folder that can't be listed, a missing root ------------------------------------------
def test_unlistable_folder_keeps_its_photos_and_is_reported(tmp_path, encoder, monkeypatch):
    photos, home = _photos(tmp_path / "p"), tmp_path / "index"
    assert _index(home, [photos], encoder).added == 7
    locked = str(photos / "locked")
    real_scandir = os.scandir

    def scandir(path="."):  # what chmod 000 does to a non-root user, simulated for root
        if isinstance(path, str) and path == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = _index(home, [photos], encoder)
    assert (report.removed, report.kept, Store.open(home).count()) == (0, 4, 7)
    assert report.unreadable == [(locked, "folder not readable (permission denied)")]
    assert report.to_dict()["unreadable"][0]["path"] == locked
    assert any("--prune-missing" in line for line in report.warnings())

    (photos / "top0.jpg").unlink()  # a file a successful listing shows gone is still removed
    report = _index(home, [photos], encoder)
    assert (report.removed, report.kept, Store.open(home).count()) == (1, 4, 6)

    report = _index(home, [photos], encoder, prune_missing=True)  # explicit: removed
    assert (report.removed, Store.open(home).count()) == (4, 2)


def test_missing_root_keeps_everything_under_it(tmp_path, encoder):
    photos, home = _photos(tmp_path / "drive"), tmp_path / "index"
    _index(home, [photos], encoder)
    moved = photos.rename(tmp_path / "elsewhere")  # the drive is unmounted
    report = _index(home, [photos], encoder)
    assert (report.removed, report.kept, Store.open(home).count()) == (0, 7, 7)
    assert report.unreadable == [(str(photos), "does not exist (not mounted?)")]
    moved.rename(photos)
    assert _index(home, [photos], encoder).unchanged == 7


def test_unlistable_folder_as_an_unprivileged_user(tmp_path, cli):
    """The real chmod 000, in a `pixfind index` run as nobody (root reads everything)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run pixfind as an unprivileged user")
    base = Path(__import__("tempfile").mkdtemp(dir="/tmp"))
    try:
        photos, home = _photos(base / "p"), base / "index"
        cli("--index", home, "index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
        subprocess.run(["chown", "-R", "nobody", str(base)], check=True)
        (photos / "locked").chmod(0)
        env = {**os.environ, "HOME": str(base), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        run = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
             "-m", "pixfind.cli", "--index", str(home), "index", "--json", str(photos)],
            capture_output=True, text=True, env=env, cwd=base, timeout=300,
        )  # fmt: skip
        if run.returncode != 0 and "Permission denied" in run.stderr and "python" in run.stderr:
            pytest.skip(f"nobody can't run this Python: {run.stderr[-200:]}")
        assert run.returncode == 0, run.stderr[-2000:]
        assert '"removed": 0' in run.stdout and '"kept_unseen": 4' in run.stdout
        assert str(photos / "locked") in run.stdout
    finally:
        (base / "p" / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# -- 9: the same folder directly and through a symlink -----------------------------------------
def test_symlinked_root_is_stored_once(tmp_path, encoder):
    photos, home = _photos(tmp_path / "p"), tmp_path / "index"
    link = tmp_path / "link"
    link.symlink_to(photos)
    _index(home, [photos], encoder)
    report = _index(home, [link], encoder)
    assert report.aliases == [(str(link), str(photos))] and report.added == 0
    assert Store.open(home).count() == 7
    # an index made before real paths: rows under the link are replaced, vectors reused
    home2 = tmp_path / "index2"
    store = Store.create(home2, encoder.info)
    old = Store.open(home)
    ids, vectors, rows = old.index_rows(["path"])
    records = old.records(list(ids))
    aliased = [
        r.__class__(**{**r.__dict__, "path": r.path.replace(str(photos), str(link))})
        for r in (records[int(i)] for i in ids)
    ]
    store.upsert(aliased, vectors)
    report = _index(home2, [photos, link], encoder)
    assert (report.moved, report.removed, Store.open(home2).count()) == (7, 7, 7)


# -- 5: damaged derived files ------------------------------------------------------------------
def _damage(path: Path, where: str) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if where == "middle" else max(0, len(data) - 4096)
    for i in range(at, min(len(data), at + 4096)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("name", "where"),
    [("records.bin", "middle"), ("index.faiss", "end"), ("ids.npy", "end")],
)
def test_damaged_derived_file_is_rebuilt_never_used(tmp_path, cli, name, where):
    photos = _photos(tmp_path / "p")
    cli("index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    before = cli("search", "a red circle", "--paths").stdout
    target = tmp_path / "index" / "faiss" / name
    _damage(target, where)
    result = cli("search", "a red circle", "--paths")
    assert result.stdout == before  # same hits, not wrong ones
    assert f"{target} is damaged" in result.stderr and "rebuilding it" in result.stderr
    again = cli("search", "a red circle", "--paths")  # rebuilt: no message the second time
    assert again.stdout == before and "damaged" not in again.stderr


# -- 6: damaged or unusable index folders ------------------------------------------------------
def _manifests(home: Path) -> list[Path]:
    return sorted((home / "db" / "images.lance" / "_versions").glob("*.manifest"))


def _indexed_twice(tmp_path, cli) -> tuple[Path, Path]:
    photos = _photos(tmp_path / "p")
    cli("index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    make_picture(photos / "later.jpg", 50)
    cli("index", photos)
    return photos, tmp_path / "index"


def _one_line_error(result, *words):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and all(w in result.output for w in words), result.output


def test_truncated_newest_manifest_then_doctor_repair(tmp_path, cli):
    photos, home = _indexed_twice(tmp_path, cli)
    newest = _manifests(home)[0]  # V2 names count down: the first is the newest
    with open(newest, "r+b") as fh:
        fh.truncate(10)
    for args in (("search", "a dog"), ("status",), ("index", photos)):
        _one_line_error(cli(*args, ok=False), "damaged", "doctor")
    checkup = cli("doctor", ok=False)
    assert checkup.exit_code == 1 and "--repair" in checkup.output
    repaired = cli("doctor", "--repair")
    assert "moved the unreadable manifest" in repaired.output
    assert (home / "db" / "images.lance" / "_damaged" / newest.name).exists()  # kept, not lost
    assert cli("index", photos).exit_code == 0  # back in business; the newest photo re-added
    assert Store.open(home).count() == 8 and cli("doctor").exit_code == 0
    assert cli("search", "a dog", "--paths").stdout


def test_damaged_data_file_restores_the_intact_version(tmp_path, cli):
    photos, home = _indexed_twice(tmp_path, cli)
    # a fresh table whose newest version adds one data file, which is then truncated
    store = Store.open(home)
    data = home / "db" / "images.lance" / "data"
    known = set(data.iterdir())
    make_picture(photos / "newest.jpg", 60)
    cli("index", photos)
    new_files = [p for p in data.iterdir() if p not in known]
    assert new_files and store is not None
    for p in new_files:
        with open(p, "r+b") as fh:
            fh.truncate(20)
    _one_line_error(cli("search", "a dog", ok=False), "damaged", "doctor")
    repaired = cli("doctor", "--repair")
    assert "restored version" in repaired.output, repaired.output
    assert cli("search", "a dog", "--paths").exit_code == 0
    cli("index", photos)
    assert Store.open(home).count() == 9


def test_deleted_manifests_say_what_to_do_and_rebuild_works(tmp_path, cli):
    photos, home = _indexed_twice(tmp_path, cli)
    for m in _manifests(home):
        m.unlink()
    _one_line_error(cli("search", "a dog", ok=False), "damaged", "doctor")
    _one_line_error(cli("index", photos, ok=False), "damaged")
    checkup = cli("doctor", ok=False)
    assert "nothing to recover" in checkup.output and "--rebuild" in checkup.output
    rebuilt = cli("index", "--rebuild", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    assert "moved to" in rebuilt.output and Store.open(home).count() == 8


def test_index_pointing_at_a_file_and_a_lock_folder(tmp_path, cli):
    photos = _photos(tmp_path / "p")
    a_file = photos / "top0.jpg"
    for args in (("index", photos), ("search", "x"), ("status",)):
        _one_line_error(cli("--index", a_file, *args, ok=False), "is a file, not an index folder")
    home = tmp_path / "index"
    (home / "index.lock").mkdir(parents=True)
    _one_line_error(cli("index", photos, ok=False), "index.lock is a folder", "rmdir")


def test_read_only_index_still_searches(tmp_path, cli, monkeypatch):
    photos = _photos(tmp_path / "p")
    cli("index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    before = cli("search", "a red circle", "--paths").stdout
    home = tmp_path / "index"
    shutil.rmtree(home / "faiss")  # must be rebuilt, and the folder can't be written
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_mkdir = Path.mkdir

    def read_only_mkdir(self, *a, **kw):  # root ignores chmod: simulate EROFS
        if str(self).startswith(str(home)) and not self.exists():
            raise OSError(30, "Read-only file system", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    result = cli("search", "a red circle", "--paths")
    assert result.stdout == before and "Read-only file system" in result.stderr
    assert "cache" in result.stderr and not (home / "faiss").exists()
    again = cli("search", "a red circle", "--paths")  # loaded from the cache, no rebuild
    assert again.stdout == before and "Read-only" not in again.stderr

    real_open = os.open

    def read_only_open(path, flags, *a):
        if str(path).endswith("index.lock"):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", read_only_open)
    _one_line_error(cli("index", photos, ok=False), "can't write", "searching does not")


def test_full_disk_is_one_line_and_keeps_what_was_committed(tmp_path, cli, monkeypatch):
    photos = _photos(tmp_path / "p")
    cli("index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    make_picture(photos / "later.jpg", 70)
    merge_insert = type(Store.open(tmp_path / "index").table).merge_insert

    def full(self, *a, **kw):  # what LanceDB raises on a full disk (ENOSPC)
        raise RuntimeError("lance error: LanceError(IO): No space left on device (os error 28)")

    monkeypatch.setattr(type(Store.open(tmp_path / "index").table), "merge_insert", full)
    _one_line_error(cli("index", photos, ok=False), "no space left", "free some space")
    monkeypatch.setattr(type(Store.open(tmp_path / "index").table), "merge_insert", merge_insert)
    assert Store.open(tmp_path / "index").count() == 7  # committed rows kept
    assert cli("index", photos).stdout and Store.open(tmp_path / "index").count() == 8


# -- 10: a newline in a file name --------------------------------------------------------------
def test_newline_in_a_name_is_escaped_and_print0_pipes_it(tmp_path, cli):
    photos = tmp_path / "p"
    odd = make_picture(photos / "two\nlines.jpg", 1)
    make_picture(photos / "plain.jpg", 2)
    cli("index", "--model", "pixfind-tiny", "--pretrained", "none", photos)
    table = cli("search", "a photo").stdout.splitlines()
    assert len(table) == 3 and any("two\\nlines.jpg" in line for line in table)
    zero = cli("search", "a photo", "--print0").stdout_bytes
    assert sorted(zero.split(b"\0")[:-1]) == sorted(
        [os.fsencode(odd), os.fsencode(photos / "plain.jpg")]
    )
    assert "--print0" in cli("search", "a photo", "--paths").stderr
