"""`pixfind index`: a thin Typer command over indexer.run_index, mounted by cli.py."""

from __future__ import annotations

import contextlib
import enum
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pixfind.search.cli_common import (
    DeviceOpt,
    ModelOpt,
    PretrainedOpt,
    RuntimeOpt,
    err,
    index_home,
    out,
)
from pixfind.search.errors import PixfindError
from pixfind.search.location import is_uri, shown
from pixfind.search.models import requested_spec
from pixfind.search.photobucket import normalise
from pixfind.search.settings import passive_omp_threads
from pixfind.search.types import printable_path
from rich.markup import escape

app = typer.Typer()

# what `index` and `watch` share
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude", "-x", help="Glob of names or paths to skip (repeatable)."),
]
HiddenOpt = Annotated[bool, typer.Option("--hidden", help="Also index hidden folders.")]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", help="Images per batch (0: 32 on CPU, 128 on CUDA).")
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", help="Decoding processes (-1: automatic, 0: none).")
]
MaxMegapixelsOpt = Annotated[
    float,
    typer.Option(
        "--max-megapixels", help="Skip images larger than this (decompression-bomb guard)."
    ),
]
CaptionsOpt = Annotated[
    bool,
    typer.Option(
        "--captions/--no-captions",
        help="Read captions from sidecars, captions.jsonl and image metadata.",
    ),
]
OcrOpt = Annotated[
    bool,
    typer.Option(
        "--ocr/--no-ocr",
        help="Read text inside photos (signs, receipts, screenshots) with Tesseract, for "
        "keyword search; also in photos indexed before without it.",
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="The image tower's numbers with ONNX Runtime: auto (int8 where its check against "
        "float32 passes, else fp32), fp32, int8. Default: $PIXFIND_PRECISION or auto.",
    ),
]
OcrLangOpt = Annotated[
    str, typer.Option("--ocr-lang", help="Tesseract languages for --ocr, e.g. eng or eng+deu.")
]


class Engine(str, enum.Enum):
    local = "local"
    ray = "ray"


def parse_actors(text: str) -> tuple[int, int]:
    """``N`` or ``MIN:MAX`` -> (min, max) actors."""
    low, colon, high = text.partition(":")
    try:
        sizes = (int(low), int(high if colon else low))
    except ValueError:
        sizes = (0, 0)
    if not 1 <= sizes[0] <= sizes[1]:
        hint = f"{text!r}: give N or MIN:MAX, 1 <= MIN <= MAX"
        raise typer.BadParameter(hint, param_hint="--actors")
    return sizes


@app.command("index")
def index_cmd(
    # str, not Path: Path("s3://b/x") would become "s3:/b/x" before it could be recognised
    paths: Annotated[
        list[str], typer.Argument(help="Folders (or files) to index, or s3://BUCKET/PREFIX.")
    ],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = "auto",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
    exclude: ExcludeOpt = None,
    hidden: HiddenOpt = False,
    batch_size: BatchSizeOpt = 0,
    workers: WorkersOpt = -1,
    max_megapixels: MaxMegapixelsOpt = 150.0,
    captions: CaptionsOpt = True,
    ocr: OcrOpt = False,
    ocr_lang: OcrLangOpt = "eng",
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Drop the index's vectors and re-embed everything."),
    ] = False,
    prune_missing: Annotated[
        bool,
        typer.Option(
            "--prune-missing",
            help="Also remove photos under folders that can't be read or roots that are missing.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    engine: Annotated[
        Engine,
        typer.Option("--engine", help="local: this process; ray: a Ray cluster (the ray extra)."),
    ] = Engine.local,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Ray cluster to use (default: start one here)."),
    ] = None,
    actors: Annotated[
        str, typer.Option("--actors", help="Ray actors, one model each: N or MIN:MAX.")
    ] = "1",
    gpus_per_actor: Annotated[
        float, typer.Option("--gpus-per-actor", help="GPUs per Ray actor (0.5: two per GPU).")
    ] = 0.0,
    commit_every: Annotated[
        int,
        typer.Option("--commit-every", help="Rows per commit with Ray (what a crash can lose)."),
    ] = 2048,
) -> None:
    """Index photo folders (incremental: unchanged files are not decoded again).

    Example: pixfind index ~/Pictures ~/Phone --exclude '*/thumbnails/*'
    """
    from rich import progress as bar

    passive_omp_threads()  # before torch loads
    from pixfind.indexer import ClusterOptions, IndexOptions, run_index
    from pixfind.search.quantize import choose_precision

    choose_precision(precision, "onnx")  # an unknown value: one line, before any work

    paths = [normalise(p) if is_uri(p) else p for p in paths]  # gs://, az://: one line
    cluster = ClusterOptions(ray_address, parse_actors(actors), gpus_per_actor, commit_every)
    options = IndexOptions(
        roots=list(paths),
        exclude=exclude or [],
        include_hidden=hidden,
        batch_size=batch_size,
        workers=workers,
        max_megapixels=max_megapixels,
        rebuild=rebuild,
        captions=captions,
        prune_missing=prune_missing,
        ocr=ocr,
        ocr_lang=ocr_lang,
        precision=precision,
    )
    if engine is Engine.ray:
        from pixfind.indexer.ray_engine import check_ray_options

        check_ray_options(options)  # before any model loads: one line (how to install it)
    progress = bar.Progress(
        bar.TextColumn("[bold]embedding"), bar.BarColumn(), bar.MofNCompleteColumn(),
        bar.TaskProgressColumn(), bar.TextColumn("{task.fields[rate]} img/s"),
        bar.TimeElapsedColumn(), bar.TextColumn("ETA"), bar.TimeRemainingColumn(),
        console=err, transient=False, disable=as_json,
    )  # fmt: skip
    task = progress.add_task("embed", total=None, rate="-", visible=False)
    started = [0.0]

    def on_plan(plan) -> None:
        started[0] = time.perf_counter()
        progress.update(task, total=len(plan.todo), visible=bool(plan.todo))
        if not as_json:
            err.print(
                f"{len(plan.new)} new, {len(plan.changed)} changed, {plan.unchanged} unchanged, "
                f"{len(plan.removed)} gone"
            )

    def on_progress(done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - started[0], 1e-9)
        progress.update(task, completed=done, rate=f"{done / elapsed:.1f}")

    if not as_json:
        err.print(f"index: {shown(index_home())}")
    with progress:
        report = run_index(
            index_home(),
            options,
            spec=requested_spec(model, pretrained),
            device=device,
            runtime=runtime,
            on_plan=on_plan,
            on_progress=on_progress,
            engine=engine.value,
            cluster=cluster,
        )
    if as_json:
        out.print_json(data=report.to_dict())
    else:
        _print_report(report)
    if report.interrupted:
        err.print(
            f"[yellow]interrupted[/]: {report.embedded} images committed and safe; run the "
            "same command again to resume where it stopped"
        )
        raise typer.Exit(130)


def _print_report(report, prefix: str = "") -> None:
    rate = report.embedded / report.seconds if report.seconds else 0
    ocr = f"{report.ocr_read} read by OCR ({report.ocr_found} with text), "
    out.print(
        f"{prefix}[bold]{report.added}[/] added, [bold]{report.updated}[/] updated, "
        f"[bold]{report.removed}[/] removed, {report.unchanged} unchanged, "
        f"{report.moved} moved and {report.reused} reused without re-embedding, "
        f"{report.captioned} captioned, {ocr if report.ocr_read else ''}"
        f"{len(report.skipped)} skipped; {report.total} images in the index "
        f"({report.seconds:.1f}s, {rate:.1f} img/s) [dim]model {report.model}"
        f"{f' ({report.precision} images)' if report.precision else ''}[/]"
    )
    out.print(f"[dim]stages: {report.stage_summary()}[/]")
    for line in report.warnings():
        out.print(f"[yellow]note:[/] {escape(line)}")
    if report.skipped:
        shown = report.skipped[:20]
        for path, reason in shown:
            out.print(f"  [yellow]skipped[/] {escape(printable_path(path))}: {escape(reason)}")
        if len(report.skipped) > len(shown):
            out.print(f"  ... and {len(report.skipped) - len(shown)} more (use --json for all)")


@app.command("watch")
def watch_cmd(
    # str, not Path: an s3:// URI is refused by name (Path would make it "s3:/...")
    paths: Annotated[list[str], typer.Argument(help="Folders to watch and keep indexed.")],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = "auto",
    exclude: ExcludeOpt = None,
    hidden: HiddenOpt = False,
    batch_size: BatchSizeOpt = 0,
    workers: WorkersOpt = -1,
    max_megapixels: MaxMegapixelsOpt = 150.0,
    captions: CaptionsOpt = True,
    ocr: OcrOpt = False,
    ocr_lang: OcrLangOpt = "eng",
    rescan_minutes: Annotated[
        float,
        typer.Option(
            "--rescan-minutes",
            min=0,
            help="Also rescan everything this often, for changes the watcher missed (0: only "
            "at start and after watcher errors).",
        ),
    ] = 60.0,
    poll: Annotated[
        bool,
        typer.Option("--poll", help="Poll for changes (network shares without file events)."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each run's report as one JSON line.")
    ] = False,
) -> None:
    """Keep the index current while photos are added, changed, moved or deleted (Ctrl-C stops).

    Rescans everything at start, then indexes what changes within seconds.
    Example: pixfind watch ~/Pictures ~/Phone --exclude '*/thumbnails/*'
    """
    passive_omp_threads()  # before torch loads
    from pixfind.indexer import IndexOptions
    from pixfind.indexer.watch import Watcher, WatchSettings, open_encoder

    if remote := [p for p in paths if is_uri(p)]:
        raise PixfindError(
            f"{remote[0]}: watch takes folders; photos on object storage are brought up to "
            "date by running `pixfind index` on their prefix again"
        )
    home = index_home()
    options = IndexOptions(
        roots=list(paths),
        exclude=exclude or [],
        include_hidden=hidden,
        batch_size=batch_size,
        workers=workers,
        max_megapixels=max_megapixels,
        captions=captions,
        ocr=ocr,
        ocr_lang=ocr_lang,
    )
    err.print(f"index: {shown(home)}; loading the model...")
    encoder = open_encoder(home, requested_spec(model, pretrained), device)

    def on_report(report, full: bool) -> None:
        if as_json:
            sys.stdout.write(json.dumps({"full_scan": full, **report.to_dict()}) + "\n")
            sys.stdout.flush()
        elif full or report.embedded or report.removed or report.skipped or report.ocr_read:
            _print_report(report, prefix=time.strftime("%H:%M:%S ") + ("rescan: " if full else ""))
        if full and watcher.runs == 1:
            err.print(f"watching {len(paths)} folder(s) for changes; Ctrl-C stops")

    watcher = Watcher(
        home,
        options,
        encoder,
        WatchSettings(rescan_minutes=rescan_minutes, force_polling=poll),
        on_report=on_report,
        on_note=lambda line: err.print(f"[yellow]note:[/] {escape(line)}"),
    )
    with contextlib.suppress(KeyboardInterrupt):
        watcher.run()
    err.print("stopped watching; everything indexed so far is committed")


def watch_beside_server(paths, home: Path, encoder, on_change, on_note):
    """`pixfind serve --watch`: a watcher thread sharing the server's loaded encoder (plugged
    into api/commands.py by cli.py: api/ does not import the indexer). Returns stop()."""
    import threading

    from pixfind.indexer import IndexOptions
    from pixfind.indexer.watch import Watcher, changed

    # decoding in the thread: no worker processes forked from the threaded server
    options = IndexOptions(roots=[str(p) for p in paths], workers=0)

    def on_report(report, full: bool) -> None:
        if changed(report):
            on_change()
        for line in report.warnings():
            on_note(line)

    watcher = Watcher(home, options, encoder, on_report=on_report, on_note=on_note)

    def run() -> None:
        try:
            watcher.run()
        except PixfindError as exc:
            on_note(f"stopped watching: {exc}")

    thread = threading.Thread(target=run, name="pixfind-watch", daemon=True)
    thread.start()

    def stop() -> None:
        watcher.stop()
        thread.join(timeout=60)

    return stop
