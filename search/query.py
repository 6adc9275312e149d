"""Query algebra, as rclip does it: pure vector math on unit vectors, no model in here.

``pixfind search "dog" --add "2:beach" --subtract "people" --add-image ./x.jpg`` becomes the
terms (+1 dog) (+2 beach) (-1 people) (+1 image x.jpg); each term's vector is unit-normalised,
scaled by its signed weight, summed, and the sum normalised again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import BadQuery

_WEIGHT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*:(.*)$", re.S)


@dataclass(frozen=True)
class Term:
    kind: str  # "text" or "image"
    value: str  # the words, or an image path
    weight: float = 1.0  # negative: subtract


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
