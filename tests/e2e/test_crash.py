"""Crash safety: kill -9 at any moment, Ctrl-C, and two writers at once.

The indexer runs as a real subprocess (`python -m cli index`), committing one LanceDB
transaction per batch of 4 images, and is killed at several points of its run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixfind.indexer import IndexOptions, run_index
from pixfind.indexer.lock import index_lock
from pixfind.search.encoder import load_encoder
from pixfind.search.store import Store, _vectors
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, TINY

N_FILES = 160
BATCH = 4


def _corpus(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        sub = folder / f"d{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i:03d}.png")
    return folder


def _start(home: Path, photos: Path, workers: int = 0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pixfind.cli", "--index", str(home), "index", str(photos)]
    cmd += ["--model", TINY[0], "--pretrained", TINY[1], "--batch-size", str(BATCH)]
    cmd += ["--workers", str(workers), "--json"]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a job in a terminal
    )


def _commits(home: Path) -> int:
    versions = home / "db" / "images.lance" / "_versions"
    return len(list(versions.glob("*.manifest"))) if versions.is_dir() else 0


def _wait_commits(proc: subprocess.Popen, home: Path, n: int, limit: float = 60.0) -> bool:
    """Wait until ``n`` versions are committed; False if the process ended first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _commits(home) >= n:
            return True
        time.sleep(0.005)
    raise AssertionError(f"no {n} commits within {limit}s")


def _rows(home: Path) -> tuple[list[str], np.ndarray]:
    store = Store.open(home)
    t = store.table.to_arrow()
    paths = t["path"].to_pylist()
    vectors = _vectors(t, store.info.dim)
    order = np.argsort(paths)
    return [paths[i] for i in order], vectors[order]


def _kill_at(home: Path, photos: Path, commits: int) -> None:
    proc = _start(home, photos)
    if _wait_commits(proc, home, commits):
        time.sleep(0.002 * (commits % 7))  # land inside a batch too, not only at its edges
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _run(home: Path, photos: Path) -> dict:
    proc = _start(home, photos)
    out, errs = proc.communicate(timeout=180)
    assert proc.returncode == 0, errs.decode()
    return json.loads(out)


def test_kill_9_at_any_moment_then_resume_equals_clean_run(tmp_path):
    photos = _corpus(tmp_path / "photos")
    home = tmp_path / "index"
    committed: list[int] = []
    # kill points: right after the table is created, early and mid-run
    for kill_at in (1, 6, 25):
        _kill_at(home, photos, kill_at)
        if Store.exists(home):
            paths, _ = _rows(home)  # readable after every kill
            assert len(paths) == len(set(paths)), "duplicate rows after kill -9"
            committed.append(len(paths))
    assert committed == sorted(committed) and 0 < committed[-1] < N_FILES

    report = _run(home, photos)
    # committed batches are not embedded again
    assert report["added"] == N_FILES - committed[-1] and report["updated"] == 0
    assert report["total"] == N_FILES

    # kill once more after the last batch: during compaction or the FAISS swap
    for p in sorted(photos.rglob("*.png"))[: BATCH * 2]:
        os.utime(p, (1e9, 1e9))
    _kill_at(home, photos, _commits(home) + 2)
    assert len(set(_rows(home)[0])) == N_FILES
    again = _run(home, photos)
    assert again["added"] == 0 and again["total"] == N_FILES
    print(f"\nrows committed at each kill: {committed}; resumed run embedded {report['added']}")

    clean = tmp_path / "clean"
    run_index(
        clean,
        IndexOptions(roots=[str(photos)], workers=0, batch_size=32),
        encoder=load_encoder(EncoderSpec(TINY[0], None), "cpu"),
    )
    got_paths, got = _rows(home)
    want_paths, want = _rows(clean)
    assert got_paths == want_paths and len(got_paths) == len(set(got_paths)) == N_FILES
    np.testing.assert_allclose(got, want, atol=1e-5)
    # and the derived FAISS index agrees with the store
    from pixfind.search.engine import Searcher

    hits = Searcher(home).search_vector(want[7], k=1)
    assert hits[0].path == want_paths[7] and hits[0].score > 0.999


def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(tmp_path):
    photos = _corpus(tmp_path / "photos")
    home = tmp_path / "index"
    proc = _start(home, photos, workers=1)  # a decoding worker gets the SIGINT too
    assert _wait_commits(proc, home, 6), "finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, errs = proc.communicate(timeout=60)
    assert proc.returncode == 130, errs.decode()
    assert "run the same command again to resume" in errs.decode()
    report = json.loads(out)
    assert report["interrupted"] and 0 < report["added"] < N_FILES
    paths, _ = _rows(home)
    assert len(paths) == report["added"] == report["total"]  # every batch it counted is there

    assert _run(home, photos)["added"] == N_FILES - len(paths)
    assert len(set(_rows(home)[0])) == N_FILES


def test_a_second_indexer_on_the_same_index_refuses(tmp_path, cli, picture_dir):
    home = tmp_path / "index"  # where the cli fixture points PIXFIND_HOME
    with index_lock(home):
        result = cli("index", picture_dir, "--model", TINY[0], "--pretrained", TINY[1], ok=False)
    assert result.exit_code == 1
    assert f"being updated by pid {os.getpid()}" in result.output
    assert not Store.exists(home)  # it refused before touching anything
    cli("index", picture_dir, "--model", TINY[0], "--pretrained", TINY[1])  # lock released


@pytest.mark.parametrize("stage", ["faiss.tmp", "faiss.old"])
def test_leftovers_of_a_killed_faiss_swap_are_harmless(tmp_path, cli, picture_dir, stage):
    cli("index", picture_dir, "--model", TINY[0], "--pretrained", TINY[1])
    home = tmp_path / "index"
    # kill -9 between the two renames of the swap: faiss/ missing, a stray folder left
    (home / "faiss").rename(home / f"{stage}12345")
    result = cli("search", "anything", "-k", "3", "--json")
    assert result.exit_code == 0 and (home / "faiss" / "infos.json").is_file()
