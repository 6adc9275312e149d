"""Frozen dataclasses that cross package lines (search <-> indexer <-> api <-> cli)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    id: int
    path: str
    width: int = 0
    height: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        out = {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "id": self.id,
            "path": self.path,
            "width": self.width,
            "height": self.height,
        }
        out.update(self.extra)
        return out
