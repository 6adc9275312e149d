"""Issue 20 part 5, the light install: an ONNX model folder written by `pixfind models export`
indexes, searches and reports status in processes where torch, torchvision and open_clip
cannot be imported (a sys.meta_path blocker installed by a sitecustomize on PYTHONPATH), with
the hits and scores of the torch install; and what needs torch says so in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pixfind.search.cold import snapshot
from pixfind.search.index import INDEX_DIR

from ..conftest import ROOT, SHARED_PHOTOS, json_out, make_picture

BLOCKED = ("torch", "torchvision", "open_clip")
# Imports are logged (a caught ImportError must not hide one); probes that only ask whether
# a package is there (importlib.util.find_spec: LanceDB's for torch) are answered "no".
BLOCKER = f"""
import os, sys, traceback

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            stack = traceback.extract_stack()
            if not any(f.filename == "<frozen importlib.util>" for f in stack):
                with open(os.environ["PIXFIND_TEST_BLOCKED_LOG"], "a") as log:
                    log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""
N_PHOTOS = 24
QUERIES = ("a dog running on grass", "two children at the beach")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("light")


@pytest.fixture(scope="module")
def photos(work) -> Path:
    """Real photos from ../shared/photos where present, else synthetic ones."""
    root = work / "photos"
    real = sorted((SHARED_PHOTOS / "images" / "flickr8k").glob("*.jpg"))[:N_PHOTOS]
    for i in range(N_PHOTOS):
        if len(real) == N_PHOTOS:
            root.mkdir(exist_ok=True)
            shutil.copyfile(real[i], root / real[i].name)
        else:
            make_picture(root / f"p{i:02d}.jpg", seed=500 + i, size=(320, 240))
    return root


def light(work: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    """`pixfind ARGS` in a fresh process that can't import torch, torchvision or open_clip."""
    blocker = work / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    paths = [str(blocker), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "PIXFIND_TEST_BLOCKED_LOG": str(work / "blocked.log"),
        "XDG_CACHE_HOME": str(cache or work / "light-cache"),
        "PIXFIND_RUNTIME": "auto",
    }
    return subprocess.run(
        [sys.executable, "-m", "pixfind.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )


def attempts(work: Path) -> list[str]:
    log = work / "blocked.log"
    found = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return found


@pytest.fixture(scope="module")
def folder(work, photos, tmp_path_factory) -> Path:
    """pixfind-tiny (seeded random weights) exported by `pixfind models export`, with torch."""
    from pixfind import cli as cli_module
    from pixfind.search import onnxrt
    from pixfind.search.encoder import _load_cached
    from typer.testing import CliRunner

    out = work / "tiny-onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("export-cache")))
        args = ["models", "export", "pixfind-tiny", "--pretrained", "none", "--out", str(out)]
        result = CliRunner().invoke(cli_module.app, [*args, "--photos", str(photos)])
        _load_cached.cache_clear()  # the encoder and towers exported here serve no other test
        onnxrt.loaded.clear()
    assert result.exit_code == 0, (result.output, result.exception)
    assert "parity cosine" in result.stdout
    return out


def test_the_folder_is_self_contained(folder):
    meta = json.loads((folder / "export.json").read_text())
    assert meta["identity"] == "pixfind-tiny:random" and meta["passed"]
    assert meta["preprocess"]["size"] == [64, 64] and meta["text"]["context_length"] > 0
    names = {p.name for p in folder.iterdir()}
    assert {"visual.onnx", "textual.onnx", "bpe_simple_vocab_16e6.txt.gz"} <= names
    # the plain text tower's tensors: the cold query's numpy tower runs from them
    assert "text.safetensors" in names and meta["text"]["arch"]["layers"] > 0
    assert not any(name.startswith(".") for name in names)


def same_hits(got: dict, want: dict) -> None:
    assert [h["path"] for h in got["results"]] == [h["path"] for h in want["results"]]
    for mine, theirs in zip(got["results"], want["results"], strict=True):
        assert abs(mine["score"] - theirs["score"]) <= 1e-5


def test_index_search_status_without_torch_match_torch(work, photos, folder, cli):
    """The same hits and scores (fp32) as the torch install's pixfind-tiny."""
    photo = str(sorted(photos.iterdir())[0])
    searches = [
        [q, "-k", "8"]
        for q in QUERIES  # the cold path
    ] + [
        [QUERIES[0], "--folder", str(photos)],  # the warm path (a filter)
        ["--image", photo, "-k", "5"],  # an image query
    ]
    # the torch install: the open_clip model in torch
    cli("--index", work / "torch-index", "index", photos, "--model", "pixfind-tiny",
        "--pretrained", "none", "--runtime", "torch")  # fmt: skip
    want = [
        json_out(cli("--index", work / "torch-index", "search", *args, "--json"))
        for args in searches
    ]
    # the light install: the model folder, fp32, no torch importable
    home = work / "light-index"
    proc = light(work, "--index", str(home), "index", str(photos), "--model", str(folder),
                 "--precision", "fp32", "--batch-size", "8", "--workers", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts(work) == []
    recipe = snapshot.read_meta(home / INDEX_DIR)["recipe"]  # the cold path's text tower
    assert recipe["weights"] == str(folder.resolve() / "text.safetensors") and recipe["onnx"]
    for args, theirs in zip(searches, want, strict=True):
        proc = light(work, "--index", str(home), "search", *args, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        same_hits(json.loads(proc.stdout[proc.stdout.index("{") :]), theirs)
    proc = light(work, "--index", str(home), "status", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert status["images"] == N_PHOTOS and status["model"] == str(folder.resolve())
    # a re-index with nothing new; a new index in int8, the folder's int8 tower having
    # passed its check at export
    proc = light(work, "--index", str(home), "index", str(photos))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (folder / "visual.int8.onnx").is_file()
    proc = light(work, "--index", str(work / "int8-index"), "index", str(photos), "--model",
                 str(folder), "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout[proc.stdout.index("{") :])["precision"] == "int8"
    assert attempts(work) == []


def test_what_needs_torch_says_so_in_one_line(work, photos, folder):
    home = str(work / "refused")
    cases = [
        ("--index", home, "index", str(photos), "--model", "pixfind-tiny", "--pretrained", "none"),
        ("models", "export", "pixfind-tiny", "--pretrained", "none", "--out", str(work / "x")),
        ("--index", home, "index", str(photos), "--model", str(folder), "--runtime", "torch"),
        ("train", str(photos), "--out", str(work / "trained")),
    ]
    for args in cases:
        proc = light(work, *args)
        # one line says what went wrong (`index` names the index it works on first)
        lines = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith("index:")]
        assert proc.returncode == 1 and len(lines) == 1, (args, proc.stderr[-3000:])
        assert lines[0].startswith("error: ")
        assert "pixfind[torch]" in lines[0] or "ONNX Runtime only" in lines[0], lines[0]
    attempts(work)


def test_a_cached_export_indexes_without_building_the_torch_model(
    work, photos, tmp_path, monkeypatch
):
    """With torch installed: once an open_clip model's checked export is in the model cache,
    an indexing run loads it and never builds the torch model (about 6 s for ViT-B-32)."""
    from pixfind.indexer.pipeline import IndexOptions, run_index
    from pixfind.search import encoder as encoder_module
    from pixfind.search import onnxrt
    from pixfind.search.engine import Searcher
    from pixfind.search.query import Query
    from pixfind.search.types import EncoderSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIXFIND_RUNTIME", "auto")
    spec, options = EncoderSpec("pixfind-tiny", None), IndexOptions(roots=[photos], workers=0)
    encoder_module._load_cached.cache_clear()
    onnxrt.loaded.clear()
    first = run_index(tmp_path / "a", options, spec, "cpu")  # builds the model, exports
    built = []
    real = encoder_module._create
    monkeypatch.setattr(encoder_module, "_create", lambda *a: built.append(a) or real(*a))
    encoder_module._load_cached.cache_clear()
    onnxrt.loaded.clear()
    second = run_index(tmp_path / "b", options, spec, "cpu")
    assert built == [] and first.precision == second.precision == "int8"
    # an image query (and the server, which loads the same) on the export too
    photo = sorted(photos.iterdir())[0]
    hits = Searcher(tmp_path / "b").run(Query.image(str(photo), k=3)).hits
    assert hits and built == []
    query = Query.text(QUERIES[0], k=8, mode="vector")
    hits = [Searcher(tmp_path / h, runtime="torch").run(query).hits for h in "ab"]
    assert [(h.path, round(h.score, 6)) for h in hits[0]] == [
        (h.path, round(h.score, 6)) for h in hits[1]
    ]
    # --runtime torch still builds it
    run_index(tmp_path / "c", options, spec, "cpu", runtime="torch")
    assert len(built) == 1
    # the second run recorded the export by identity: a run that adds photos to that index
    # then imports neither torch nor open_clip
    extra = tmp_path / "extra"
    for i in range(3):
        make_picture(extra / f"x{i}.jpg", seed=900 + i)
    attempts(work)
    proc = light(work, "--index", str(tmp_path / "b"), "index", str(photos), str(extra),
                 "--json", cache=tmp_path / "cache")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert report["added"] == 3 and report["precision"] == "int8"
    assert attempts(work) == []
    assert "onnx" in snapshot.read_meta(tmp_path / "b" / INDEX_DIR)["recipe"]  # cold queries
    encoder_module._load_cached.cache_clear()
    onnxrt.loaded.clear()


def test_an_export_from_before_model_folders_is_upgraded_once(photos, tmp_path, monkeypatch):
    """An export made by an earlier pixfind (no preprocessing or vocabulary beside the towers)
    is completed by the next run that builds the torch model; the run after it builds none."""
    from pixfind.indexer.pipeline import IndexOptions, run_index
    from pixfind.search import encoder as encoder_module
    from pixfind.search import onnxrt
    from pixfind.search.types import EncoderSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIXFIND_RUNTIME", "auto")
    spec, options = EncoderSpec("pixfind-tiny", None), IndexOptions(roots=[photos], workers=0)

    def index(name: str) -> list:
        built = []
        real = encoder_module._create
        monkeypatch.setattr(encoder_module, "_create", lambda *a: built.append(a) or real(*a))
        encoder_module._load_cached.cache_clear()
        onnxrt.loaded.clear()
        assert run_index(tmp_path / name, options, spec, "cpu").precision == "int8"
        monkeypatch.setattr(encoder_module, "_create", real)
        return built

    assert len(index("a")) == 1  # builds the model, exports
    manifests = list((tmp_path / "cache").rglob(onnxrt.MANIFEST))
    assert manifests
    for manifest in manifests:  # as an export before model folders left it
        meta = json.loads(manifest.read_text())
        if "preprocess" in meta:
            meta.pop("preprocess"), meta.pop("tokenizer", None)
            manifest.write_text(json.dumps(meta))
            (manifest.parent / onnxrt.VOCAB).unlink()
    for record in (tmp_path / "cache").rglob("identities"):
        shutil.rmtree(record)
    assert onnxrt.model_folder(manifests[0].parent) is None
    assert len(index("b")) == 1  # the torch model once more, which completes the export
    assert onnxrt.model_folder(manifests[0].parent) is not None
    assert index("c") == []
