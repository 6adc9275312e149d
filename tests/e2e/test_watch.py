"""Issue 19 part 2, a live index: `pixfind watch` and `pixfind serve --watch` keep the index
current as photos are added, changed, moved or deleted.

Real watchfiles events on real files, the real pipeline with pixfind-tiny, the real CLI and a
real server on 127.0.0.1 in subprocesses (Ctrl-C and kill -9 are sent to them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from pixfind.indexer import IndexOptions, run_index
from pixfind.indexer.watch import Watcher, WatchSettings
from pixfind.search.encoder import load_encoder
from pixfind.search.store import Store
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, TINY, make_picture

LATENCY = 5.0  # seconds from a copy into a watched folder to a search that finds it
MODEL = ["--model", TINY[0], "--pretrained", TINY[1]]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(EncoderSpec("pixfind-tiny", None), "cpu")


def _pixfind(*args, home: Path, log: Path) -> subprocess.Popen:
    """`pixfind ARGS` in a process of its own, stdout and stderr to files (read while it runs)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pixfind.cli", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PIXFIND_HOME": str(home), "OMP_NUM_THREADS": "1"},
        stdout=open(log.with_suffix(".out"), "wb"),  # noqa: SIM115 - closed with the process
        stderr=open(log.with_suffix(".err"), "wb"),  # noqa: SIM115
    )


def _wait_for(check, timeout: float, every: float = 0.1):
    """Poll ``check()`` until it returns something truthy; that value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    return None


def _indexed(home: Path) -> set[str]:
    if not Store.exists(home):
        return set()
    return set(Store.open(home).file_states())


def _stop(proc: subprocess.Popen, sig=signal.SIGINT) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- the CLI: a copy is searchable within 5 s, deletions and moves follow, Ctrl-C stops ---------
def test_watch_cli_finds_a_copied_photo_and_follows_deletions(tmp_path, cli):
    photos, home = tmp_path / "photos", tmp_path / "index"
    for i in range(3):
        make_picture(photos / f"old{i}.jpg", i)
    log = tmp_path / "watch"
    proc = _pixfind("watch", photos, *MODEL, "--json", home=home, log=log)
    try:
        ready = _wait_for(lambda: b"watching" in log.with_suffix(".err").read_bytes(), 120, 0.2)
        assert ready, log.with_suffix(".err").read_text()
        assert len(_indexed(home)) == 3  # the rescan at start

        source = make_picture(tmp_path / "camera" / "new.jpg", 42)
        copied = str(photos / "new.jpg")

        def found() -> bool:  # through the CLI, as a user would look
            result = cli("--index", home, "search", "a photo", "-k", "50", "--paths")
            return copied in result.stdout.splitlines()

        assert not found()  # (this first search also loads the text model in this process)
        started = time.monotonic()
        shutil.copy(source, copied)

        assert _wait_for(found, 3 * LATENCY), "the copied photo never became searchable"
        assert time.monotonic() - started < LATENCY

        (photos / "old0.jpg").unlink()
        (photos / "old1.jpg").rename(photos / "renamed.jpg")
        gone = str(photos / "old0.jpg")
        assert _wait_for(lambda: gone not in _indexed(home), LATENCY)
        assert _wait_for(lambda: str(photos / "renamed.jpg") in _indexed(home), LATENCY)
        assert str(photos / "old1.jpg") not in _indexed(home)

    finally:
        code = _stop(proc)  # Ctrl-C
    err = log.with_suffix(".err").read_text()
    assert code == 0 and "Traceback" not in err and "stopped watching" in err, err


# -- the server: `pixfind serve --watch` answers with the new photo within 5 s; kill -9 ---------
def test_serve_watch_finds_a_copied_photo_and_kill_loses_nothing(tmp_path, cli):
    photos, home = tmp_path / "photos", tmp_path / "index"
    for i in range(3):
        make_picture(photos / f"old{i}.jpg", i)
    cli("--index", home, "index", photos, *MODEL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve"
    proc = _pixfind("serve", "--port", port, "--watch", photos, home=home, log=log)
    base = f"http://127.0.0.1:{port}"

    def paths() -> set[str] | None:
        try:
            with urllib.request.urlopen(f"{base}/api/search?q=a+photo&k=50", timeout=5) as r:
                return {h["path"] for h in json.load(r)["results"]}
        except OSError:
            return None

    try:
        assert _wait_for(paths, 120, 0.3), log.with_suffix(".err").read_text()
        time.sleep(0.5)  # the watcher starts beside the server; its first scan finds nothing new
        copied = str(photos / "sub" / "new.png")
        source = make_picture(tmp_path / "camera" / "new.png", 7)
        started = time.monotonic()
        shutil.copytree(source.parent, photos / "sub")  # a folder moved in with its photo
        found = _wait_for(lambda: copied in (paths() or ()), 3 * LATENCY, 0.2)
        assert found, log.with_suffix(".err").read_text()
        assert time.monotonic() - started < LATENCY

        # kill -9 while a burst is being indexed: every committed batch is still there
        for i in range(200):
            make_picture(photos / "burst" / f"b{i:03d}.jpg", 100 + i, (48, 36))
        committed = _wait_for(lambda: max(len(_indexed(home)) - 4, 0), 60)
        assert committed, log.with_suffix(".err").read_text()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(_indexed(home)) >= 4 + committed
    doctor = cli("--index", home, "doctor", "--json", ok=False)
    assert doctor.exit_code == 0, doctor.output


# -- a burst is indexed in a few runs and commits, not one per file ----------------------------
def test_a_burst_of_1000_files_is_indexed_in_batches(tmp_path, encoder):
    photos, home = tmp_path / "photos", tmp_path / "index"
    make_picture(photos / "first.jpg", 0, (48, 36))
    options = IndexOptions(roots=[str(photos)], workers=0, batch_size=128)
    watcher = Watcher(home, options, encoder, WatchSettings(rescan_minutes=0))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: watcher.runs >= 1, 60)
        version = Store.open(home).version
        for i in range(1000):
            make_picture(photos / f"d{i // 250}" / f"b{i:04d}.jpg", i + 1, (48, 36))
        assert _wait_for(lambda: len(_indexed(home)) == 1001, 120, 0.5)
    finally:
        watcher.stop()
        thread.join(timeout=60)
    runs, commits = watcher.runs - 1, Store.open(home).version - version
    print(f"\n[burst] 1000 files: {runs} indexing runs, {commits} table versions")
    assert runs <= 20 and commits <= 100, (runs, commits)
    assert not thread.is_alive()


# -- what can't be seen is not removed ----------------------------------------------------------
def test_deleted_paths_go_but_a_missing_root_or_unlistable_folder_removes_nothing(
    tmp_path, encoder, monkeypatch
):
    photos, home = tmp_path / "drive", tmp_path / "index"
    for i in range(3):
        make_picture(photos / f"top{i}.jpg", i)
    for i in range(3):
        make_picture(photos / "locked" / f"in{i}.jpg", 10 + i)

    def run(only=None):
        return run_index(home, IndexOptions([str(photos)], workers=0, only=only), encoder=encoder)

    assert run().added == 6
    (photos / "top0.jpg").unlink()
    report = run([str(photos / "top0.jpg")])
    assert (report.removed, len(_indexed(home))) == (1, 5)

    locked = str(photos / "locked")
    real_scandir = os.scandir

    def scandir(path="."):  # chmod 000 for a non-root user, simulated for root
        if isinstance(path, str) and path == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    shutil.rmtree(locked)  # gone, but its folder can't be listed: nothing says so
    os.mkdir(locked)
    report = run([os.path.join(locked, "in0.jpg"), locked])
    assert (report.removed, len(_indexed(home))) == (0, 5)
    monkeypatch.undo()

    moved = photos.rename(tmp_path / "unmounted")  # the drive goes away
    report = run([str(photos / "top1.jpg"), str(photos)])
    assert (report.removed, len(_indexed(home))) == (0, 5)
    assert report.unreadable and "not mounted" in report.unreadable[0][1]
    moved.rename(photos)
    assert run().removed == 3  # a full scan of a listable folder: the three under locked/


def test_a_watched_drive_that_goes_away_keeps_its_photos_and_is_rescanned_on_return(
    tmp_path, encoder
):
    drive, home = tmp_path / "drive", tmp_path / "index"
    for i in range(3):
        make_picture(drive / f"p{i}.jpg", i)
    options = IndexOptions(roots=[str(drive)], workers=0)
    watcher = Watcher(home, options, encoder, WatchSettings(rescan_minutes=0))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert _wait_for(lambda: len(_indexed(home)) == 3, 60)
        runs = watcher.runs
        away = drive.rename(tmp_path / "unmounted")  # the drive is unmounted
        assert _wait_for(lambda: watcher.runs > runs, 30)  # noticed: rescanned
        time.sleep(1.0)
        assert len(_indexed(home)) == 3  # nothing removed
        make_picture(away / "while-away.jpg", 9)
        away.rename(drive)  # back, with a photo added meanwhile: the rescan finds it
        assert _wait_for(lambda: len(_indexed(home)) == 4, 30)
    finally:
        watcher.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
