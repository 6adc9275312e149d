"""The ONNX Runtime towers (search/onnxrt.py, search/onnxexport.py): exported once per model
with a parity check against torch, used where it passed and refused (torch, one warning)
where it didn't; and the cold text query that then never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pixfind.search import onnxexport, onnxrt
from pixfind.search.cold import snapshot
from pixfind.search.encoder import _load_cached, load_encoder, load_text_encoder
from pixfind.search.engine import Searcher
from pixfind.search.index import INDEX_DIR
from pixfind.search.onnxrt import MANIFEST, PARITY_MIN, read_manifest
from pixfind.search.query import Query
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, SHARED_PHOTOS, make_picture

# the two small architectures pixfind ships: a ViT (pixfind-tiny) and a ResNet with an
# attention pool (pixfind-demo), both with seeded random weights
SMALL = ("pixfind-tiny", "pixfind-demo")
CAPTIONS = ["a dog on a beach", "two people", "x", " ".join(["a long caption"] * 30)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _onnx(monkeypatch, cache):
    # exports of this module go to its own cache (random weights: no Hugging Face files read)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("PIXFIND_RUNTIME", "auto")
    _load_cached.cache_clear()  # encoders loaded with another runtime elsewhere
    yield
    _load_cached.cache_clear()
    onnxrt.loaded.clear()  # towers loaded here must not serve the next module's models


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Real photos from ../shared/photos where present, else synthetic ones."""
    real = sorted((SHARED_PHOTOS / "images" / "flickr8k").glob("*.jpg"))[:12]
    if len(real) == 12:
        return real
    folder = tmp_path_factory.mktemp("photos")
    return [make_picture(folder / f"p{i}.jpg", seed=i) for i in range(12)]


def _pixels(encoder, paths):
    import torch
    from PIL import Image

    return torch.stack([encoder.preprocess(Image.open(p).convert("RGB")) for p in paths])


@pytest.mark.parametrize("arch", SMALL)
def test_export_passes_parity_and_serves(arch, photos):
    encoder = load_encoder(EncoderSpec(arch, None), "cpu", "auto")
    assert encoder.runtime == "onnx"
    assert encoder.onnx_towers() is None  # no export yet, and a query never waits for one
    towers = encoder.onnx_towers(_pixels(encoder, photos[:6]))  # exports, checks on these
    first = encoder.encode_image_tensors(_pixels(encoder, photos[:6]))
    assert towers is not None, "the export of a small architecture must pass"
    meta = read_manifest(towers.directory)
    assert meta["passed"] and min(meta["parity"].values()) >= PARITY_MIN
    # photos and captions the export was not checked on: the same vectors as torch
    batch = _pixels(encoder, photos[6:])
    cosines = np.sum(encoder.encode_image_tensors(batch) * encoder.torch_encode_image(batch), 1)
    assert cosines.min() >= PARITY_MIN
    texts = np.sum(encoder.encode_texts(CAPTIONS) * encoder.torch_encode_texts(CAPTIONS), 1)
    assert texts.min() >= PARITY_MIN
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # a text query loads the exported text tower alone, without building the model
    _load_cached.cache_clear()
    text_only = load_text_encoder(EncoderSpec(arch, None), "cpu", "auto")
    assert type(text_only.tower).__name__ == "OnnxTextTower"
    assert np.allclose(text_only.encode_texts(CAPTIONS), encoder.encode_texts(CAPTIONS), atol=1e-6)


def test_torch_runtime_never_exports(photos, cache):
    encoder = load_encoder(EncoderSpec("pixfind-tiny", None), "cpu", "torch")
    before = set(cache.rglob(MANIFEST))
    assert encoder.onnx_towers(_pixels(encoder, photos[:2])) is None
    assert set(cache.rglob(MANIFEST)) == before


def test_failed_export_falls_back_to_torch_with_one_warning(photos, monkeypatch, capsys):
    def broken(encoder, directory):
        raise RuntimeError("this architecture can't be traced\nmore detail")

    monkeypatch.setattr(onnxexport, "export_towers", broken)
    monkeypatch.setattr(onnxexport, "weights_key", lambda spec, cfg: "broken-export")
    spec = EncoderSpec("pixfind-tiny", None)
    batch = _pixels(load_encoder(spec, "cpu", "torch"), photos[:3])
    for _ in range(2):  # the failure is recorded: a second process doesn't try again
        _load_cached.cache_clear()
        encoder = load_encoder(spec, "cpu", "onnx")
        assert encoder.onnx_towers(batch) is None
        vectors = encoder.encode_image_tensors(batch)
        assert np.allclose(vectors, encoder.torch_encode_image(batch), atol=1e-6)
    meta = read_manifest(onnxexport.export_root() / "broken-export")
    assert meta["passed"] is False and "can't be traced" in meta["error"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "using torch" in line]
    assert len(warnings) == 1 and "can't be traced" in warnings[0]


def _query(home: Path, text: str, env: dict, mode: str | None = "vector") -> dict:
    code = (
        "import json, sys\n"
        "from pixfind.search.engine import Searcher\n"
        "from pixfind.search.query import Query\n"
        "mode = sys.argv[3] or None\n"
        "r = Searcher(sys.argv[1]).run(Query.text(sys.argv[2], k=5, mode=mode))\n"
        "heavy = [m for m in ('torch', 'open_clip', 'lancedb') if m in sys.modules]\n"
        "print(json.dumps({'path': r.path, 'mode': r.mode, 'ids': [h.id for h in r.hits],\n"
        "                  'scores': [h.score for h in r.hits], 'imported': heavy}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(home), text, mode or ""],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cold_query_on_onnx_never_imports_torch(tmp_path, cache):
    from pixfind.indexer.pipeline import IndexOptions, run_index

    root = tmp_path / "photos"
    for i in range(16):
        make_picture(root / f"p{i:02d}.jpg", seed=400 + i)
    home = tmp_path / "index"
    run_index(home, IndexOptions(roots=[root]), EncoderSpec("pixfind-tiny", None), "cpu")
    env = {"XDG_CACHE_HOME": str(cache), "PIXFIND_RUNTIME": "auto"}
    cold = _query(home, "a red circle", env)
    assert cold["path"] == "cold" and cold["imported"] == []
    # the same hits as torch on the warm path
    warm = Searcher(home, cold=False, runtime="torch").run(
        Query.text("a red circle", k=5, mode="vector")
    )
    assert cold["ids"] == [h.id for h in warm.hits]
    assert np.allclose(cold["scores"], [h.score for h in warm.hits], atol=1e-4)
    # forcing torch: random weights have no plain-tower recipe, so the warm path answers
    forced = _query(home, "a red circle", {**env, "PIXFIND_RUNTIME": "torch"})
    assert forced["path"] == "warm" and "torch" in forced["imported"]
    assert forced["ids"] == cold["ids"]
    # hybrid (the default with a keyword index): the cold path too, its keyword half from
    # the snapshot (search/cold/bm25.py), without LanceDB, torch or open_clip
    # a re-index that encodes nothing (a fresh process: no towers loaded) keeps them named
    onnxrt.loaded.clear()
    _load_cached.cache_clear()
    run_index(home, IndexOptions(roots=[root]), EncoderSpec("pixfind-tiny", None), "cpu")
    assert "onnx" in snapshot.read_meta(home / INDEX_DIR)["recipe"]
    hybrid = _query(home, "p03 red circle", env, mode=None)
    assert (hybrid["path"], hybrid["mode"], hybrid["imported"]) == ("cold", "hybrid", [])
    warm = Searcher(home, runtime="torch").run(Query.text("p03 red circle", k=5))
    assert warm.mode == "hybrid" and hybrid["ids"] == [h.id for h in warm.hits]
