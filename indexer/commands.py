"""`pixfind index`: a thin Typer command over indexer.run_index, mounted by cli.py."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated

import typer
from pixfind.search.cli_common import DeviceOpt, ModelOpt, PretrainedOpt, err, index_home, out
from pixfind.search.models import requested_spec
from pixfind.search.settings import passive_omp_threads
from pixfind.search.types import printable_path
from rich.markup import escape

app = typer.Typer()


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
    paths: Annotated[list[Path], typer.Argument(help="Folders (or files) to index.")],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = "auto",
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="Glob of names or paths to skip (repeatable)."),
    ] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Also index hidden folders.")] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Images per batch (0: 32 on CPU, 128 on CUDA).")
    ] = 0,
    workers: Annotated[
        int, typer.Option("--workers", help="Decoding processes (-1: automatic, 0: none).")
    ] = -1,
    max_megapixels: Annotated[
        float,
        typer.Option(
            "--max-megapixels", help="Skip images larger than this (decompression-bomb guard)."
        ),
    ] = 150.0,
    captions: Annotated[
        bool,
        typer.Option(
            "--captions/--no-captions",
            help="Read captions from sidecars, captions.jsonl and image metadata.",
        ),
    ] = True,
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

    cluster = ClusterOptions(ray_address, parse_actors(actors), gpus_per_actor, commit_every)
    if engine is Engine.ray:
        from pixfind.indexer.ray_engine import require_ray

        require_ray()  # before any model loads: one line on how to install it

    options = IndexOptions(
        roots=[str(p) for p in paths],
        exclude=exclude or [],
        include_hidden=hidden,
        batch_size=batch_size,
        workers=workers,
        max_megapixels=max_megapixels,
        rebuild=rebuild,
        captions=captions,
        prune_missing=prune_missing,
    )
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
        err.print(f"index: {index_home()}")
    with progress:
        report = run_index(
            index_home(),
            options,
            spec=requested_spec(model, pretrained),
            device=device,
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


def _print_report(report) -> None:
    rate = report.embedded / report.seconds if report.seconds else 0
    out.print(
        f"[bold]{report.added}[/] added, [bold]{report.updated}[/] updated, "
        f"[bold]{report.removed}[/] removed, {report.unchanged} unchanged, "
        f"{report.moved} moved and {report.reused} reused without re-embedding, "
        f"{report.captioned} captioned, "
        f"{len(report.skipped)} skipped; {report.total} images in the index "
        f"({report.seconds:.1f}s, {rate:.1f} img/s) [dim]model {report.model}[/]"
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
