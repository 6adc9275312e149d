"""The query value, and query algebra as rclip does it: pure vector math, no model in here.

Every caller (CLI, HTTP API, Python API) describes a search as a ``Query`` and hands it to
``Searcher.run`` (search/engine.py), which picks the path that answers it.

``pixfind search "dog" --add "2:beach" --subtract "people" --add-image ./x.jpg`` becomes the
terms (+1 dog) (+2 beach) (-1 people) (+1 image x.jpg); each term's vector is unit-normalised,
scaled by its signed weight, summed, and the sum normalised again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from .errors import BadQuery
from .location import is_uri
from .types import Filters, is_glob

MAX_K = 10_000
MAX_QUERY_CHARS = 1_000
SORTS = ("score", "date")
MODES = ("hybrid", "vector", "keyword")

_WEIGHT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*:(.*)$", re.S)


@dataclass(frozen=True)
class Term:
    kind: str  # "text" or "image"
    value: str  # the words, or an image path
    weight: float = 1.0  # negative: subtract


@dataclass(frozen=True)
class Query:
    """One search: what to look for (text/image terms, an indexed image's id, or an uploaded
    image), which photos may match, and which page of the ranking to return.

    ``caption_weight`` None: the searcher's default (0.7); it counts only when a text term
    leads. ``sort`` orders the top-k by ``score`` or by ``date`` taken (newest first)."""

    terms: tuple[Term, ...] = ()
    similar_to: int | None = None  # "more like this" for an indexed image (left out itself)
    upload: bytes | None = field(default=None, repr=False)  # an image sent by a client
    filters: Filters | None = None
    k: int = 10
    offset: int = 0
    min_score: float | None = None
    sort: str = "score"
    caption_weight: float | None = None
    mode: str | None = None  # None: hybrid where the index has a keyword index, else vector

    def __post_init__(self) -> None:
        sources = bool(self.terms) + (self.similar_to is not None) + (self.upload is not None)
        if sources != 1:
            raise BadQuery("a query needs exactly one of: terms, an image id, an uploaded image")
        if not 1 <= self.k <= MAX_K:
            raise BadQuery(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.offset < 0:
            raise BadQuery(f"offset must be 0 or more, got {self.offset}")
        if self.sort not in SORTS:
            raise BadQuery(f"sort must be one of {', '.join(SORTS)}, got {self.sort!r}")
        if self.mode is not None and self.mode not in MODES:
            raise BadQuery(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        weight = self.caption_weight
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise BadQuery(f"caption weight must be between 0 and 1, got {weight}")

    @classmethod
    def text(cls, text: str, **options) -> Query:
        return cls(terms=(Term("text", text),), **options)

    @classmethod
    def image(cls, path: str, **options) -> Query:
        return cls(terms=(Term("image", str(path)),), **options)

    @property
    def plain_text(self) -> str | None:
        """The words of a query that is a single unweighted text term, else None."""
        if len(self.terms) == 1 and self.terms[0].kind == "text" and self.terms[0].weight == 1.0:
            return self.terms[0].value
        return None

    @property
    def keyword_text(self) -> str:
        """What the keyword index is asked: the words of the positive text terms."""
        return " ".join(t.value for t in self.terms if t.kind == "text" and t.weight > 0)

    @property
    def texty(self) -> bool:
        """Whether a text term leads: only then do captions count."""
        return any(t.kind == "text" and t.weight > 0 for t in self.terms)


def split_weight(spec: str) -> tuple[float, str]:
    """``"2:beach"`` -> (2.0, "beach"); ``"beach"`` -> (1.0, "beach");
    ``"0.5:./x.jpg"`` -> (0.5, "./x.jpg"). A colon not preceded by a number is kept as text."""
    match = _WEIGHT.match(spec)
    if not match:
        return 1.0, spec.strip()
    return float(match.group(1)), match.group(2).strip()


def make_terms(
    query: str | None = None,
    image: str | None = None,
    add: Sequence[str] = (),
    subtract: Sequence[str] = (),
    add_image: Sequence[str] = (),
    subtract_image: Sequence[str] = (),
) -> list[Term]:
    """The terms of a query, in order; weights are read from ``W:`` prefixes."""
    terms: list[Term] = []

    def put(kind: str, spec: str, sign: float) -> None:
        weight, value = split_weight(spec)
        if not value:
            raise BadQuery(f"empty {'text' if kind == 'text' else 'image path'} in {spec!r}")
        if weight == 0:
            raise BadQuery(f"weight 0 in {spec!r} has no effect; use a non-zero weight")
        terms.append(Term(kind, value, sign * weight))

    if query is not None:
        put("text", query, 1.0)
    if image is not None:
        put("image", image, 1.0)
    for spec in add:
        put("text", spec, 1.0)
    for spec in subtract:
        put("text", spec, -1.0)
    for spec in add_image:
        put("image", spec, 1.0)
    for spec in subtract_image:
        put("image", spec, -1.0)
    if not terms:
        raise BadQuery("nothing to search for: give a text query or an image")
    if all(t.weight < 0 for t in terms):
        raise BadQuery("a query needs at least one positive term, not only subtractions")
    return terms


def normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm < 1e-12:
        raise BadQuery("the query terms cancel out (their weighted sum is zero)")
    return (v / norm).astype(np.float32)


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Normalised weighted sum of unit-normalised vectors."""
    if len(vectors) != len(weights) or not len(vectors):
        raise BadQuery("combine needs one weight per vector, and at least one vector")
    total = np.zeros(np.asarray(vectors[0]).shape[-1], np.float32)
    for v, w in zip(vectors, weights, strict=True):
        total += float(w) * normalize(v)
    return normalize(total)


def day_bound(text: str, end: bool) -> float:
    """``2024-05-01`` (the whole day: an end bound includes it) or ``2024-05-01T12:00`` ->
    POSIX seconds, in local time."""
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"not a date: {text!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    if end and len(text) <= 10:
        stamp += timedelta(days=1) - timedelta(microseconds=1)
    return stamp.timestamp()


def parse_filters(
    folder: str | None = None,
    after: str | None = None,
    before: str | None = None,
    min_width: int = 0,
    min_height: int = 0,
    types: Sequence[str] = (),
) -> Filters:
    """Filters from what a user types: a folder (made absolute) or a path glob, dates as
    YYYY-MM-DD[THH:MM] (both bounds inclusive), file types repeated or comma-separated."""
    if folder and not is_glob(folder) and not is_uri(folder):  # s3://BUCKET/PREFIX as given
        folder = os.path.abspath(os.path.expanduser(folder))
    return Filters(
        folder=folder or None,
        after=day_bound(after, end=False) if after else None,
        before=day_bound(before, end=True) if before else None,
        min_width=min_width,
        min_height=min_height,
        file_types=tuple(t for spec in types or () for t in spec.split(",") if t),
    )
