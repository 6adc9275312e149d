"""What every pixfind command shares: the consoles, the model/device options and the index
folder chosen by the global --index option.

Commands live beside the code they drive (indexer/commands.py, api/commands.py,
train/commands.py) and are mounted on one app by cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .settings import get_settings, resolve_home

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


_chosen: dict[str, str | None] = {"index": None}


def choose_index(index: str | None) -> None:
    """Called by the app's callback with the global --index (None: the default)."""
    _chosen["index"] = index


def index_home() -> Path:
    """The index folder: the global --index, else $PIXFIND_INDEX / $PIXFIND_HOME / default."""
    return resolve_home(_chosen["index"] or get_settings().index)


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
RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="auto (ONNX Runtime on the CPU once its export passed, torch on GPUs), torch, "
        "onnx. Default: $PIXFIND_RUNTIME or auto.",
    ),
]
