"""The scan stage on a real folder tree: what is yielded, what is left out, what is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pixfind.indexer.scan import scan

from ..conftest import make_picture


def _scan(*roots, **kw) -> tuple[list[str], list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    found = scan([str(r) for r in roots], on_skip=lambda p, r: skipped.append((p, r)), **kw)
    return [s.path for s in found], skipped


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in ["a.jpg", "b.PNG", "trips/c.jpg", "trips/raw/d.webp", "thumbs/t.jpg"]:
        make_picture(root / rel, seed=len(rel))
    make_picture(root / ".cache" / "hidden.jpg", seed=1)
    make_picture(root / ".dotfile.jpg", seed=2)
    (root / "notes.txt").write_text("not an image")
    (root / "trips" / "c.jpg.txt").write_text("a caption sidecar, not an image")
    return root


def test_yields_images_sorted_per_folder_with_their_stat(tree):
    found = list(scan([str(tree)]))
    paths = [s.path for s in found]
    rel = [os.path.relpath(p, tree) for p in paths]
    assert rel == ["a.jpg", "b.PNG", "thumbs/t.jpg", "trips/c.jpg", "trips/raw/d.webp"]
    st = os.stat(tree / "a.jpg")
    assert (found[0].mtime, found[0].size) == (st.st_mtime, st.st_size)


def test_hidden_entries_only_when_asked(tree):
    paths, _ = _scan(tree)
    assert not any("/." in p for p in paths)
    paths, _ = _scan(tree, include_hidden=True)
    assert str(tree / ".cache" / "hidden.jpg") in paths and str(tree / ".dotfile.jpg") in paths


def test_excludes_match_names_and_paths(tree):
    paths, _ = _scan(tree, exclude=["thumbs", "*.webp"])
    assert [os.path.relpath(p, tree) for p in paths] == ["a.jpg", "b.PNG", "trips/c.jpg"]
    paths, _ = _scan(tree, exclude=[f"{tree}/trips/*"])
    assert [os.path.relpath(p, tree) for p in paths] == ["a.jpg", "b.PNG", "thumbs/t.jpg"]


def test_file_roots_and_repeated_roots_yield_each_file_once(tree):
    paths, skipped = _scan(tree / "a.jpg", tree, tree / "trips")
    assert paths[0] == str(tree / "a.jpg") and len(paths) == len(set(paths)) == 5
    assert skipped == []


def test_symlinks_files_followed_folders_not_broken_reported(tree, tmp_path):
    outside = make_picture(tmp_path / "elsewhere" / "linked.jpg", seed=7)
    os.symlink(outside, tree / "link.jpg")
    os.symlink(tmp_path / "elsewhere", tree / "linked_folder")
    os.symlink(tree, tree / "trips" / "loop")  # a folder loop must not be walked
    os.symlink(tmp_path / "missing.jpg", tree / "broken.jpg")
    paths, skipped = _scan(tree)
    assert str(tree / "link.jpg") in paths
    assert not any("linked_folder" in p or "/loop/" in p for p in paths)
    assert skipped == [(str(tree / "broken.jpg"), "broken symlink")]


def test_fifo_named_like_an_image_is_reported_not_opened(tree):
    os.mkfifo(tree / "pipe.jpg")
    paths, skipped = _scan(tree)
    assert str(tree / "pipe.jpg") not in paths
    assert skipped == [(str(tree / "pipe.jpg"), "not a regular file")]


def test_unlistable_folder_and_missing_root_go_to_on_unreadable(tree, tmp_path, monkeypatch):
    blocked = str(tree / "trips")
    real = os.scandir

    def scandir(path="."):
        if isinstance(path, str) and path == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    unreadable = []
    missing = str(tmp_path / "unmounted")
    list(scan([tree, missing], on_unreadable=lambda p, r: unreadable.append((p, r))))
    assert unreadable == [
        (blocked, "folder not readable (permission denied)"),
        (missing, "does not exist (not mounted?)"),
    ]
