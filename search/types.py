"""Frozen dataclasses that cross package lines (search <-> indexer <-> api <-> cli)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime


@dataclass(frozen=True)
class EncoderSpec:
    """Which open_clip model to use.

    ``model`` is an open_clip architecture name (``ViT-B-32``) or a directory holding
    ``open_clip_config.json`` + weights (a model pixfind trained, or any exported one).
    ``pretrained`` is an open_clip tag (``laion2b_s34b_b79k``), a local checkpoint file
    (.pt/.bin/.safetensors), a model directory, or None for random weights (tests only).
    """

    model: str
    pretrained: str | None = None

    @property
    def label(self) -> str:
        return f"{self.model}/{self.pretrained}" if self.pretrained else self.model


@dataclass(frozen=True)
class ModelInfo:
    """What an index records about the encoder that filled it (checked on every open)."""

    model: str
    pretrained: str | None
    identity: str  # tag spec, or a fingerprint of local weights: equal identity == same vectors
    dim: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"

    @property
    def label(self) -> str:
        return f"{self.model}/{self.pretrained}" if self.pretrained else self.model

    @property
    def spec(self) -> EncoderSpec:
        return EncoderSpec(self.model, self.pretrained)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["mean"] = tuple(known.get("mean", ()))
        known["std"] = tuple(known.get("std", ()))
        return cls(**known)


@dataclass(frozen=True)
class OcrText:
    """What OCR read in one photo (indexer/ocr.py), stored beside its keywords."""

    text: str  # the words read, space-separated ("" none)
    lang: str  # the Tesseract languages it was read with ("eng", "eng+deu")
    seconds: float = 0.0  # decoding at OCR size + Tesseract, in the worker


@dataclass(frozen=True)
class FileStat:
    """A file found by the scanner: what's needed to decide whether to (re)embed it."""

    path: str  # absolute
    mtime: float
    size: int


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image (a row of the store, without its vector)."""

    id: int
    path: str
    mtime: float
    size: int
    width: int
    height: int
    content_hash: str
    indexed_at: float
    file_type: str = ""  # jpeg, png, webp... (decoded format, not the extension)
    taken_at: float = 0.0  # EXIF DateTimeOriginal, else the file's mtime (POSIX seconds)
    taken_source: str = "mtime"  # "exif" or "mtime"
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    captions: tuple[str, ...] = ()  # sidecar, captions.jsonl and embedded metadata captions


@dataclass(frozen=True)
class Filters:
    """Which photos a search may return; applied before ranking so top-k stays exact.

    ``folder`` is a folder prefix (absolute) or a glob matched against the full path
    (``*/trips/*``); ``after``/``before`` bound taken_at (POSIX seconds, inclusive);
    ``file_types`` are decoded formats (``jpeg``, ``png``...).
    """

    folder: str | None = None
    after: float | None = None
    before: float | None = None
    min_width: int = 0
    min_height: int = 0
    file_types: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.folder
            or self.after is not None
            or self.before is not None
            or self.min_width
            or self.min_height
            or self.file_types
        )


@dataclass(frozen=True)
class CaptionMatch:
    """How a caption counted in a captioned photo's score:
    score = (1 - weight) * image_score + weight * scaled."""

    text: str  # the photo's caption that matched the query best
    cosine: float  # its raw text-text similarity to the query
    scaled: float  # the same on the image scores' scale (see ranking.calibrate_captions)
    weight: float  # the caption weight of the query


@dataclass(frozen=True)
class KeywordMatch:
    """How the keyword index counted in a hit's score (search/hybrid.py): ``score`` is the
    BM25 score, ``scaled`` it over the query's best, ``vector_score`` the vector part."""

    score: float
    rank: int  # in the keyword ranking, from 1
    scaled: float
    vector_score: float | None  # None in keyword mode
    fields: tuple[str, ...] = ()  # name, folder, caption, camera, text
    words: tuple[str, ...] = ()  # the photo's words that matched, as written there


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    id: int
    path: str
    width: int = 0
    height: int = 0
    image_score: float = 0.0  # the image part of the score (cosine to the query)
    taken_at: float | None = None  # when the photo was taken (POSIX seconds), where known
    file_type: str = ""
    caption: CaptionMatch | None = None  # where a caption counted in the score
    keyword: KeywordMatch | None = None  # where the keyword index counted

    def to_dict(self) -> dict:
        out = {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "id": self.id,
            "path": display_path(self.path),  # JSON must be valid UTF-8
            "width": self.width,
            "height": self.height,
            "image_score": round(self.image_score, 6),
            "taken_at": _iso(self.taken_at),
            "file_type": self.file_type,
        }
        if self.caption is not None:
            out.update(
                caption_score=round(self.caption.cosine, 6),
                caption_scaled=round(self.caption.scaled, 6),
                caption=self.caption.text,
                caption_weight=self.caption.weight,
            )
        if self.keyword is not None:
            kw = self.keyword
            out.update(
                keyword_score=round(kw.score, 6),
                keyword_rank=kw.rank,
                vector_score=None if kw.vector_score is None else round(kw.vector_score, 6),
                matched_fields=list(kw.fields),
                matched_words=list(kw.words),
            )
        return out


def _iso(stamp: float | None) -> str | None:
    if not stamp:
        return None
    try:
        return datetime.fromtimestamp(stamp).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None


def display_path(path: str) -> str:
    """A path safe to print or serialise: undecodable bytes of non-UTF-8 names (kept as
    surrogate escapes, as os.scandir gives them) shown as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def printable_path(path: str) -> str:
    """A path on one line: control characters (a newline in a file name) shown escaped, as
    \\n, \\r, \\t or \\xNN, undecodable bytes as U+FFFD. For people; pipes get --print0."""
    return display_path(path).translate(_CONTROL)


def is_glob(text: str) -> bool:
    """``--folder '*/trips/*'`` is a path glob; ``--folder ~/trips`` a folder."""
    return any(ch in text for ch in "*?[")
