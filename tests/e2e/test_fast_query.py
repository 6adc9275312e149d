"""The cold text query (search/fastpath.py): a plain-torch text tower, open_clip's tokenizer
loaded without open_clip, and the query snapshot next to the FAISS index. Each must give the
ordinary path's results exactly, and step aside whenever it can't."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pixfind.search.cold import snapshot
from pixfind.search.cold.fastpath import text_search
from pixfind.search.cold.texttower import (
    PlainTextTower,
    plain_text_cfg,
    standalone_tokenizer_module,
)
from pixfind.search.encoder import load_encoder, save_model_dir, text_recipe
from pixfind.search.engine import Searcher
from pixfind.search.index import INDEX_DIR
from pixfind.search.models import get_open_clip
from pixfind.search.types import EncoderSpec

from ..conftest import ROOT, make_picture

TEXTS = [
    "a dog",
    "Two BLUE squares on a white background, seen from far above!",
    "x",
    "caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e \U0001f600",
    " ".join(["very long query"] * 40),  # longer than the context: truncated, ends in EOT
]


def _random_model(quick_gelu: bool = False):
    """pixfind-tiny with random weights (perturbed so nothing equals a fresh init)."""
    import torch

    open_clip = get_open_clip()
    cfg = dict(open_clip.get_model_config("pixfind-tiny"), quick_gelu=quick_gelu)
    model = open_clip.create_model("pixfind-tiny", pretrained=None, force_quick_gelu=quick_gelu)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval(), cfg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    model, cfg = _random_model()
    return save_model_dir(model, tmp_path_factory.mktemp("fast") / "tiny-model", cfg)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, model_dir) -> Path:
    """An index of 24 real image files built by the real indexer with a model directory."""
    from pixfind.indexer.pipeline import IndexOptions, run_index

    root = tmp_path_factory.mktemp("fast-photos")
    for i in range(24):
        make_picture(root / ("a" if i % 2 else "b") / f"p{i:02d}.jpg", seed=100 + i)
    home = root.parent / (root.name + "-index")
    run_index(home, IndexOptions(roots=[root]), EncoderSpec(str(model_dir), None), "cpu")
    return home


def test_standalone_tokenizer_equals_open_clip():
    module = standalone_tokenizer_module()
    assert module.__name__ != "open_clip.tokenizer"  # really loaded on its own
    for context in (77, 32):
        ours = module.SimpleTokenizer(context_length=context)(TEXTS)
        ref = get_open_clip().get_tokenizer("ViT-B-32", context_length=context)(TEXTS)
        assert ours.shape == (len(TEXTS), context)
        assert ours.equal(ref)


@pytest.mark.parametrize(
    ("file_kind", "quick_gelu"), [("dir", False), ("dir", True), ("pt", False)]
)
def test_plain_text_tower_equals_open_clip(tmp_path, file_kind, quick_gelu):
    import torch

    model, cfg = _random_model(quick_gelu)
    if file_kind == "dir":
        spec = EncoderSpec(str(save_model_dir(model, tmp_path / "m", cfg)), None)
    else:  # a plain state-dict checkpoint file for a named architecture
        torch.save(model.state_dict(), tmp_path / "m.pt")
        spec = EncoderSpec("pixfind-tiny", str(tmp_path / "m.pt"))
    recipe = text_recipe(spec)
    assert recipe is not None and recipe["arch"]["quick_gelu"] == quick_gelu
    tower = PlainTextTower.load(recipe)
    assert tower is not None
    tokenizer = get_open_clip().get_tokenizer("pixfind-tiny")
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(model.encode_text(tokenizer(TEXTS)), dim=-1).numpy()
    np.testing.assert_allclose(tower.encode_texts(TEXTS), ref, atol=2e-5)
    for i, text in enumerate(TEXTS):  # one query at a time, as searches encode them
        np.testing.assert_allclose(tower.encode_texts([text])[0], ref[i], atol=2e-5)
    np.testing.assert_allclose(
        load_encoder(spec, "cpu").encode_texts(TEXTS), tower.encode_texts(TEXTS), atol=2e-5
    )


def test_recipe_only_for_towers_it_reproduces(tmp_path, model_dir):
    cfg = dict(get_open_clip().get_model_config("ViT-B-32"))
    assert plain_text_cfg(cfg)["width"] == 512
    for change in (
        {"ls_init_value": 1e-5},
        {"pool_type": "eos"},
        {"hf_model_name": "bert-base-uncased"},
        {"proj_bias": True},
        {"no_causal_mask": True},
        {"something_new": 1},
    ):
        assert plain_text_cfg({**cfg, "text_cfg": {**cfg["text_cfg"], **change}}) is None
    assert plain_text_cfg({**cfg, "custom_text": True}) is None
    assert plain_text_cfg(cfg, "ViT-B-16-SigLIP") is None
    assert text_recipe(EncoderSpec("pixfind-tiny", None)) is None  # random: no weights file
    # a recipe is refused once its weights file changed
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    recipe = text_recipe(EncoderSpec(str(copy), None))
    assert PlainTextTower.load(recipe) is not None
    weights = copy / "open_clip_model.safetensors"
    os.utime(weights, ns=(0, weights.stat().st_mtime_ns + 1_000_000_000))
    assert PlainTextTower.load(recipe) is None


def test_fast_search_equals_ordinary_search(indexed, monkeypatch):
    meta = snapshot.read_meta(indexed / INDEX_DIR)
    assert meta["rows"] == 24 and meta["recipe"] is not None
    assert snapshot.is_fresh(meta, indexed)
    searcher = Searcher(indexed)
    for text in ["a red square", "blue", "something else entirely"]:
        for kw in ({}, {"sort": "date"}, {"min_score": -1.0}):
            fast = text_search(indexed, text, 5, **kw)
            assert fast is not None, "the shortcut did not apply"
            monkeypatch.setenv("PIXFIND_FAST_PATH", "0")
            ordinary = searcher.search(text, 5, **kw)
            monkeypatch.delenv("PIXFIND_FAST_PATH")
            assert [h.to_dict()["path"] for h in fast] == [h.to_dict()["path"] for h in ordinary]
            for f, o in zip(fast, ordinary, strict=True):
                assert (f.id, f.rank, f.width, f.height) == (o.id, o.rank, o.width, o.height)
                assert abs(f.score - o.score) < 1e-5
                assert f.to_dict().keys() == o.to_dict().keys()
                assert (f.taken_at, f.file_type) == (o.taken_at, o.file_type)


def _cli(home: Path, *args: str, env: dict | None = None) -> tuple[dict, list[str]]:
    """Run `pixfind search` in a fresh process; (its JSON, which heavy modules it imported)."""
    code = (
        "import runpy, sys\n"
        "try:\n"
        "    runpy.run_module('pixfind.cli', run_name='__main__')\n"
        "finally:\n"
        "    heavy = [m for m in ('open_clip', 'lancedb') if m in sys.modules]\n"
        "    print('IMPORTED', ','.join(heavy), file=sys.stderr)\n"
    )
    argv = ["--index", str(home), "search", *args, "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = proc.stderr.rsplit("IMPORTED", 1)[1].strip()
    return json.loads(proc.stdout), [m for m in imported.split(",") if m]


def test_cold_cli_search_skips_open_clip_and_lancedb(indexed):
    # --mode vector: the cold path ranks by vectors alone (hybrid goes warm)
    fast, heavy = _cli(indexed, "a red square", "-k", "4", "--mode", "vector")
    assert heavy == []
    ordinary, heavy = _cli(
        indexed, "a red square", "-k", "4", "--mode", "vector", env={"PIXFIND_FAST_PATH": "0"}
    )
    # LanceDB for the records; the text tower of a model directory needs no open_clip there
    # either (search/cold/texttower.py serves both paths)
    assert "lancedb" in heavy
    assert [r["path"] for r in fast["results"]] == [r["path"] for r in ordinary["results"]]
    assert len(fast["results"]) == 4
    # queries the shortcut doesn't serve still work, through the ordinary path
    filtered, heavy = _cli(indexed, "a red square", "--folder", "*/a/*")
    assert "lancedb" in heavy and all("/a/" in r["path"] for r in filtered["results"])


def test_stale_snapshot_is_not_used(tmp_path, indexed):
    from pixfind.search.store import Store

    home = tmp_path / "home"
    shutil.copytree(indexed, home)
    assert text_search(home, "a red square") is not None
    store = Store.open(home)
    gone = sorted(store.file_states())[0]
    store.delete_paths([gone])  # a write the FAISS index and snapshot don't reflect yet
    assert text_search(home, "a red square", 24) is None
    hits = Searcher(home).search("a red square", 24)  # rebuilds index + snapshot
    assert len(hits) == 23 and gone not in {h.path for h in hits}
    fast = text_search(home, "a red square", 24)
    assert fast is not None and [h.path for h in fast] == [h.path for h in hits]


def test_recreated_table_with_the_same_version_number_gets_a_new_index(tmp_path, model_dir):
    """db/ deleted and a different folder indexed: the table can reach the old version number,
    and neither path may then serve the old FAISS index or snapshot."""
    from pixfind.indexer.pipeline import IndexOptions, run_index

    home, spec = tmp_path / "home", EncoderSpec(str(model_dir), None)
    first, second = tmp_path / "first", tmp_path / "second"
    for i in range(6):
        make_picture(first / f"f{i}.jpg", seed=200 + i)
        make_picture(second / f"s{i}.jpg", seed=300 + i)
    run_index(home, IndexOptions(roots=[first]), spec, "cpu")
    old = snapshot.read_meta(home / INDEX_DIR)
    shutil.rmtree(home / "db")
    run_index(home, IndexOptions(roots=[second]), spec, "cpu")
    new = snapshot.read_meta(home / INDEX_DIR)
    assert new["store_version"] == old["store_version"]  # the case this test is about
    assert new["manifest"] != old["manifest"]
    for hits in (text_search(home, "a photo", 6), Searcher(home).search("a photo", 6)):
        assert hits is not None
        assert sorted(Path(h.path).name for h in hits) == [f"s{i}.jpg" for i in range(6)]
