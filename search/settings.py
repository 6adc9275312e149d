"""Every ``PIXFIND_*`` environment variable, read in this one place.

A frozen dataclass rather than pydantic-settings' ``BaseSettings``: importing pydantic costs
0.25-0.5 s on this project's 2-core machine, a quarter of the cold ``pixfind search`` budget
(README "Benchmarks"), and these few flat values need no validation library. The server's
settings (api/settings.py) start from the same object. Nothing here changes the environment or
logging; ``quiet_libraries`` does, when a command calls it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .location import is_uri, locate

# the FAISS index (search/index.py): memory budget, exact-search threshold, ANN recall target
MEMORY_BUDGET_MB = 4096.0
FLAT_MAX_ROWS = 50_000
TARGET_RECALL = 0.95
BIG_INDEX_ROWS = 500_000  # from here on the index lives on disk (search/bigindex.py)
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
URL_MAX_MB = 20.0  # an image query given by URL: largest download...
URL_TIMEOUT = 15.0  # ...and seconds for all of it


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name, default))
    except ValueError:
        return default


def _flag(env: Mapping[str, str], name: str) -> bool:
    """On unless set to 0 (the switches exist to measure a baseline)."""
    return env.get(name, "1") != "0"


@dataclass(frozen=True)
class Settings:
    home: Path | None = None  # PIXFIND_HOME: the default index directory
    index: str | None = None  # PIXFIND_INDEX: the index the CLI and server use (or a URI)
    # PIXFIND_STORAGE_OPTIONS: an index on object storage's options, JSON or k=v,k=v (read
    # by search/location.py, which says what is wrong with them only where they are used)
    storage_options: str | None = None
    log: str = "critical"  # PIXFIND_LOG: level of the libraries' own log lines
    fast_path: bool = True  # PIXFIND_FAST_PATH=0: no cold path, no query snapshot
    text_tower: bool = True  # PIXFIND_TEXT_TOWER=0: text queries load the full model
    runtime: str = "auto"  # PIXFIND_RUNTIME: auto | torch | onnx (search/onnxrt.py)
    precision: str = "auto"  # PIXFIND_PRECISION: auto | fp32 | int8 (search/quantize.py)
    index_kind: str = "auto"  # PIXFIND_INDEX_KIND: auto | flat | ivfpq | hnsw | ivfpq-disk
    index_memory_mb: float = MEMORY_BUDGET_MB  # PIXFIND_INDEX_MEMORY_MB
    flat_max_rows: int = FLAT_MAX_ROWS  # PIXFIND_FLAT_MAX_ROWS
    target_recall: float = TARGET_RECALL  # PIXFIND_TARGET_RECALL
    big_index_rows: int = BIG_INDEX_ROWS  # PIXFIND_BIG_INDEX_ROWS
    token: str | None = None  # PIXFIND_TOKEN: bearer token of the HTTP API
    device: str = "auto"  # PIXFIND_DEVICE: the server's device
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES  # PIXFIND_MAX_UPLOAD_BYTES
    cors_origins: tuple[str, ...] = ()  # PIXFIND_CORS_ORIGINS, comma-separated
    url_max_bytes: int = int(URL_MAX_MB * 1e6)  # PIXFIND_URL_MAX_MB
    url_timeout: float = URL_TIMEOUT  # PIXFIND_URL_TIMEOUT (seconds)
    hf_offline: bool = False  # HF_HUB_OFFLINE=1 (Hugging Face's own switch, for messages)
    tessdata: str | None = None  # TESSDATA_PREFIX (Tesseract's own): its language data, for OCR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = env.get("PIXFIND_HOME")
        return cls(
            home=Path(home).expanduser() if home else None,
            index=env.get("PIXFIND_INDEX") or None,
            storage_options=env.get("PIXFIND_STORAGE_OPTIONS") or None,
            log=env.get("PIXFIND_LOG", "critical"),
            fast_path=_flag(env, "PIXFIND_FAST_PATH"),
            text_tower=_flag(env, "PIXFIND_TEXT_TOWER"),
            runtime=(env.get("PIXFIND_RUNTIME") or "auto").lower(),
            precision=(env.get("PIXFIND_PRECISION") or "auto").lower(),
            index_kind=(env.get("PIXFIND_INDEX_KIND") or "auto").lower(),
            index_memory_mb=_number(env, "PIXFIND_INDEX_MEMORY_MB", MEMORY_BUDGET_MB),
            flat_max_rows=int(_number(env, "PIXFIND_FLAT_MAX_ROWS", FLAT_MAX_ROWS)),
            target_recall=_number(env, "PIXFIND_TARGET_RECALL", TARGET_RECALL),
            big_index_rows=int(_number(env, "PIXFIND_BIG_INDEX_ROWS", BIG_INDEX_ROWS)),
            token=env.get("PIXFIND_TOKEN") or None,
            device=env.get("PIXFIND_DEVICE", "auto"),
            max_upload_bytes=int(
                _number(env, "PIXFIND_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)
            ),
            cors_origins=tuple(o for o in env.get("PIXFIND_CORS_ORIGINS", "").split(",") if o),
            url_max_bytes=int(max(_number(env, "PIXFIND_URL_MAX_MB", URL_MAX_MB), 0.001) * 1e6),
            url_timeout=max(_number(env, "PIXFIND_URL_TIMEOUT", URL_TIMEOUT), 0.1),
            hf_offline=env.get("HF_HUB_OFFLINE") == "1",
            tessdata=env.get("TESSDATA_PREFIX") or None,
        )


def get_settings() -> Settings:
    """The settings as the environment says now (cheap; not cached, so a test or a caller that
    sets a variable sees it take effect)."""
    return Settings.from_env()


def default_home() -> Path:
    """``$PIXFIND_HOME``, else ``$XDG_DATA_HOME/pixfind``, else ``~/.local/share/pixfind``."""
    home = get_settings().home
    if home:
        return home
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "pixfind"


def model_cache_dir() -> Path:
    """pixfind's model cache (ONNX exports): ``$XDG_CACHE_HOME/pixfind``, else
    ``~/.cache/pixfind``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pixfind"


def resolve_home(index: str | os.PathLike | None, storage_options=()) -> Path:
    """The local folder of ``index``: the folder itself, or the cache folder of an index on
    object storage (search/location.py)."""
    if index and is_uri(index):
        return locate(index, storage_options).home
    return (Path(index).expanduser() if index else default_home()).resolve()


def quiet_libraries(level: str | None = None) -> None:
    """Called by the CLI and the server at start, never at import: open_clip, lancedb and lance
    log chatty warnings and errors that pixfind reports itself as one clear line
    (``PIXFIND_LOG=debug`` shows theirs)."""
    level = (level or get_settings().log).upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.CRITICAL), format="%(name)s: %(message)s"
    )
    if level != "DEBUG":
        os.environ.setdefault("LANCE_LOG", "error")  # pylance
        os.environ.setdefault("LANCEDB_LOG", "error")  # lancedb's own Rust logger (0.40+)
        logging.getLogger("lancedb").setLevel(logging.ERROR)


def passive_omp_threads() -> None:
    """Indexing only: decoding workers and the encoder's OpenMP threads share the cores, and
    threads that spin while waiting steal them from the decoder (ViT-B-32, 2 cores: 67% -> 74%
    of the model-only ceiling on phone-size JPEGs, bench/indexing.py). Takes effect only before
    torch loads OpenMP. Not for training: its many small ops run 1.7x slower with it."""
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
