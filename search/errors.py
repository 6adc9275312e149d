"""Typed errors. Library code raises them; only cli.py and api/ turn them into exits."""

from __future__ import annotations


class PixfindError(Exception):
    """Base class: the message says what went wrong and what to do."""


class UnknownModel(PixfindError):
    """A model name, pretrained tag or checkpoint path that open_clip can't resolve."""


class IndexMismatch(PixfindError):
    """The index was built with another model (or schema) than the one asked for."""


class EmptyIndex(PixfindError):
    """The index holds no images yet."""


class NoIndex(PixfindError):
    """No index exists at the given location."""


class BadQuery(PixfindError):
    """A query that can't be run: empty text, unreadable image, bad k."""


class UnsupportedImage(BadQuery):
    """An image query (an upload) that is not a decodable image."""


class IndexLocked(PixfindError):
    """Another process is writing to this index."""


class NotFound(PixfindError):
    """An id or path that is not in the index."""
