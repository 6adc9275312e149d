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
DEMO_EPOCHS = 11  # on the full scenes (with the warm-up photos), after the warm-up
DEMO_BATCH = 32
DEMO_LR = 1e-3
# Warm-up: one object per photo with short captions ("a star", "a large star", "a large red
# star"), where only shape and size tell photos apart. Trained on full scenes from the start the
# model tells photos apart by colour and barely learns shapes (5/24 attribute queries at
# P@5 >= 0.8 vs 16/24 with the warm-up, same training time; README "The demo"). The second
# stage trains on the scenes and the warm-up photos together, so shapes are not forgotten
# (21/24 vs 20/24 on scenes alone, in about 2 minutes rather than 3).
WARMUP_N = 1500
WARMUP_EPOCHS = 16


def demo_data(cache: Path, n: int, seed: int, console: Console, n_test: int | None = DEMO_TEST):
    """The demo scenes (train/ and test/), generated once into ``cache``; ``n_test`` held out
    (None: a fifth)."""
    from pixfind.train.demodata import held_out

    n_test = held_out(n, n_test)
    root = cache / f"demo-data-n{n}-t{n_test}-s{seed}"
    return _generated(root, n, seed, "scenes", console, n_test)


def warmup_data(cache: Path, seed: int, console: Console):
    """One-object photos with short captions, for the demo model's first training stage."""
    return _generated(
        cache / f"demo-objects-n{WARMUP_N}-s{seed}", WARMUP_N, seed, "objects", console
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
    else:  # during step 2
        console.print(f"    generating {n} one-object warm-up photos into {root}")
    data = generate(root, n=n, seed=seed, kind=kind, n_test=n_test)
    done.write_text(json.dumps({"train": data.n_train, "test": data.n_test}))
    return data


def _train_cached(out: Path, data, options, what: str, console: Console, progress: Callable):
    """Train ``options`` on ``data`` (one captioned folder or several) into ``out``, unless
    it is already trained that far."""
    from pixfind.train.fit import read_state, train
    from pixfind.train.progress import step_updater, train_progress

    state = read_state(out)
    if state and state.get("epoch", 0) >= options.epochs:
        console.print(f"    {what}: already trained, {out} (delete it to retrain)")
        return out
    bar = (progress or train_progress)(False)
    task = bar.add_task("epoch", total=None, loss="-", rate="-", val="")
    with bar:
        result = train(data, out, options, on_step=step_updater(bar, task, options.epochs))
    console.print(f"    {what}: trained in {result.seconds:.0f}s -> {out}")
    return out


def demo_model(
    cache: Path, data, seed: int, epochs: int, console: Console, progress: Callable
) -> Path:
    """Train (or find cached) the demo model: a warm-up on one-object photos, then ``epochs``
    on the demo data's train split together with the warm-up photos, starting from the
    warm-up's weights."""
    from pixfind.train.demodata import held_out
    from pixfind.train.fit import DEMO_MODEL, TrainOptions

    warm_train = WARMUP_N - held_out(WARMUP_N, None)
    console.print(
        f"[bold]2/5[/] training the demo model ({DEMO_MODEL}: {WARMUP_EPOCHS} warm-up epochs on "
        f"{warm_train} one-object photos, then {epochs} on {data.n_train} photos and those; "
        "about 2 minutes on a laptop CPU, cached afterwards)"
    )
    warm = warmup_data(cache, seed, console)
    first = TrainOptions(
        model=DEMO_MODEL,
        epochs=WARMUP_EPOCHS,
        batch_size=DEMO_BATCH,
        lr=DEMO_LR,
        seed=seed,
        hard_batches=0.0,  # random batches (what was measured)
        val_fraction=0.0,  # the recipe's fixed lengths, measured on demo-data's test/ split
    )
    warm_out = cache / f"demo-warmup-{warm.root.name}-{first.key()[:8]}-e{WARMUP_EPOCHS}"
    _train_cached(warm_out, warm.train, first, "warm-up", console, progress)
    options = TrainOptions(
        init=str(warm_out),
        epochs=epochs,
        batch_size=DEMO_BATCH,
        lr=DEMO_LR,
        seed=seed,
        hard_batches=0.5,  # what was measured (half the batches share a caption word)
        val_fraction=0.0,
    )
    out = cache / f"demo-model-{data.root.name}-{options.key()[:8]}-e{epochs}"
    both = [data.train, warm.train]
    return _train_cached(out, both, options, "full scenes + warm-up photos", console, progress)


def run_demo(
    out_dir: Path,
    cache: Path,
    n: int = DEMO_N,
    seed: int = 0,
    n_test: int | None = DEMO_TEST,
    epochs: int = DEMO_EPOCHS,
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

    home = out_dir / "index"
    console.print(f"[bold]3/5[/] indexing the {data.n_test} held-out photos into {home}")
    report = run_index(
        home, IndexOptions([str(data.test)]), spec=EncoderSpec(str(model), None), device="cpu"
    )
    console.print(f"    {report.total} photos indexed in {report.seconds:.1f}s")

    console.print("[bold]4/5[/] searching (green outline: the photo really matches)")
    searcher = Searcher(home, device="cpu")
    scenes = read_scenes(data.test)
    summary = {"model": str(model), "queries": []}
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
