"""Which changed paths a live index looks at, and when a path that is not there counts as gone
(indexer/scan.py, indexer/watch.py): real files in tmp_path, no model, no watcher thread."""

from __future__ import annotations

import os
from pathlib import Path

from pixfind.indexer import IndexOptions
from pixfind.indexer.scan import confirmed_gone, ignored
from pixfind.indexer.watch import ADDED, DELETED, MODIFIED, Watcher


def test_a_deleted_file_or_folder_under_a_listable_folder_is_gone(tmp_path):
    root = tmp_path / "photos"
    (root / "trip").mkdir(parents=True)
    roots = [str(root)]
    assert confirmed_gone(str(root / "trip" / "x.jpg"), roots)
    assert confirmed_gone(str(root / "gone" / "deeper" / "x.jpg"), roots)  # folder gone too
    (root / "here.jpg").write_bytes(b"x")
    assert not confirmed_gone(str(root / "here.jpg"), roots)  # it is there


def test_a_missing_root_or_unlistable_folder_confirms_nothing(tmp_path, monkeypatch):
    root = tmp_path / "drive"
    assert not confirmed_gone(str(root / "x.jpg"), [str(root)])  # not mounted
    assert not confirmed_gone(str(root), [str(root)])
    (root / "locked").mkdir(parents=True)
    locked = str(root / "locked")
    real = os.scandir

    def scandir(path="."):
        if path == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert not confirmed_gone(os.path.join(locked, "x.jpg"), [str(root)])
    assert confirmed_gone(str(root / "other.jpg"), [str(root)])


def test_ignored_follows_the_scan_rules(tmp_path):
    root = str(tmp_path)
    assert not ignored(root, root, [], False)
    assert not ignored(f"{root}/a/b.jpg", root, [], False)
    assert ignored(f"{root}/.cache/b.jpg", root, [], False)
    assert ignored(f"{root}/a/.b.jpg.part", root, [], False)
    assert not ignored(f"{root}/.cache/b.jpg", root, [], True)
    assert ignored(f"{root}/a/thumbs/b.jpg", root, ["thumbs"], False)
    assert ignored(f"{root}/a/b.tmp.jpg", root, ["*.tmp.jpg"], False)


def test_relevant_changes(tmp_path):
    root = tmp_path / "photos"
    (root / "new").mkdir(parents=True)
    (root / "old").mkdir()
    watcher = Watcher(tmp_path / "index", IndexOptions([str(root)], exclude=["skip"]), None)
    p = lambda *parts: str(root.joinpath(*parts))  # noqa: E731
    changes = {
        (ADDED, p("a.jpg")),
        (MODIFIED, p("b.PNG")),
        (ADDED, p("notes.txt")),  # not an image
        (ADDED, p("new")),  # a folder moved in: scanned
        (MODIFIED, p("old")),  # a folder's own times: nothing to do
        (DELETED, p("gone")),  # deleted, folder or file: its rows go
        (ADDED, p(".hidden.jpg")),
        (ADDED, p("skip", "c.jpg")),
        (ADDED, str(tmp_path / "elsewhere.jpg")),  # not under a root
    }
    expected = {p("a.jpg"), p("b.PNG"), p("new"), p("gone")}
    assert watcher.relevant(changes) == expected


def test_roots_are_watched_by_their_real_paths(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    watcher = Watcher(tmp_path / "index", IndexOptions([str(link)]), None)
    assert watcher.roots == [str(real)]
    assert watcher.relevant({(ADDED, str(Path(real) / "x.jpg"))}) == {str(real / "x.jpg")}
