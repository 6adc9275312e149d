"""Progress bars of training (used by `pixfind train` and the demo)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def train_progress(disable: bool = False, console: Console | None = None) -> Progress:
    """A bar per task showing loss, images/s and validation R@5 (hidden with ``disable``);
    tasks are added with fields loss, rate and val."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} img/s"),
        TextColumn("{task.fields[val]}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=disable,
    )


def step_updater(bar: Progress, task, epochs: int | str) -> Callable:
    """A train() on_step callback that shows epoch, step, loss and rate on a rich task."""

    def on_step(epoch: int, step: int, steps: int, loss: float, rate: float) -> None:
        bar.update(
            task,
            description=f"epoch {epoch}/{epochs}",
            completed=step,
            total=steps,
            loss=f"{loss:.3f}",
            rate=f"{rate:.0f}",
            visible=True,
        )

    return on_step


def val_text(stats, best) -> str:
    """'val R@5 0.412 (best 0.430 @7)' for an epoch's stats and the best epoch's so far."""
    if not stats.val:
        return ""
    if best is None or not best.val:
        return f"val R@5 {stats.val['R@5']:.3f}"
    return f"val R@5 {stats.val['R@5']:.3f} (best {best.val['R@5']:.3f} @{best.epoch})"
