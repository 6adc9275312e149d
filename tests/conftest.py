"""Shared fixtures: real image files on disk, a small real open_clip model, a CLI runner."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = ROOT.parent / "shared" / "photos"
TINY = ("pixfind-tiny", "none")  # a small open_clip architecture with seeded random weights


def shared_photos(n: int, dataset: str = "flickr8k") -> list[Path]:
    """The first n photos of a dataset in ../shared/photos, or skip when it is absent."""
    folder = SHARED_PHOTOS / "images" / dataset
    if not folder.is_dir():
        pytest.skip(f"../shared/photos not present ({folder}); real-photo checks skipped")
    return sorted(folder.glob("*.jpg"))[:n]


def make_picture(path: Path, seed: int, size: tuple[int, int] = (160, 120)) -> Path:
    """A distinct synthetic photo: a coloured background with a few random shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 5)):
        x0, y0 = rng.randrange(size[0] - 20), rng.randrange(size[1] - 20)
        box = (x0, y0, x0 + rng.randint(15, 80), y0 + rng.randint(15, 60))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF"}.get(path.suffix, "JPEG")
    img.save(path, fmt)
    return path


@pytest.fixture
def picture_dir(tmp_path: Path) -> Path:
    """A folder of 12 generated images in several formats and subfolders, plus a hidden one."""
    root = tmp_path / "photos"
    exts = [".jpg", ".png", ".webp", ".jpeg", ".bmp", ".gif"]
    for i in range(12):
        sub = "trips" if i % 3 == 0 else "home"
        make_picture(root / sub / f"pic{i:02d}{exts[i % len(exts)]}", seed=i)
    make_picture(root / ".thumbnails" / "hidden.jpg", seed=99)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    """Run pixfind commands in-process against an index in tmp_path; returns (exit, stdout)."""
    from pixfind import cli as cli_module
    from typer.testing import CliRunner

    monkeypatch.setenv("PIXFIND_HOME", str(tmp_path / "index"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True):
        result = runner.invoke(cli_module.app, [str(a) for a in args])
        if ok and result.exit_code != 0:
            raise AssertionError(
                f"pixfind {' '.join(map(str, args))} exited {result.exit_code}:\n"
                f"{result.output}\n{result.exception!r}"
            )
        return result

    return run


def json_out(result) -> dict:
    """Parse the JSON a --json command printed (stdout only)."""
    text = result.stdout
    return json.loads(text[text.index("{") :])


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _torch_runtime():
    """Tests run torch unless they ask for ONNX (tests/*/test_onnx*.py): an export per test
    model would cost seconds each, and write into the user's model cache. Session-wide, so
    that module-scoped fixtures (indexes built once per module) see it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIXFIND_RUNTIME", "torch")
        yield


# -- the trained demo model (issue 3): trained once per test session ----------------------------
DEMO_SEED = 0


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """Per session by default (CI trains inside the session); PIXFIND_TEST_DEMO_CACHE=DIR keeps
    the demo data and model across local runs (training resumes or is skipped)."""
    keep = os.environ.get("PIXFIND_TEST_DEMO_CACHE")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture(scope="session")
def demo_data(demo_cache):
    """Synthetic captioned photos (train/ and test/ with captions, labels and scenes)."""
    from pixfind.train import demo
    from rich.console import Console

    return demo.demo_data(
        demo_cache, demo.DEMO_N, DEMO_SEED, Console(quiet=True), n_test=demo.DEMO_TEST
    )


@pytest.fixture(scope="session")
def demo_model(demo_cache, demo_data) -> Path:
    """A model directory trained on the demo data's train split in this session (fixed seed).

    Loadable like any model: load_encoder(EncoderSpec(str(demo_model), None)). Other tests
    can use it for semantic assertions ("a red circle" finds red circles).
    """
    import time

    from pixfind.train import demo
    from pixfind.train.progress import train_progress
    from rich.console import Console

    started = time.perf_counter()
    model = demo.demo_model(
        demo_cache,
        demo_data,
        DEMO_SEED,
        demo.DEMO_EPOCHS,
        Console(quiet=True),
        lambda _: train_progress(True),
    )
    print(f"\n[demo_model] trained in {time.perf_counter() - started:.1f}s -> {model}")
    return model


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/ runs real models, indexes or servers: marked slow, so
    `pytest -m "not slow"` runs the unit tests alone in seconds."""
    for item in items:
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.slow)
