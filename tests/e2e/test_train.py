"""Issue 3: train and fine-tune dual encoders, evaluate retrieval, run the demo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pixfind.search.encoder import load_encoder
from pixfind.search.types import EncoderSpec
from pixfind.train.demodata import generate, read_scenes
from pixfind.train.evaluate import attribute_queries, retrieval, retrieval_recall
from pixfind.train.fit import TrainError, TrainOptions, lr_at, train

from tests.conftest import SHARED_PHOTOS, json_out

# Attribute queries over the held-out demo photos, fixed by a rule (evaluate.attribute_queries)
QUERIES = attribute_queries()


def _vec(*xs):
    v = np.asarray(xs, np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_recall_at_follows_the_clip_benchmark_protocol():
    images = _vec([1, 0, 0], [0, 1, 0], [0, 0, 1])
    # captions 0,1 -> image 0; caption 2 -> image 1; caption 3 -> image 2 (but closest to image 0)
    texts = _vec([1, 0.1, 0], [0.1, 1, 0], [0, 1, 0.2], [1, 0, 0.5])
    owner = np.array([0, 0, 1, 2])
    t2i, i2t = retrieval_recall(images, texts, owner, ks=(1, 2, 3))
    assert t2i == {1: 0.5, 2: 1.0, 3: 1.0}  # caption 1 ranks image 1 first; caption 3 image 0
    # image 1's nearest caption is caption 1 (image 0's), its own caption 2 comes second
    assert i2t == {1: pytest.approx(2 / 3), 2: 1.0, 3: 1.0}


def test_lr_warms_up_then_decays_to_zero():
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] < 0.01


def test_demo_data_is_deterministic_and_captions_describe_the_scene(tmp_path):
    a = generate(tmp_path / "a", n=30, seed=3)
    b = generate(tmp_path / "b", n=30, seed=3)
    c = generate(tmp_path / "c", n=30, seed=4)
    names = sorted(p.name for p in a.train.glob("*.jpg"))
    assert len(names) == 24 and len(list(a.test.glob("*.jpg"))) == 6
    for name in names:
        assert (a.train / name).read_bytes() == (b.train / name).read_bytes()
    assert (a.train / "captions.jsonl").read_text() == (b.train / "captions.jsonl").read_text()
    assert (a.train / "captions.jsonl").read_text() != (c.train / "captions.jsonl").read_text()
    scenes = read_scenes(a.train)
    rows = [json.loads(x) for x in (a.train / "captions.jsonl").read_text().splitlines()]
    assert len(rows) >= 3 * 24  # several captions per image
    for row in rows:
        scene = scenes[str(a.train / row["image"])]
        for thing in scene.things:  # every object is named with its colour and shape
            assert thing.colour in row["caption"] and thing.shape in row["caption"]
    shapes = {t.shape for s in scenes.values() for t in s.things}
    assert len(shapes) >= 6


def test_demo_data_holds_out_n_test_and_a_larger_n_only_adds_photos(cli, tmp_path):
    small = generate(tmp_path / "small", n=12, seed=3)
    result = cli("demo-data", tmp_path / "big", "--n", 20, "--seed", 3, "--n-test", 7)
    assert "wrote 13 photos" in result.output and "and 7 to" in result.output
    big = tmp_path / "big"
    assert len(list((big / "train").glob("*.jpg"))) == 13
    assert len(list((big / "test").glob("*.jpg"))) == 7
    for photo in small.train.glob("*.jpg"):  # photo i is the same whatever n and the split
        assert (big / "train" / photo.name).read_bytes() == photo.read_bytes()
    bad = cli("demo-data", tmp_path / "bad", "--n", 10, "--n-test", 10, ok=False)
    assert bad.exit_code == 1 and "--n-test must be between 1 and 9" in bad.output


def test_demo_objects_are_one_object_photos_with_short_captions(tmp_path):
    from pixfind.search.errors import PixfindError

    data = generate(tmp_path / "objects", n=20, seed=1, kind="objects")
    scenes = read_scenes(data.train)
    assert len(scenes) == 16 and all(len(s.things) == 1 for s in scenes.values())
    caps: dict[str, list[str]] = {}
    for line in (data.train / "captions.jsonl").read_text().splitlines():
        row = json.loads(line)
        caps.setdefault(row["image"], []).append(row["caption"])
    for path, scene in scenes.items():
        t = scene.things[0]
        article = "an" if t.shape[0] in "aeiou" else "a"
        assert caps[Path(path).name] == [
            f"{article} {t.shape}",
            f"a {t.size} {t.shape}",
            f"a {t.size} {t.colour} {t.shape}",
        ]
    with pytest.raises(PixfindError, match="kind must be one of"):
        generate(tmp_path / "bad", n=4, kind="nope")


def test_train_resumes_from_its_last_epoch_and_refuses_a_foreign_checkpoint(tmp_path):
    data = generate(tmp_path / "data", n=80, seed=1)
    out = tmp_path / "model"
    opts = dict(model="pixfind-tiny", batch_size=16, seed=0)
    first = train(data.train, out, TrainOptions(epochs=1, **opts))
    assert first.epochs_done == 1 and first.resumed_from == 0
    assert (out / "open_clip_config.json").is_file()
    resumed = train(data.train, out, TrainOptions(epochs=2, **opts))
    assert resumed.resumed_from == 1 and resumed.epochs_done == 2
    assert [h.epoch for h in resumed.history] == [1, 2]
    again = train(data.train, out, TrainOptions(epochs=2, **opts))
    assert again.seconds == 0 and again.epochs_done == 2
    with pytest.raises(TrainError, match="different training run"):
        train(data.train, out, TrainOptions(epochs=2, lr=0.5, **opts))
    with pytest.raises(TrainError, match="trained on other data"):
        train([data.train, data.test], out, TrainOptions(epochs=3, **opts))
    # what training wrote is a model the core encoder loads
    enc = load_encoder(EncoderSpec(str(out), None), "cpu")
    assert enc.encode_texts(["a red circle"]).shape == (1, enc.dim)


def test_cli_trains_on_several_folders_as_one(cli, tmp_path):
    from pixfind.search.captions import read_collections

    scenes = generate(tmp_path / "scenes", n=20, seed=1)
    objects = generate(tmp_path / "objects", n=15, seed=1, kind="objects")
    both = read_collections([scenes.train, objects.train])
    assert len(both.images) == scenes.n_train + objects.n_train == 28
    assert both.captions == {
        **read_collections(scenes.train).captions,
        **read_collections(objects.train).captions,
    }
    out = tmp_path / "model"
    args = ("--out", out, "--model", "pixfind-tiny", "--epochs", 1, "--batch-size", 8, "--json")
    result = json_out(cli("train", scenes.train, objects.train, *args))
    assert result["images"] == 28 and result["captions"] == len(both.pairs())
    saved = json.loads((out / "open_clip_config.json").read_text())["pixfind"]
    assert str(scenes.train) in saved["data"] and str(objects.train) in saved["data"]


def test_validation_keeps_the_best_epoch_resumes_and_plots(cli, tmp_path):
    data = generate(tmp_path / "data", n=300, seed=1, kind="objects")  # 240 train, 60 test
    out = tmp_path / "model"
    args = ("--out", out, "--model", "pixfind-tiny", "--batch-size", 16, "--json")
    first = json_out(cli("train", data.train, *args, "--epochs", 2))
    assert first["val_images"] == 24 and first["images"] == 216  # 10% held out, by photo
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    assert all(set(h["val"]) == {"R@1", "R@5", "R@10"} for h in first["history"])
    saved = json.loads((out / "open_clip_config.json").read_text())["pixfind"]
    assert saved["epochs"] == first["best_epoch"] and saved["val"] == first["best_val"]
    plot = tmp_path / "curves.png"
    second = json_out(cli("train", data.train, *args, "--epochs", 3, "--plot", plot))
    assert second["resumed_from"] == 2 and second["epochs_done"] == 3
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert plot.stat().st_size > 5000
    state = json.loads((out / "train.json").read_text())
    assert state["best_epoch"] == second["best_epoch"] and len(state["history"]) == 3
    # --val DIR: validate on another folder, hold nothing out
    other = ("--out", tmp_path / "m2", "--model", "pixfind-tiny", "--batch-size", 16)
    third = json_out(cli("train", data.train, *other, "--epochs", 1, "--val", data.test, "--json"))
    assert third["images"] == 240 and third["val_images"] == 60
    bad = cli("train", data.train, *other, "--epochs", "lots", ok=False)
    assert bad.exit_code == 1 and "--epochs must be auto or a whole number" in bad.output


def test_cli_train_errors_are_one_line(cli, tmp_path):
    data = generate(tmp_path / "data", n=10, seed=1)
    bad = cli("train", data.train, "--out", tmp_path / "m", "--model", "no-such-arch", ok=False)
    assert bad.exit_code == 1 and "unknown model 'no-such-arch'" in bad.output
    bad = cli("train", tmp_path / "nothing", "--out", tmp_path / "m", ok=False)
    assert bad.exit_code == 1 and "is not a folder" in bad.output
    frozen = cli(
        "train",
        data.train,
        "--out",
        tmp_path / "m2",
        "--model",
        "pixfind-tiny",
        "--freeze",
        "both",
        ok=False,
    )
    assert frozen.exit_code == 1 and "--freeze must be" in frozen.output
    # too few photos for one batch of each kind: a clear line, not an UnboundLocalError
    few = cli(
        "train",
        data.train,
        "--out",
        tmp_path / "m3",
        "--model",
        "pixfind-tiny",
        "--hard-batches",
        0.5,
        ok=False,
    )
    assert few.exit_code == 1 and "too few for batches of 8; use --batch-size 4" in few.output


@pytest.mark.slow
def test_demo_model_answers_attribute_queries(demo_model, demo_data, tmp_path):
    from pixfind.indexer import IndexOptions, run_index
    from pixfind.search.engine import Searcher

    # indexed without the photos' captions, so that only the model counts (as issue 18
    # measures it): with captions, a query is also scored against caption text (weight 0.7,
    # README "Captions"), and "a small orange star" then also finds "a small orange circle and
    # a large blue star"
    home = tmp_path / "index"
    report = run_index(
        home,
        IndexOptions([str(demo_data.test)], captions=False),
        spec=EncoderSpec(str(demo_model), None),
    )
    assert report.total == demo_data.n_test
    scenes = read_scenes(demo_data.test)
    searcher = Searcher(home, device="cpu")
    colour_ok, full = [], []
    for q in QUERIES:
        truth = sum(q.matches(s) for s in scenes.values())
        assert truth >= 5, f"{q.text!r} has only {truth} true matches in the held-out split"
        found = [scenes[h.path] for h in searcher.search(q.text, 5)]
        p5 = sum(q.matches(s) for s in found) / 5
        colour_p5 = sum(s.has(colour=q.colour) for s in found) / 5
        print(f"  P@5 {p5:.1f}  colour P@5 {colour_p5:.1f}  ({truth:3d} true)  {q.text}")
        full.append(p5)
        colour_ok.append(colour_p5 >= 0.8)
    chance = np.mean([sum(q.matches(s) for s in scenes.values()) / len(scenes) for q in QUERIES])
    print(
        f"{sum(p >= 0.8 for p in full)}/{len(QUERIES)} queries reach precision@5 >= 0.8 on "
        f"every attribute (mean {np.mean(full):.2f}, chance {chance:.2f}); "
        f"{sum(colour_ok)}/{len(QUERIES)} on colour"
    )
    # >= 20 of the 24 queries each at P@5 >= 0.8 on every attribute (colour, shape and size).
    # The demo model scored 21 (issue 18's target) in the run README "The demo model" reports;
    # neighbouring epochs and other thread counts give 20 to 22. Without the one-object photos
    # (demo.py) the scenes alone gave 5/24.
    assert sum(p >= 0.8 for p in full) >= 20
    assert sum(colour_ok) >= 22


@pytest.mark.slow
def test_eval_recall_on_the_held_out_split(cli, demo_model, demo_data, tmp_path):
    plot = tmp_path / "scores.png"
    result = cli("eval", demo_data.test, "--model", demo_model, "--json", "--plot", plot)
    scores = json_out(result)
    t2i, i2t = scores["retrieval"]["text_to_image"], scores["retrieval"]["image_to_text"]
    print(
        f"held-out ({scores['retrieval']['images']} photos) text->image {t2i}, "
        f"image->text {i2t}, zero-shot {scores['zero_shot']}"
    )
    assert scores["retrieval"]["images"] == demo_data.n_test
    assert t2i["R@5"] >= 0.85  # 0.912 measured (README "The demo model"); 0.83 before issue 18
    zs = scores["zero_shot"]
    assert zs["classes"] > 20 and zs["top1"] >= 0.8  # 0.99 measured over 48 classes
    assert plot.stat().st_size > 1000


@pytest.mark.slow
def test_finetuning_on_a_shifted_collection_raises_recall(demo_model, tmp_path):
    shifted = generate(tmp_path / "shifted", n=600, seed=7, variant="shifted")
    before = retrieval(load_encoder(EncoderSpec(str(demo_model), None), "cpu"), shifted.test)
    tuned = tmp_path / "tuned"
    train(shifted.train, tuned, TrainOptions(init=str(demo_model), epochs=5, lr=5e-4, seed=0))
    after = retrieval(load_encoder(EncoderSpec(str(tuned), None), "cpu"), shifted.test)
    gain = after.text_to_image[1] - before.text_to_image[1]
    print(
        f"shifted held-out ({shifted.n_test} photos) text->image R@1 {before.text_to_image[1]:.3f}"
        f" -> {after.text_to_image[1]:.3f} (+{gain:.3f}); R@5 {before.text_to_image[5]:.3f} -> "
        f"{after.text_to_image[5]:.3f}"
    )
    assert gain >= 0.10


@pytest.mark.slow
def test_demo_runs_end_to_end(demo_cache, demo_data, demo_model, tmp_path):
    from pixfind.train.demo import DEMO_EPOCHS, DEMO_N, DEMO_TEST, run_demo
    from pixfind.train.progress import train_progress
    from rich.console import Console

    from tests.conftest import DEMO_SEED

    summary = run_demo(
        tmp_path / "out",
        demo_cache,
        n=DEMO_N,
        seed=DEMO_SEED,
        n_test=DEMO_TEST,
        epochs=DEMO_EPOCHS,
        console=Console(quiet=True),
        progress=lambda _: train_progress(True),
    )
    assert summary["model"] == str(demo_model)  # the cached model: no second training
    sheets = [Path(q["sheet"]) for q in summary["queries"]]
    assert len(sheets) >= 5 and all(p.stat().st_size > 5000 for p in sheets)
    assert summary["retrieval"]["images"] == demo_data.n_test


@pytest.mark.skipif(
    not (SHARED_PHOTOS / "captions.jsonl").is_file(),
    reason=f"../shared/photos not present ({SHARED_PHOTOS}); real-photo eval skipped",
)
def test_eval_on_shared_photos(cli, demo_model):
    result = cli("eval", SHARED_PHOTOS, "--model", demo_model, "--limit", "200", "--json")
    scores = json_out(result)
    ret, zs = scores["retrieval"], scores["zero_shot"]
    print(f"shared photos, demo model: retrieval {ret}, zero-shot {zs}")
    assert ret["images"] == 200 and ret["captions"] >= 200
    for direction in ("text_to_image", "image_to_text"):
        r = ret[direction]
        assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1
    assert zs["images"] == 200 and zs["classes"] > 10
