"""`pixfind models` (list open_clip's models) and `pixfind models export` (an ONNX model
folder, search/modelexport.py): thin Typer commands, mounted by cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_common import err, out

app = typer.Typer(
    name="models",
    help="List open_clip models and their pretrained tags; export one to an ONNX model folder.",
    invoke_without_command=True,
)


@app.callback()
def models_cmd(
    ctx: typer.Context,
    all_models: Annotated[
        bool, typer.Option("--all", help="Also list architectures without pretrained tags.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List open_clip models and their pretrained tags (any of them works with --model)."""
    if ctx.invoked_subcommand is not None:
        return
    from .models import DEFAULT_SPEC, list_models

    rows = [(n, tags) for n, tags in list_models() if tags or all_models]
    if as_json:
        out.print_json(data={name: tags for name, tags in rows})
        return
    out.print(f"default: --model {DEFAULT_SPEC.model} --pretrained {DEFAULT_SPEC.pretrained}")
    out.print(
        "also: --model DIR (a directory written by `pixfind train` or `pixfind models "
        "export`), --pretrained FILE"
    )
    for name, tags in rows:
        out.print(f"[bold]{name}[/]  {', '.join(tags) if tags else '[dim](no tags)[/]'}")


@app.command("export")
def export_cmd(
    model: Annotated[
        str, typer.Argument(help="open_clip model name, or a directory `pixfind train` wrote.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="The model folder to write (absent or empty).")
    ],
    pretrained: Annotated[
        str | None,
        typer.Option(
            "--pretrained",
            "-p",
            help="Pretrained tag, or 'none' for seeded random weights (tests). Default: the "
            "model's first tag.",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A local checkpoint file with the model's weights."),
    ] = None,
    photos: Annotated[
        list[Path] | None,
        typer.Option(
            "--photos",
            help="Photos (files or folders) to check the export on; default: generated "
            "pictures. Repeatable.",
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="auto: add the int8 image tower where it passes its check; int8: even "
            "where not; fp32: none.",
        ),
    ] = "auto",
) -> None:
    """Write MODEL's ONNX towers, tokenizer and preprocessing into a folder that `pixfind
    index/search --model DIR` runs without torch (exporting needs torch: pixfind[torch])."""
    from .errors import PixfindError
    from .modelexport import export_model_folder
    from .models import requested_spec

    if checkpoint is not None and pretrained is not None:
        raise PixfindError("give --pretrained TAG or --checkpoint PATH, not both")
    spec = requested_spec(model, str(checkpoint) if checkpoint else pretrained)
    err.print(f"exporting {spec.label} (checked against torch) ...")
    done = export_model_folder(spec, out_dir, photos or (), precision)
    checks = ", ".join(f"{k} {v:.6f}" for k, v in done.parity.items())
    int8 = f"int8 image tower (least cosine {done.int8:.4f})" if done.int8 else "no int8 tower"
    out.print(
        f"wrote {done.path}: {done.label}, {done.dim}-d, {done.bytes / 1e6:.1f} MB; parity "
        f"cosine {checks}; {int8}. Use it with: pixfind index PHOTOS --model {done.path}"
    )
