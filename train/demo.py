"""`make demo`: pixfind end to end, offline, on synthetic captioned photos.

generate demo data -> train the demo model (cached) -> index the held-out photos with the
real indexer -> run natural-language queries -> print results + write contact sheets ->
evaluate Recall@k on the held-out split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

DEMO_N = 3400  # photos in all
DEMO_TEST = 1000  # of them held out (test/): 2,400 to train on
# One-object photos with short captions ("a star", "a large star", "a large red star"), trained
# on together with the scenes. Among such captions only the shape (then the size) tells photos
# apart, so the model must learn to see shapes; trained on the scenes alone it tells photos
# apart by colour and barely learns shapes (5/24 attribute queries at P@5 >= 0.8; README "The
# demo"). They used to be a separate warm-up stage; now `pixfind train SCENES OBJECTS` finds
# them itself (their shortest captions are shorter than the scenes') and, by default
# (--simple-first 0.3), trains its first 30% of epochs on them alone (README "Training and
# fine-tuning").
OBJECTS_N = 1500
# None: `--epochs auto`, the default of `pixfind train` (at most about 5,000 steps: 50 epochs
# of these 3,240 photos; validation recall climbs until about epoch 45). It reaches held-out
# R@1/5/10 0.509 / 0.912 / 0.990 and 21 of 24 attribute queries (README "The demo model")
DEMO_EPOCHS: int | None = None


def demo_data(cache: Path, n: int, seed: int, console: Console, n_test: int | None = DEMO_TEST):
    """The demo scenes (train/ and test/), generated once into ``cache``; ``n_test`` held out
    (None: a fifth)."""
    from pixfind.train.demodata import held_out

    n_test = held_out(n, n_test)
    root = cache / f"demo-data-n{n}-t{n_test}-s{seed}"
    return _generated(root, n, seed, "scenes", console, n_test)


def objects_data(cache: Path, seed: int, console: Console):
    """One-object photos with short captions, trained on together with the scenes."""
    return _generated(
        cache / f"demo-objects-n{OBJECTS_N}-s{seed}", OBJECTS_N, seed, "objects", console
    )


def _generated(
    root: Path, n: int, seed: int, kind: str, console: Console, n_test: int | None = None
):
    from pixfind.train.demodata import DemoData, generate

    done = root / "done.json"
    if done.is_file():
        info = json.loads(done.read_text())
        return DemoData(root, root / "train", root / "test", info["train"], info["test"])
    if kind == "scenes":
        console.print(f"[bold]1/5[/] generating {n} demo photos ({n_test} held out) into {root}")
    else:
        console.print(f"    generating {n} one-object photos into {root}")
    data = generate(root, n=n, seed=seed, kind=kind, n_test=n_test)
    done.write_text(json.dumps({"train": data.n_train, "test": data.n_test}))
    return data


def demo_model(
    cache: Path, data, seed: int, epochs: int | None, console: Console, progress: Callable
) -> Path:
    """Train (or find cached) the demo model: `pixfind train SCENES OBJECTS --out M --epochs N`
    (the one-object photos alone first, a validation slice, the best epoch kept; None:
    `--epochs auto`)."""
    from pixfind.train.demodata import held_out
    from pixfind.train.fit import DEMO_MODEL, TrainOptions, read_state, train
    from pixfind.train.progress import step_updater, train_progress

    objects = objects_data(cache, seed, console)
    options = TrainOptions(seed=seed, epochs=epochs)
    length = f"{epochs} epochs" if epochs else "until validation recall stops improving"
    n_objects = OBJECTS_N - held_out(OBJECTS_N, None)
    console.print(
        f"[bold]2/5[/] training the demo model ({DEMO_MODEL}, `pixfind train` on {data.n_train}"
        f" scenes and {n_objects} one-object photos, the one-object ones alone first, 10% held"
        f" out to validate on, {length}; about 11 minutes on 2 CPU cores, cached afterwards)"
    )
    out = cache / f"demo-model-{data.root.name}-{options.key()[:8]}-e{epochs or 'auto'}"
    state = read_state(out) or {}
    if state.get("stopped_early") or state.get("epoch", 0) >= (
        epochs or state.get("max_epochs", 0) or 1 << 30
    ):
        console.print(f"    already trained: {out} (delete it to retrain)")
        return out
    bar = (progress or train_progress)(False)
    task = bar.add_task("epoch", total=None, loss="-", rate="-", val="")
    with bar:
        result = train(
            [data.train, objects.train], out, options, step_updater(bar, task, epochs or "auto")
        )
    best = result.best
    score = f", validation R@5 {best.val['R@5']:.3f}" if best and best.val else ""
    console.print(
        f"    trained {result.epochs_done} epochs in {result.seconds:.0f}s (best epoch "
        f"{result.best_epoch}{score}) -> {out}"
    )
    return out


def run_demo(
    out_dir: Path,
    cache: Path,
    n: int = DEMO_N,
    seed: int = 0,
    n_test: int | None = DEMO_TEST,
    epochs: int | None = DEMO_EPOCHS,
    console: Console | None = None,
    progress: Callable[[bool], Any] | None = None,
) -> dict:
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.encoder import load_encoder
    from pixfind.search.engine import Searcher
    from pixfind.search.types import EncoderSpec
    from pixfind.train.contact import contact_sheet
    from pixfind.train.demodata import DEMO_QUERIES, read_scenes
    from pixfind.train.evaluate import retrieval

    console = console or Console()
    out_dir, cache = Path(out_dir).resolve(), Path(cache).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = demo_data(cache, n, seed, console, n_test)
    model = demo_model(cache, data, seed, epochs, console, progress)
    curves = _curves(model, out_dir / "curves.png")
    if curves:
        console.print(f"    learning curves: {curves}")

    home = out_dir / "index"
    console.print(f"[bold]3/5[/] indexing the {data.n_test} held-out photos into {home}")
    report = run_index(
        home, IndexOptions([str(data.test)]), spec=EncoderSpec(str(model), None), device="cpu"
    )
    console.print(f"    {report.total} photos indexed in {report.seconds:.1f}s")

    console.print("[bold]4/5[/] searching (green outline: the photo really matches)")
    searcher = Searcher(home, device="cpu")
    scenes = read_scenes(data.test)
    summary = {"model": str(model), "curves": str(curves) if curves else None, "queries": []}
    for i, query in enumerate(DEMO_QUERIES, start=1):
        hits = searcher.search(query.text, 8)
        marks = [query.matches(scenes[h.path]) if h.path in scenes else None for h in hits]
        sheet = contact_sheet(
            f'"{query.text}"',
            hits,
            out_dir / f"{i:02d}-{query.text.replace(' ', '-')}.png",
            marks=marks,
        )
        p5 = sum(bool(m) for m in marks[:5]) / 5
        console.print(f'  [bold]"{query.text}"[/]  precision@5 {p5:.1f}  -> {sheet.name}')
        for hit, mark in list(zip(hits, marks, strict=True))[:3]:
            tick = "[green]yes[/]" if mark else "[red]no[/]"
            console.print(f"     #{hit.rank} {hit.score:.3f} {tick} {Path(hit.path).name}")
        summary["queries"].append({"query": query.text, "precision_at_5": p5, "sheet": str(sheet)})

    console.print(f"[bold]5/5[/] retrieval on the {data.n_test} held-out photos")
    t0 = time.perf_counter()
    scores = retrieval(load_encoder(EncoderSpec(str(model), None), "cpu"), data.test)
    t2i, i2t = scores.text_to_image, scores.image_to_text
    console.print(
        f"    text->image R@1 {t2i[1]:.3f}  R@5 {t2i[5]:.3f}  R@10 {t2i[10]:.3f}   "
        f"image->text R@1 {i2t[1]:.3f}  R@5 {i2t[5]:.3f}  R@10 {i2t[10]:.3f}  "
        f"({scores.captions} captions, {time.perf_counter() - t0:.1f}s)"
    )
    summary["retrieval"] = scores.to_dict()
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"\ncontact sheets and summary.json in {out_dir}; try your own queries:\n"
        f'  .venv/bin/pixfind --index {home} search "a small green star on the right"'
    )
    return summary


def _curves(model: Path, path: Path) -> Path | None:
    """The demo model's learning curves (loss, validation recall, lr, temperature) as a PNG;
    None when matplotlib is missing (it is optional for the demo)."""
    from pixfind.search.errors import PixfindError
    from pixfind.train.fit import read_state
    from pixfind.train.validate import plot_curves

    state = read_state(model)
    if not state or not state.get("history"):
        return None
    try:
        return plot_curves(state["history"], path, f"pixfind train: {model.name}")
    except PixfindError:
        return None
