"""What every pixfind command shares: the consoles, the model/device options and the index
folder chosen by the global --index option.

Commands live beside the code they drive (indexer/commands.py, api/commands.py,
train/commands.py) and are mounted on one app by cli.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .location import parse_options
from .photobucket import use_options
from .settings import get_settings, resolve_home

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class ChosenIndex:
    index: str | None = None  # the global --index (None: the default)
    storage_options: tuple[tuple[str, str], ...] = ()  # the global --storage-option


_chosen = [ChosenIndex()]


def choose_index(index: str | None, storage_options: list[str] | None = None) -> None:
    """Called by the app's callback with the global --index and --storage-option."""
    _chosen[0] = ChosenIndex(index, parse_options(storage_options or ()))
    use_options(_chosen[0].storage_options)  # photos on s3:// are read with them too


def index_home(index: str | None = None) -> Path:
    """The index folder: ``index`` (a command's own --index), else the global --index, else
    $PIXFIND_INDEX / $PIXFIND_HOME / default (for an index on object storage, its local
    cache folder: search/location.py)."""
    chosen = _chosen[0]
    return resolve_home(index or chosen.index or get_settings().index, chosen.storage_options)


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="open_clip model name (see `pixfind models`) or a model directory. "
        "Default: the index's own model, or ViT-B-32 for a new index.",
    ),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        "-p",
        help="Pretrained tag (e.g. laion2b_s34b_b79k), a local checkpoint file, or a model "
        "directory. Default: laion2b_s34b_b79k with ViT-B-32.",
    ),
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps.")
]

# the filters every command that picks photos takes (search, duplicates)
FolderOpt = Annotated[
    str | None,
    typer.Option("--folder", help="Only photos under this folder, or matching a path glob."),
]
AfterOpt = Annotated[
    str | None, typer.Option("--after", help="Taken on/after this date (YYYY-MM-DD).")
]
BeforeOpt = Annotated[
    str | None, typer.Option("--before", help="Taken on/before this date (YYYY-MM-DD).")
]
MinWidthOpt = Annotated[int, typer.Option("--min-width", help="Minimum width (pixels).")]
MinHeightOpt = Annotated[int, typer.Option("--min-height", help="Minimum height (pixels).")]
TypeOpt = Annotated[
    list[str] | None,
    typer.Option("--type", help="File type(s): jpeg, png, webp, gif... (repeatable)."),
]
Print0Opt = Annotated[
    bool, typer.Option("--print0", help="Paths ended by NUL, for `xargs -0` (any name).")
]


def write_paths(paths, print0: bool) -> None:
    """One path per line (or NUL-ended with ``print0``), as bytes: any file name survives."""
    import sys

    end = b"\0" if print0 else b"\n"
    for path in paths:
        sys.stdout.buffer.write(path.encode("utf-8", "surrogateescape") + end)
    sys.stdout.flush()
    if not print0 and any("\n" in p for p in paths):
        err.print("[yellow]warning:[/] a path holds a newline; pipe --print0 to `xargs -0`")


RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="auto (ONNX Runtime on the CPU once its export passed, torch on GPUs), torch, "
        "onnx. Default: $PIXFIND_RUNTIME or auto.",
    ),
]
