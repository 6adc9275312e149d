"""`pixfind duplicates`: a thin Typer command over search/duplicates.py, mounted by cli.py.

It lists groups of copies and never deletes anything: --paths-of-copies / --print0 hand the
copies that are not the best of their group to other tools."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from .cli_common import (
    AfterOpt,
    BeforeOpt,
    FolderOpt,
    MinHeightOpt,
    MinWidthOpt,
    Print0Opt,
    TypeOpt,
    err,
    index_home,
    out,
    write_paths,
)
from .duplicates import DEFAULT_THRESHOLD, Duplicates
from .types import printable_path

app = typer.Typer()


@app.command("duplicates")
def duplicates_cmd(
    threshold: Annotated[
        int,
        typer.Option(
            "--threshold",
            "-t",
            help="Most perceptual-hash bits (of 64) two copies may differ by; 0: identical "
            f"pictures only. Default {DEFAULT_THRESHOLD}.",
        ),
    ] = DEFAULT_THRESHOLD,
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="Which copy is the best: largest (most pixels, then bytes), oldest (taken "
            "first), metadata (most of EXIF date, camera, GPS, caption).",
        ),
    ] = "largest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the groups as JSON.")] = False,
    paths_of_copies: Annotated[
        bool,
        typer.Option(
            "--paths-of-copies", help="Only the paths of the copies that are not the best."
        ),
    ] = False,
    print0: Print0Opt = False,
    sheet: Annotated[
        Path | None,
        typer.Option(
            "--sheet", help="Write a contact sheet per group into this folder.", metavar="DIR"
        ),
    ] = None,
    folder: FolderOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    min_width: MinWidthOpt = 0,
    min_height: MinHeightOpt = 0,
    file_type: TypeOpt = None,
) -> None:
    """Groups of exact and near-duplicate photos (resized, recompressed, re-exported,
    lightly edited or cropped copies, bursts), best copy first. Never deletes anything.

    Example: pixfind duplicates --folder ~/Pictures --paths-of-copies --print0 | xargs -0 ls -l
    """
    from .duplicates import find_duplicates
    from .query import parse_filters
    from .store import Store

    filters = parse_filters(folder, after, before, min_width, min_height, file_type)
    found = find_duplicates(Store.open(index_home()), filters or None, threshold, keep)
    if sheet is not None:
        from .dupsheet import write_sheets

        written = write_sheets(found, sheet)
        err.print(f"{len(written)} contact sheets in {printable_path(str(sheet))}")
    if as_json:
        out.print_json(data=found.to_dict())
    elif paths_of_copies or print0:
        write_paths([c.path for g in found.groups for c in g.others], print0)
    else:
        _print_groups(found)


def _print_groups(found: Duplicates) -> None:
    """Plain lines rather than a rich table: long paths must never be cut or folded."""
    write = sys.stdout.write
    for n, group in enumerate(found.groups, 1):
        write(f"group {n}: {len(group.copies)} photos, {group.kind} copies\n")
        for c in group.copies:
            mark = "keep" if c.best else ("same" if c.same_file else f"{c.distance} bits")
            day = time.strftime("%Y-%m-%d", time.localtime(c.taken_at))
            write(
                f"  {mark:>7}  {c.width:>5}x{c.height:<5} {c.size / 1e6:>7.2f} MB  {day}  "
                f"{printable_path(c.path)}\n"
            )
    spare = sum(c.size for g in found.groups for c in g.others)
    write(
        f"{len(found.groups)} group(s), {found.copies} copies besides the best ones "
        f"({spare / 1e6:.1f} MB) among {found.photos} photos; best copy: {found.keep}; "
        f"threshold {found.threshold} bits; nothing was deleted\n"
    )
    if found.unhashed:
        err.print(
            f"[yellow]note:[/] {found.unhashed} photos have no perceptual hash yet (indexed by "
            "an older pixfind): only their exact copies are found; run `pixfind index` on "
            "their folders to hash them (no re-embedding)"
        )
