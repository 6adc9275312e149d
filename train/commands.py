"""The training commands, mounted on the `pixfind` app by cli.py: demo-data, train, eval, demo.

Thin Typer commands over train/; library errors become one clear line in cli.py's app group.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from pixfind.search.cli_common import DeviceOpt, err, out
from rich.markup import escape

from .demo import DEMO_EPOCHS, DEMO_N, DEMO_TEST, run_demo

app = typer.Typer()
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="open_clip model name or a model directory."),
]
PretrainedOpt = Annotated[
    str | None,
    typer.Option("--pretrained", "-p", help="Pretrained tag or a local checkpoint file."),
]


@app.command("demo-data")
def demo_data_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write train/ and test/ into.")],
    n: Annotated[int, typer.Option("--n", help="How many photos in all.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same photos.")] = 0,
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Share of the photos held out in test/.")
    ] = 0.2,
    n_test: Annotated[
        int | None,
        typer.Option(
            "--n-test", help="How many photos to hold out in test/ (overrides --test-fraction)."
        ),
    ] = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="demo: 7 shapes x 8 colours; shifted: other shapes and colour words "
            "(a new domain for fine-tuning).",
        ),
    ] = "demo",
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="scenes: one to three objects, varied captions; objects: one object per "
            "photo with short captions ('a star', 'a large red star'), trained on with the "
            "scenes to teach shapes.",
        ),
    ] = "scenes",
) -> None:
    """Write a synthetic captioned photo collection (coloured shapes, captions from the scene).

    Example: pixfind demo-data ./shapes --n 5000 --seed 0
    """
    from pixfind.train.demodata import generate

    data = generate(
        out_dir,
        n=n,
        seed=seed,
        test_fraction=test_fraction,
        variant=variant,
        kind=kind,
        n_test=n_test,
    )
    out.print(
        f"wrote {data.n_train} photos to {data.train} and {data.n_test} to {data.test} "
        "(captions.jsonl, labels.jsonl, scenes.jsonl in each)"
    )


@app.command("train")
def train_cmd(
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Captioned folder(s) (captions.jsonl or sidecars); several are trained on as one."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="open_clip architecture name or a JSON model config file."
        ),
    ] = "pixfind-demo",
    init: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Fine-tune: a model directory, a checkpoint file, or a pretrained tag of --model.",
        ),
    ] = None,
    epochs: Annotated[
        str,
        typer.Option(
            "--epochs",
            "-e",
            help="auto: until validation R@5 stops improving (--patience), at most about "
            "5,000 steps (10 to 60 epochs); N: exactly N epochs.",
        ),
    ] = "auto",
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="Share of the photos held out to validate on after every epoch (at most 1,000"
            " photos; none under 20); 0: no validation, the last epoch is kept.",
        ),
    ] = 0.1,
    val: Annotated[
        Path | None,
        typer.Option("--val", help="A separate captioned folder to validate on instead."),
    ] = None,
    patience: Annotated[
        int,
        typer.Option(
            "--patience", help="With --epochs auto: stop after N epochs without a better val R@5."
        ),
    ] = 6,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write the learning curves as a PNG (needs matplotlib)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b")] = 32,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Peak learning rate. Default: 2e-3 from scratch, 2e-4 with --from."
        ),
    ] = None,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.1,
    warmup: Annotated[
        float, typer.Option("--warmup", help="Share of steps spent warming up.")
    ] = 0.1,
    freeze: Annotated[
        str | None, typer.Option("--freeze", help="Keep one tower fixed: image or text.")
    ] = None,
    unlocked_layers: Annotated[
        int | None,
        typer.Option("--unlocked-layers", help="Train only the last N blocks of each tower."),
    ] = None,
    hard_batches: Annotated[
        float,
        typer.Option(
            "--hard-batches",
            help="Share of batches formed from photos whose captions share a word (harder "
            "negatives; hurts short, repetitive captions).",
        ),
    ] = 0.0,
    simple_first: Annotated[
        float,
        typer.Option(
            "--simple-first",
            help="Share of the epochs trained first on the collection's simple part alone "
            "(photos whose shortest caption has at most half the median's words), where it "
            "has one; 0: off.",
        ),
    ] = 0.3,
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="Train without augmentation.")
    ] = False,
    max_images: Annotated[
        int | None, typer.Option("--max-images", help="Use only the first N captioned images.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train (or fine-tune with --from) a dual encoder on captioned photos; resumable.

    Examples: pixfind train ./shapes/train --out ./my-model;
    pixfind train ./shapes/train ./objects/train --out ./my-model (two folders as one);
    pixfind train ./mine --from ./my-model --out ./my-model-ft --unlocked-layers 1
    """
    from pixfind.search.encoder import pick_device
    from pixfind.train.fit import TrainOptions, train
    from pixfind.train.progress import step_updater, val_text

    options = TrainOptions(
        model=model,
        init=init,
        epochs=_epochs(epochs),
        val_fraction=val_fraction,
        val=str(val.expanduser().resolve()) if val else None,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        warmup=warmup,
        seed=seed,
        freeze=freeze,
        unlocked_layers=unlocked_layers,
        augment=not no_augment,
        hard_batches=hard_batches,
        simple_first=simple_first,
        device=pick_device(device),
        max_images=max_images,
    )
    from .progress import train_progress

    progress = train_progress(disable=as_json, console=err)
    prep = progress.add_task("decoding", total=None, loss="-", rate="-", val="")
    task = progress.add_task("epoch", total=None, loss="-", rate="-", val="", visible=False)
    best: list = [None]

    def on_prepare(done: int, total: int) -> None:
        progress.update(prep, completed=done, total=total)

    def on_epoch(stats) -> None:
        if stats.best:
            best[0] = stats
        shown = val_text(stats, best[0])
        progress.update(task, val=shown)
        if not as_json:
            err.print(
                f"epoch {stats.epoch}: loss {stats.loss:.3f}, {stats.seconds:.1f}s, "
                f"temperature {stats.temperature:.4f}" + (f", {shown}" if shown else "")
            )

    with progress:
        on_step = step_updater(progress, task, "auto" if epochs == "auto" else epochs)
        result = train(data, out_dir, options, on_step, on_epoch, on_prepare)
    curves = None
    if plot:
        from pixfind.train.validate import plot_curves

        history = [asdict(h) for h in result.history]
        curves = plot_curves(
            history, plot, f"pixfind train {', '.join(f'{d.parent.name}/{d.name}' for d in data)}"
        )
    if as_json:
        out.print_json(data={**result.to_dict(), "plot": str(curves) if curves else None})
        return
    for problem in result.problems[:10]:
        out.print(f"  [yellow]skipped[/] {escape(problem)}")
    if result.seconds == 0 and result.epochs_done == result.resumed_from:
        out.print(f"{result.out} is already trained for {result.epochs_done} epochs: nothing to do")
    else:
        why = " (validation R@5 stopped improving)" if result.stopped_early else ""
        out.print(
            f"trained {result.epochs_done} epochs{why} on {result.images} images / "
            f"{result.captions} captions in {result.seconds:.1f}s "
            f"({result.params / 1e6:.1f}M parameters)"
        )
    best_stats = result.best
    if best_stats and best_stats.val:
        v = best_stats.val
        out.print(
            f"best epoch {best_stats.epoch}: validation text->image R@1 {v['R@1']:.3f} "
            f"R@5 {v['R@5']:.3f} R@10 {v['R@10']:.3f} on {result.val_images} photos "
            "(the model directory holds its weights)"
        )
    elif result.val_images == 0:
        out.print("no validation photos (fewer than 20 to hold out): kept the last epoch")
    if curves:
        out.print(f"learning curves: {curves}")
    out.print(f"model directory: {result.out}  (use it with --model {result.out})")


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Argument(help="Captioned folder, and/or one with labels.jsonl.")],
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", help="Evaluate a random subset of N images.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --limit subset.")] = 0,
    task_name: Annotated[
        str, typer.Option("--task", help="retrieval, zeroshot, or all (what the folder has).")
    ] = "all",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also write a bar chart PNG (needs matplotlib).")
    ] = None,
    device: DeviceOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Recall@1/5/10 text->image and image->text, and zero-shot accuracy over labels.jsonl.

    Example: pixfind eval ./shapes/test --model ./my-model --plot scores.png
    """
    from pixfind.search.captions import CAPTIONS_FILE, LABELS_FILE
    from pixfind.search.encoder import load_encoder
    from pixfind.search.errors import PixfindError as Failed
    from pixfind.search.models import DEFAULT_SPEC, requested_spec
    from pixfind.train.evaluate import plot as plot_scores
    from pixfind.train.evaluate import retrieval, zero_shot

    if task_name not in ("all", "retrieval", "zeroshot"):
        raise Failed("--task must be retrieval, zeroshot or all")
    encoder = load_encoder(requested_spec(model, pretrained) or DEFAULT_SPEC, device)
    scores: dict = {"data": str(data.resolve()), "model": encoder.info.label}
    has_labels = (data / LABELS_FILE).is_file()
    if task_name in ("all", "retrieval") and (
        task_name == "retrieval" or (data / CAPTIONS_FILE).is_file() or not has_labels
    ):
        scores["retrieval"] = retrieval(encoder, data, limit=limit, seed=seed).to_dict()
    if task_name == "zeroshot" or (task_name == "all" and has_labels):
        scores["zero_shot"] = zero_shot(encoder, data, limit=limit, seed=seed).to_dict()
    if plot:
        scores["plot"] = str(plot_scores(scores, plot, f"{scores['model']} on {data.name}"))
    if as_json:
        out.print_json(data=scores)
        return
    out.print(f"model {scores['model']}")
    ret = scores.get("retrieval")
    if ret:
        out.print(
            f"retrieval over {ret['images']} images, {ret['captions']} captions"
            + (f" ({ret['skipped']} problems skipped)" if ret["skipped"] else "")
        )
        out.print(f"  {'':14}{'R@1':>7}{'R@5':>7}{'R@10':>7}")
        for name, key in (("text->image", "text_to_image"), ("image->text", "image_to_text")):
            r = ret[key]
            out.print(f"  {name:14}{r['R@1']:>7.3f}{r['R@5']:>7.3f}{r['R@10']:>7.3f}")
        cap = ret.get("text_to_image_ceiling") or {}
        if cap and min(cap.values()) < 1:
            out.print(
                f"  {'(ceiling)':14}{cap['R@1']:>7.3f}{cap['R@5']:>7.3f}{cap['R@10']:>7.3f}"
                "  text->image with repeated captions (photos sharing a caption are ties)"
            )
    zs = scores.get("zero_shot")
    if zs:
        top5 = f", top-5 {zs['top5']:.3f}" if zs["top5"] is not None else ""
        out.print(
            f"zero-shot over {zs['images']} images, {zs['classes']} classes: "
            f"top-1 {zs['top1']:.3f}{top5}"
        )
    if plot:
        out.print(f"plot: {scores['plot']}")


@app.command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Where results and sheets go.")] = Path(
        "demo-out"
    ),
    cache: Annotated[
        Path, typer.Option("--cache", help="Demo data and trained model cache.")
    ] = Path(".cache"),
    n: Annotated[int, typer.Option("--n", help="Demo photos in all.")] = DEMO_N,
    n_test: Annotated[
        int, typer.Option("--n-test", help="How many of them to hold out, index and search.")
    ] = DEMO_TEST,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    epochs: Annotated[
        str,
        typer.Option(
            "--epochs",
            help="Epochs of pixfind train on the scenes and one-object photos (the best one, "
            "by validation recall, is kept); auto: until validation recall stops improving.",
        ),
    ] = str(DEMO_EPOCHS or "auto"),
) -> None:
    """Run pixfind end to end offline: demo data, train a small model, index, search.

    The trained model is cached under --cache, so a second run skips training.
    """
    run_demo(
        out_dir,
        cache,
        n=n,
        seed=seed,
        n_test=n_test,
        epochs=_epochs(epochs),
        console=out,
        progress=lambda disable: _progress(disable),
    )


def _epochs(epochs: str) -> int | None:
    """--epochs: None for auto, else a whole number >= 1."""
    from pixfind.train.data import TrainError

    if epochs != "auto" and not (epochs.isdigit() and int(epochs) >= 1):
        raise TrainError(f"--epochs must be auto or a whole number >= 1, not {epochs!r}")
    return None if epochs == "auto" else int(epochs)


def _progress(disable: bool):
    from .progress import train_progress

    return train_progress(disable, err)
