"""pixfind command line: thin Typer commands over search/, indexer/ and api/.

Heavy imports (torch, open_clip, lancedb, faiss) happen inside commands, so --help is instant.
A plain `pixfind search "words"` is answered before the app is even built
(search/plainsearch.py): the checks below run first, hence the late imports.
"""
# ruff: noqa: E402

from __future__ import annotations

import os
import sys
from pathlib import Path

from pixfind.search.plainsearch import answer, print_table, raw_note, write_json

# `python -m pixfind.cli ...` or the `pixfind` console script (not an import by a test)
if (__name__ == "__main__" or Path(sys.argv[0]).stem == "pixfind") and answer(sys.argv[1:]):
    sys.exit(0)

from typing import Annotated

import typer
from pixfind.api import commands as api_commands
from pixfind.indexer import commands as indexer_commands
from pixfind.search import dupcommand, modelcommand
from pixfind.search.cli_common import (
    AfterOpt,
    BeforeOpt,
    DeviceOpt,
    FolderOpt,
    MinHeightOpt,
    MinWidthOpt,
    ModelOpt,
    PretrainedOpt,
    Print0Opt,
    RuntimeOpt,
    TypeOpt,
    choose_index,
    err,
    index_home,
    out,
    write_paths,
)
from pixfind.search.errors import PixfindError
from pixfind.search.models import requested_spec
from pixfind.search.types import printable_path
from pixfind.train import commands as train_commands
from rich.markup import escape
from typer.core import TyperGroup

PREVIEW_CHOICES = ("auto", "kitty", "iterm", "sixel", "none")


def optional_value(args: list[str], option: str, choices, implied: str) -> list[str]:
    """``--preview`` with no value (Typer has no optional-value options): a bare ``option``
    not followed by one of ``choices`` becomes ``option=implied``; nothing after ``--``."""
    args = list(args)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == option and (i + 1 == len(args) or args[i + 1] not in choices):
            args[i] = f"{option}={implied}"
    return args


class App(TyperGroup):
    """Every command: a library error becomes one clear line and exit code 1; Ctrl-C 130."""

    ORDER = (
        "index", "watch", "search", "duplicates", "status", "doctor", "models", "serve",
        "demo", "demo-data",
    )  # fmt: skip

    def list_commands(self, ctx):  # the everyday commands first, in the order people use them
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, optional_value(args, "--preview", PREVIEW_CHOICES, "auto"))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PixfindError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except ImportError as exc:  # the light install: torch and open_clip are an extra
            if (exc.name or "").split(".")[0] not in TORCH_PACKAGES:
                raise
            err.print(
                f"[bold red]error:[/] this needs {exc.name}, which this install lacks: "
                "pip install 'pixfind\\[torch]' (README 'Install variants')"
            )
            raise typer.Exit(1) from None


TORCH_PACKAGES = ("torch", "torchvision", "open_clip")

app = typer.Typer(
    name="pixfind",
    cls=App,
    help="Search your photos by text or by image, offline (open_clip + LanceDB + FAISS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(indexer_commands.app)  # index (indexer/commands.py)
app.add_typer(train_commands.app)  # demo-data, train, eval, demo (train/commands.py)
app.add_typer(api_commands.app)  # serve (api/commands.py)
app.add_typer(dupcommand.app)  # duplicates (search/dupcommand.py)
app.add_typer(modelcommand.app)  # models, models export (search/modelcommand.py)
api_commands.plug_watcher(indexer_commands.watch_beside_server)  # serve --watch


@app.callback()
def main_options(
    index: Annotated[
        str | None,
        typer.Option(
            "--index",
            help="Index directory, or s3://, gs://, az://BUCKET/PREFIX. Default: "
            "$PIXFIND_INDEX, else $PIXFIND_HOME, else ~/.local/share/pixfind.",
            metavar="DIR|URI",
        ),
    ] = None,
    storage_option: Annotated[
        list[str] | None,
        typer.Option(
            "--storage-option",
            help="KEY=VALUE for an index or photos on object storage (repeatable; e.g. "
            "region=eu-west-1, endpoint=http://..., allow_http=true). Also "
            "$PIXFIND_STORAGE_OPTIONS.",
            metavar="KEY=VALUE",
        ),
    ] = None,
) -> None:
    try:
        choose_index(index, storage_option)
    except PixfindError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None


def home() -> Path:
    return index_home()


# ---------------------------------------------------------------------------------------------
@app.command("search")
def search_cmd(
    query: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image", "-i", help="Find photos like this image (a file or an http(s) URL)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    paths_only: Annotated[
        bool, typer.Option("--paths", help="One path per line, for piping.")
    ] = False,
    print0: Print0Opt = False,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = "auto",
    runtime: RuntimeOpt = None,
    add: Annotated[
        list[str] | None,
        typer.Option("--add", "-a", help="Also look for this (repeatable; weight: '2:beach')."),
    ] = None,
    subtract: Annotated[
        list[str] | None,
        typer.Option("--subtract", "-s", help="Steer away from this (repeatable; '0.5:people')."),
    ] = None,
    add_image: Annotated[
        list[str] | None,
        typer.Option(
            "--add-image", help="Also look like this image, file or URL (repeatable; '2:./x.jpg')."
        ),
    ] = None,
    subtract_image: Annotated[
        list[str] | None,
        typer.Option("--subtract-image", help="Steer away from this image (repeatable)."),
    ] = None,
    folder: FolderOpt = None,
    after: AfterOpt = None,
    before: BeforeOpt = None,
    min_width: MinWidthOpt = 0,
    min_height: MinHeightOpt = 0,
    file_type: TypeOpt = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop results scoring below this.")
    ] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="Order of the top-k: score (default) or date (newest).")
    ] = "score",
    caption_weight: Annotated[
        float | None,
        typer.Option(
            "--caption-weight",
            help="Weight of caption similarity for captioned photos, 0..1 (default 0.7).",
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show the parts of each score and what matched.")
    ] = False,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="hybrid (default with a keyword index), vector, keyword."),
    ] = None,
    preview: Annotated[
        str,
        typer.Option(
            "--preview",
            metavar="[auto|kitty|iterm|sixel|none]",
            help="Show the results as pictures in the terminal; plain --preview detects the "
            "terminal's kind.",
        ),
    ] = "none",
) -> None:
    """Search the index by text, or by image with --image.

    Examples: pixfind search "a dog on the beach" -k 5;
    pixfind search --image ./pool.jpg --paths | xargs open
    """
    from pixfind.search.engine import Searcher
    from pixfind.search.errors import BadQuery
    from pixfind.search.query import Query, make_terms, parse_filters
    from pixfind.search.raw import raw_siblings

    if (query is None) == (image is None):
        raise BadQuery("give either a text query or --image PATH|URL (not both)")
    if preview not in PREVIEW_CHOICES:
        raise BadQuery(f"--preview must be one of {', '.join(PREVIEW_CHOICES)}, not {preview!r}")
    terms = make_terms(
        query,
        image,
        add or (),
        subtract or (),
        add_image or (),
        subtract_image or (),
    )
    request = Query(
        terms=tuple(terms),
        filters=parse_filters(folder, after, before, min_width, min_height, file_type) or None,
        k=top_k,
        min_score=min_score,
        sort=sort,
        caption_weight=caption_weight,
        mode=mode,
    )
    searcher = Searcher(home(), requested_spec(model, pretrained), device, runtime=runtime)
    hits = searcher.run(request).hits
    raws = {} if paths_only or print0 else raw_siblings([h.path for h in hits])
    if as_json:
        results = [h.to_dict() | ({"raw": raws[h.path]} if h.path in raws else {}) for h in hits]
        payload = {"query": query or str(image), "results": results}
        if len(terms) > 1:
            payload["terms"] = [
                {"kind": t.kind, "value": t.value, "weight": t.weight} for t in terms
            ]
        write_json(payload)
    elif paths_only or print0:
        write_paths([h.path for h in hits], print0)
    elif not hits:
        sys.stdout.write("no matches\n")
    elif not _preview(hits, preview, raws):
        _print_hits(hits, explain, raws)


def _preview(hits, wanted: str, raws: dict[str, str]) -> bool:
    """Draw the hits as pictures; False (with a line on stderr) where they can't be shown."""
    from pixfind.search.preview import Shown, choose, render

    protocol, why = choose(wanted, os.environ, sys.stdout.isatty())
    if protocol is None:
        if why:
            err.print(f"[yellow]--preview:[/] {escape(why)}; showing the list instead")
        return False
    shown = [Shown(h.rank, h.score, h.path, raw_note(h.path, raws).strip()) for h in hits]
    for chunk in render(shown, protocol):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return True


def _print_hits(hits, explain: bool, raws: dict[str, str]) -> None:
    """Plain columns rather than a rich table: long paths must never be cut or folded."""
    if not explain:
        print_table(hits, raws)
        return
    sys.stdout.write(f"{'rank':>4}  {'score':>6}  {'image':>6}  {'caption':>7}  path\n")
    for h in hits:
        cap = h.caption
        cap_text = f"{cap.cosine:>7.3f}" if cap else f"{'-':>7}"
        sys.stdout.write(
            f"{h.rank:>4}  {h.score:>6.3f}  {h.image_score:>6.3f}  {cap_text}  "
            f"{printable_path(h.path)}{raw_note(h.path, raws)}\n"
        )
        if cap:
            sys.stdout.write(
                f"      = {1 - cap.weight:.2f} x image {h.image_score:.3f} + {cap.weight:.2f} x "
                f"caption {cap.scaled:.3f} (cosine {cap.cosine:.3f}) for {cap.text!r}\n"
            )
        if h.keyword:
            from pixfind.search.hybrid import explain_keyword

            sys.stdout.write(f"      {explain_keyword(h)}\n")


# ---------------------------------------------------------------------------------------------
@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Where the index is, which model filled it, how many images, size and last update."""
    from pixfind.search.status import index_status
    from pixfind.search.store import Store

    status = index_status(Store.open(home()))
    if as_json:
        data = status.to_dict()
        del data["version"]
        out.print_json(data=data)
        return
    out.print(f"index        {status.index}")
    out.print(f"model        {status.model} ({status.dim}-d)")
    out.print(f"images       {status.images}")
    out.print(f"size on disk {status.disk_bytes / 1e6:.1f} MB")
    out.print(f"last update  {status.last_update_iso or 'never'}")
    if faiss := status.faiss:
        fresh = "up to date" if faiss.up_to_date else "stale, rebuilt on next search"
        out.print(
            f"faiss        {faiss.type}, {faiss.rows} vectors, "
            f"recall@10 {faiss.recall_at_10:.3f}, {fresh}"
        )


@app.command("doctor")
def doctor_cmd(
    repair: Annotated[
        bool, typer.Option("--repair", help="Make the newest intact table version current.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Check the index folder: every table version newest first, the FAISS files' checksums."""
    from pixfind.indexer.doctor import check
    from pixfind.indexer.doctor import repair as fix

    up = (fix if repair else check)(home())
    if as_json:
        out.print_json(data=up.to_dict())
    for kind, lines in (("repaired", up.repaired), ("problem", up.problems), ("note", up.notes)):
        for line in [] if as_json else lines:
            out.print(f"[bold]{kind}:[/] {escape(line)}")
    if not (as_json or up.problems or up.notes):
        out.print(f"{home()}: ok (table version {up.latest})")
    if up.problems:
        raise typer.Exit(1)


def main() -> None:
    from pixfind.search.settings import quiet_libraries

    quiet_libraries()
    app()


if __name__ == "__main__":
    main()
