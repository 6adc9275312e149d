"""Walk photo folders: yield image files (path, mtime, size) and report what was skipped."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator, Sequence

from pixfind.search.images import supported_extensions
from pixfind.search.location import is_uri
from pixfind.search.photobucket import list_objects, normalise
from pixfind.search.raw import RAW_EXTENSIONS, RENDERED_EXTENSIONS
from pixfind.search.types import FileStat

from .plan import under_roots

Skip = Callable[[str, str], None]
Pair = Callable[[str, str], None]  # (RAW path, the sibling indexed for it)


def pair_raws(paths: Sequence[str], on_pair: Pair | None = None) -> list[str]:
    """``paths`` (one folder's) without the RAWs that have a JPEG/HEIF sibling of the same
    name (``IMG_1.CR2`` beside ``IMG_1.JPG``): a RAW+JPEG shot is one photo, indexed through
    the camera's own rendering; ``on_pair(raw, sibling)`` hears of each."""
    rendered: dict[str, str] = {}
    for path in paths:
        stem, ext = os.path.splitext(path)
        if ext.lower() in RENDERED_EXTENSIONS:
            rendered.setdefault(stem.lower(), path)
    kept = []
    for path in paths:
        stem, ext = os.path.splitext(path)
        sibling = rendered.get(stem.lower()) if ext.lower() in RAW_EXTENSIONS else None
        if sibling is None:
            kept.append(path)
        elif on_pair:
            on_pair(path, sibling)
    return kept


def _excluded(path: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def scan(
    roots: Sequence[str | os.PathLike],
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    on_skip: Skip | None = None,
    extensions: frozenset[str] | None = None,
    on_unreadable: Skip | None = None,
    on_pair: Pair | None = None,
) -> Iterator[FileStat]:
    """Yield image files under ``roots`` (files may be roots too), streaming, sorted per folder.

    Symlinked folders are not followed (no loops); symlinked files are, and a broken one is
    reported through ``on_skip(path, reason)``. A root that does not exist and a folder that
    can't be listed go to ``on_unreadable(path, reason)`` (else to ``on_skip``): what is under
    them was not seen, which does not mean it is gone. A RAW beside its JPEG/HEIF sibling is
    left out for the sibling (``pair_raws``); a RAW given as a root itself is not.
    """
    exts = extensions or supported_extensions()
    skip = on_skip or (lambda path, reason: None)
    unreadable = on_unreadable or skip
    seen: set[str] = set()
    for root in roots:
        if is_uri(root):
            found = _listed(root, exts, exclude, include_hidden, unreadable, on_pair)
            for stat in found:
                if stat.path not in seen:
                    seen.add(stat.path)
                    yield stat
            continue
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        if os.path.isfile(root):
            found = _stat(root, skip)
            if found and root not in seen:
                seen.add(root)
                yield found
            continue
        if not os.path.lexists(root):
            unreadable(root, "does not exist (not mounted?)")
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
            except PermissionError:
                unreadable(folder, "folder not readable (permission denied)")
                continue
            except OSError as exc:
                unreadable(folder, f"folder not readable: {exc.strerror or exc}")
                continue
            files = []
            for entry in entries:
                if not include_hidden and entry.name.startswith("."):
                    continue
                if _excluded(entry.path, entry.name, exclude):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                except OSError as exc:
                    unreadable(entry.path, f"can't tell what it is: {exc.strerror or exc}")
                    continue
                if os.path.splitext(entry.name)[1].lower() in exts:
                    files.append(entry.path)
            for path in pair_raws(files[::-1], on_pair):
                if path in seen:
                    continue
                seen.add(path)
                found = _stat(path, skip)
                if found:
                    yield found


def _listed(
    root: str,
    exts: frozenset[str],
    exclude: Sequence[str],
    include_hidden: bool,
    unreadable: Skip,
    on_pair: Pair | None,
) -> Iterator[FileStat]:
    """The image objects under an s3:// prefix (search/photobucket.py), streaming, filtered
    as a folder's files are: extensions, hidden names below the root, ``exclude``, RAW+JPEG
    pairs (keys in order: a RAW and its JPEG, same name but the extension, come together)."""
    root = normalise(root)
    group: dict[str, FileStat] = {}
    for uri, mtime, size in list_objects(root, unreadable):
        at, left_out = root, False
        for part in uri[len(root) + 1 :].split("/") if uri != root else ():
            at = f"{at}/{part}"  # each "folder" below the root, then the object itself
            hidden = not include_hidden and part.startswith(".")
            left_out = left_out or hidden or _excluded(at, part, exclude)
        stem, ext = os.path.splitext(uri)
        if left_out or ext.lower() not in exts:
            continue
        if group and os.path.splitext(next(iter(group)))[0] != stem:
            yield from (group[p] for p in pair_raws(list(group), on_pair))
            group = {}
        group[uri] = FileStat(uri, mtime, size)
    yield from (group[p] for p in pair_raws(list(group), on_pair))


def confirmed_gone(path: str, roots: Sequence[str]) -> bool:
    """Whether a path that was not found is known to be gone: the nearest folder above it
    that exists lies under one of ``roots`` (or is one) and can be listed. A missing root (not
    mounted) or a folder that can't be read says nothing about what was in it."""
    try:
        os.lstat(path)
        return False  # it is there (it could not be checked for another reason)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    folder = path
    while True:
        parent = os.path.dirname(folder)
        if parent == folder or not under_roots(parent, roots):
            return False
        folder = parent
        try:
            with os.scandir(folder):
                return True
        except FileNotFoundError:
            continue
        except OSError:
            return False


def ignored(path: str, root: str, exclude: Sequence[str], include_hidden: bool) -> bool:
    """Whether ``scan`` of ``root`` would leave ``path`` out: a hidden or excluded name on
    the way down from the root (the root itself is taken as given)."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return False
    at = root
    for name in rel.split(os.sep):
        at = os.path.join(at, name)
        if name in (".", "..") or (not include_hidden and name.startswith(".")):
            return True
        if _excluded(at, name, exclude):
            return True
    return False


def _stat(path: str, skip: Skip) -> FileStat | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        skip(path, "broken symlink" if os.path.islink(path) else "file vanished during the run")
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            skip(path, "symlink loop")
        else:
            skip(path, f"can't stat: {exc.strerror or exc}")
        return None
    if not stat.S_ISREG(st.st_mode):
        if not stat.S_ISDIR(st.st_mode):  # FIFOs, sockets, devices named like images
            skip(path, "not a regular file")
        return None
    return FileStat(path, st.st_mtime, st.st_size)
