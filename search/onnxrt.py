"""The ONNX Runtime towers: a model's image and text encoders run without torch on the CPU.

ONNX Runtime runs a CLIP tower on two cores faster than torch eager (bench/runtime.py), and
it imports in a fraction of torch's time, so a cold text query that finds an exported text
tower needs numpy, onnxruntime, FAISS and pyarrow only. The towers are exported once per
model by search/onnxexport.py (which needs torch and open_clip) into the model cache::

    $XDG_CACHE_HOME/pixfind/onnx/<key>/  visual.onnx  textual.onnx  export.json

``<key>`` hashes the weights' identity (the checkpoint file's fingerprint, or the seeded
random weights' architecture and torch version), the open_clip config and version, and
pixfind's export format. ``export.json`` records the parity check against torch; towers
whose check failed are never used. This module imports neither torch nor open_clip.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .settings import get_settings, model_cache_dir

EXPORT_FORMAT = 1
MANIFEST = "export.json"
VISUAL, TEXTUAL = "visual.onnx", "textual.onnx"
VOCAB = "bpe_simple_vocab_16e6.txt.gz"  # search/tokenizer.py's VOCAB_FILE, copied at export
PARITY_MIN = 0.9999  # least cosine between an ONNX and a torch vector the export accepts
RUNTIMES = ("auto", "torch", "onnx")


def installed(name: str) -> bool:
    """Whether a package can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return False


def onnx_installed() -> bool:
    return installed("onnxruntime")


def choose_runtime(runtime: str | None, device: str) -> str:
    """``torch`` or ``onnx`` for a runtime asked for (None: PIXFIND_RUNTIME) on a device:
    auto is ONNX on the CPU where onnxruntime is installed, torch elsewhere (CUDA, MPS)."""
    runtime = (runtime or get_settings().runtime).lower()
    if runtime not in RUNTIMES:
        from .errors import UnknownModel

        raise UnknownModel(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if runtime == "torch" or device != "cpu" or not onnx_installed():
        return "torch"
    return "onnx"


def export_root() -> Path:
    return model_cache_dir() / "onnx"


def read_manifest(directory: Path) -> dict | None:
    try:
        meta = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT else None


def update_manifest(directory: Path, extra: dict) -> None:
    """Add ``extra`` to an export's manifest (rewritten atomically)."""
    from .atomic import write_json

    write_json(directory / MANIFEST, {**json.loads((directory / MANIFEST).read_text()), **extra})


@functools.cache
def warn_once(message: str) -> None:
    print(f"pixfind: {message}", file=sys.stderr, flush=True)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # idle threads that spin steal the cores from the decoding workers (indexing) and from
    # other processes (a query): passive, as OMP_WAIT_POLICY for torch (search/settings.py)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


class OnnxTextTower:
    """A model's text encoder in ONNX Runtime: texts -> L2-normalised float32 vectors.

    ``kind`` "plain" towers take tokens cut after the longest text's end-of-text token (the
    causal mask makes later positions irrelevant, as in search/cold/texttower.py); "full"
    towers take the whole context."""

    def __init__(
        self, path: Path, kind: str, context_length: int, dim: int, vocab: Path | None = None
    ):
        from .tokenizer import clip_tokenizer

        self.path, self.kind, self.dim = Path(path), kind, int(dim)
        # the export's own copy of the vocabulary where it has one (a model folder: no
        # open_clip installed), else open_clip's
        self.tokenizer = clip_tokenizer(int(context_length), vocab and Path(vocab))
        self._sessions: dict[int, object] = {}

    @classmethod
    def load(cls, entry: dict | None) -> OnnxTextTower | None:
        """The tower an export entry (``text_entry``) describes, or None when it is missing,
        changed since, or onnxruntime is not installed."""
        if not entry or entry.get("format") != EXPORT_FORMAT or not onnx_installed():
            return None
        if entry.get("kind") not in ("plain", "full"):
            return None
        path = Path(entry["path"])
        try:
            if path.stat().st_size != entry["size"]:
                return None
        except OSError:
            return None
        vocab = entry.get("vocab")
        if vocab and not Path(vocab).is_file():
            return None
        return cls(path, entry["kind"], entry["context_length"], entry["dim"], vocab)

    def session(self, n_texts: int):
        # one thread for one query: a query is a few tokens, and threads that wait for
        # each other cost more than they give on a busy machine (as threads_for in texttower)
        threads = 1 if n_texts == 1 else default_threads()
        if threads not in self._sessions:
            self._sessions[threads] = _session(self.path, threads)
        return self._sessions[threads]

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        session = self.session(len(texts))
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size]))
            if self.kind == "plain":
                tokens = tokens[:, : int(tokens.argmax(axis=-1).max()) + 1]
            out.append(_normalise(session.run(None, {"tokens": tokens})[0]))
        return np.concatenate(out)


class OnnxImageTower:
    """A model's image encoder in ONNX Runtime: preprocessed pixels (N, 3, H, W) -> vectors."""

    def __init__(self, path: Path, dim: int, threads: int | None = None):
        self.path, self.dim = Path(path), int(dim)
        self.session = _session(self.path, threads or default_threads())

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, np.float32)
        return _normalise(self.session.run(None, {"pixels": pixels})[0])


class OnnxTowers:
    """Both towers of one export, with the manifest that vouches for them; each tower's
    session is created when first used (a text query never loads the image tower)."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory, self.manifest = directory, manifest

    @functools.cached_property
    def image(self) -> OnnxImageTower:
        return OnnxImageTower(self.directory / VISUAL, self.manifest["dim"])

    @functools.cached_property
    def text(self) -> OnnxTextTower:
        text = self.manifest["text"]
        return OnnxTextTower(
            self.directory / TEXTUAL,
            text["kind"],
            text["context_length"],
            self.manifest["dim"],
            self.vocab,
        )

    @property
    def vocab(self) -> Path | None:
        """The tokenizer's vocabulary copied beside the towers (exports since the model
        folders of `pixfind models export`), else None: open_clip's."""
        path = self.directory / VOCAB
        return path if path.is_file() else None

    def text_entry(self) -> dict:
        """What a query snapshot records to load the text tower without the model."""
        text = self.manifest["text"]
        path = self.directory / TEXTUAL
        return {
            "format": EXPORT_FORMAT,
            "path": str(path),
            "size": path.stat().st_size,
            "kind": text["kind"],
            "context_length": text["context_length"],
            "dim": self.manifest["dim"],
            "key": self.manifest["key"],
            **({"vocab": str(self.vocab)} if self.vocab else {}),
        }


def model_folder(path: str | os.PathLike | None) -> dict | None:
    """The manifest of a self-contained model folder (`pixfind models export`, or an export
    in the model cache): towers that passed their check, with the preprocessing and the
    tokenizer's vocabulary beside them, so that it runs without torch or open_clip."""
    if not path:
        return None
    directory = Path(path).expanduser()
    if not (directory / MANIFEST).is_file():
        return None
    meta = read_manifest(directory)
    if meta is None or not meta.get("passed") or "preprocess" not in meta:
        return None
    if not all((directory / name).is_file() for name in (VISUAL, TEXTUAL, VOCAB)):
        return None
    return meta


def load_towers(directory: Path) -> OnnxTowers | None:
    """The towers exported into ``directory`` when their parity check passed, else None."""
    meta = read_manifest(directory)
    if meta is None or not meta.get("passed") or not onnx_installed():
        return None
    if not all((directory / name).is_file() for name in (VISUAL, TEXTUAL)):
        return None
    return OnnxTowers(directory, meta)


# the exports loaded in this process, by the model identity (search/models.spec_identity)
# they encode for: what ``text_recipe`` puts in a query snapshot
loaded: dict[str, OnnxTowers] = {}
