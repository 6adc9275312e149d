"""A re-index with nothing to do does nothing: no torch, no open_clip, no LanceDB, no derived
file rewritten; and a run that only removes photos still loads no model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pixfind.indexer import IndexOptions, run_index
from pixfind.indexer.filestate import STATE_FILE, load_fresh
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, TINY, make_picture

HEAVY = ("torch", "open_clip", "lancedb", "pyarrow", "faiss")
PROBE = """
import json, sys
from pixfind.cli import main
sys.argv = ["pixfind", "--index", sys.argv[1], "index", sys.argv[2], "--json"]
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = [m for m in {heavy!r} if m in sys.modules]
print("PROBE" + json.dumps({{"exit": code, "loaded": loaded}}), file=sys.stderr)
"""


def _reindex(home: Path, photos: Path) -> tuple[dict, list[str]]:
    """`pixfind index` in a fresh interpreter: (its JSON report, heavy modules it imported)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), str(home), str(photos)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    probe = json.loads(proc.stderr[proc.stderr.rindex("PROBE") + 5 :].splitlines()[0])
    assert probe["exit"] in (0, None), proc.stderr
    return json.loads(proc.stdout[proc.stdout.index("{") :]), probe["loaded"]


def _derived(home: Path) -> dict[str, int]:
    """mtime_ns of every file of the index but its lock (the table, FAISS, snapshot, state)."""
    return {
        str(p.relative_to(home)): p.stat().st_mtime_ns
        for p in home.rglob("*")
        if p.is_file() and p.name != "index.lock"
    }


def test_unchanged_folder_reindex_imports_no_model_nor_table_and_writes_nothing(tmp_path):
    photos, home = tmp_path / "photos", tmp_path / "index"
    for i in range(8):
        make_picture(photos / ("a" if i % 2 else "b") / f"p{i}.jpg", seed=i)
    broken = photos / "b" / "broken.jpg"
    broken.write_bytes(b"not a JPEG at all")  # fails to decode: must not force every run
    options = IndexOptions(roots=[str(photos)], workers=0)
    first = run_index(home, options, spec=EncoderSpec(*TINY[:1], None))
    assert first.added == 8 and [p for p, _ in first.skipped] == [str(broken)]
    assert load_fresh(home) is not None  # the complete run left its file states
    before = _derived(home)
    assert any(name.startswith("faiss/") for name in before)

    report, loaded = _reindex(home, photos)
    assert (report["unchanged"], report["added"], report["removed"], report["total"]) == (
        8,
        0,
        0,
        8,
    )
    assert loaded == [], f"a no-op re-index imported {loaded}"
    assert [s["path"] for s in report["skipped"]] == [str(broken)]  # still reported
    assert _derived(home) == before  # nothing rewritten: table, FAISS, snapshot, file states

    # a photo removed: the table changes, but nothing needs embedding, so no model loads
    (photos / "a" / "p1.jpg").unlink()
    report, loaded = _reindex(home, photos)
    assert (report["removed"], report["unchanged"], report["total"]) == (1, 7, 7)
    assert "torch" not in loaded and "open_clip" not in loaded
    assert "lancedb" in loaded  # the table itself was asked (the saved states were fresh)

    # the derived files follow the table, and the next unchanged run is quick again
    after_removal = _derived(home)
    assert after_removal[STATE_FILE] != before[STATE_FILE]
    report, loaded = _reindex(home, photos)
    assert report["unchanged"] == 7 and loaded == []
    assert _derived(home) == after_removal


def test_changed_photos_and_a_repaired_broken_file_are_found_with_fresh_saved_states(tmp_path):
    photos, home = tmp_path / "photos", tmp_path / "index"
    for i in range(4):
        make_picture(photos / f"p{i}.png", seed=i)
    (photos / "fixed.png").write_bytes(b"\x89PNG truncated")
    options = IndexOptions(roots=[str(photos)], workers=0)
    run_index(home, options, spec=EncoderSpec(*TINY[:1], None))
    assert list(load_fresh(home).failed) == [str(photos / "fixed.png")]
    make_picture(photos / "p2.png", seed=40, size=(90, 70))  # new content, new size
    make_picture(photos / "new.png", seed=41)
    make_picture(photos / "fixed.png", seed=42)  # the broken file, now a picture
    report = run_index(home, options)
    assert (report.updated, report.added, report.unchanged, report.skipped) == (1, 2, 3, [])
    saved = load_fresh(home)
    assert saved is not None and len(saved.states) == 6 and saved.failed == {}
    assert saved.states[str(photos / "p2.png")][1] == (photos / "p2.png").stat().st_size


def test_rows_still_without_perceptual_hashes_send_a_reindex_to_the_pipeline(tmp_path):
    from pixfind.search.store import Store

    photos, home = tmp_path / "photos", tmp_path / "index"
    for i in range(6):
        make_picture(photos / ("a" if i % 2 else "b") / f"p{i}.jpg", seed=i)
    run_index(home, IndexOptions(roots=[str(photos)], workers=0), spec=EncoderSpec(*TINY[:1], None))
    # as an index written before perceptual hashes: every row lacks them
    Store.open(home).table.drop_columns(["phash", "phash_crop"])
    only_a = run_index(home, IndexOptions(roots=[str(photos / "a")], workers=0))
    assert only_a.rehashed == 3 and only_a.embedded == 0
    saved = load_fresh(home)
    assert saved is not None and sorted(saved.unhashed) == sorted(
        str(p) for p in (photos / "b").glob("*.jpg")
    )
    # b's rows are unchanged on disk, but still lack hashes: no quick "nothing to do"
    only_b = run_index(home, IndexOptions(roots=[str(photos / "b")], workers=0))
    assert only_b.rehashed == 3 and only_b.embedded == 0
    assert load_fresh(home).unhashed == ()
    again = run_index(home, IndexOptions(roots=[str(photos)], workers=0))
    assert again.rehashed == 0 and again.unchanged == 6
