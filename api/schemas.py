"""Response models: what the JSON endpoints return (and what /docs shows)."""

from __future__ import annotations

from pixfind.search.types import display_path
from pydantic import BaseModel, Field


def safe_text(text: str) -> str:
    """Text that can always be sent as UTF-8 JSON: undecodable bytes of file names (surrogate
    escapes) and lone surrogates become U+FFFD."""
    try:
        return display_path(text)
    except UnicodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


class Result(BaseModel):
    id: str = Field(description="Opaque image id (a decimal string: it exceeds 2**53)")
    rank: int
    path: str = Field(description="Where the file is on the server's disk")
    score: float = Field(
        description="Cosine similarity to the query, in [-1, 1]; in hybrid mode plus the "
        "keyword part; in keyword mode the BM25 score"
    )
    width: int
    height: int
    thumbnail_url: str
    image_url: str
    vector_score: float | None = Field(None, description="The vector part (hybrid mode)")
    keyword_score: float | None = Field(None, description="BM25 score, where words matched")
    matched_fields: list[str] = Field(
        default_factory=list, description="name, folder, camera, ocr, caption: where they did"
    )
    matched_words: list[str] = Field(
        default_factory=list, description="The photo's words that matched, as written there"
    )


class SearchResponse(BaseModel):
    query: str = Field(description="The text, the upload's name, or the id searched for")
    took_ms: float
    offset: int
    k: int
    next_offset: int | None = Field(description="Offset of the next page; null when no more")
    mode: str = Field("vector", description="How it was ranked: hybrid, vector or keyword")
    results: list[Result]


class StatusResponse(BaseModel):
    images: int
    model: str
    dim: int
    last_update: str | None = Field(description="ISO 8601 time of the latest indexed image")
    version: int = Field(description="Table version; changes whenever the index is written")
    auth: bool = Field(description="Whether a bearer token is required")
    max_upload_bytes: int
    max_k: int


class Health(BaseModel):
    status: str


class Login(BaseModel):
    token: str = Field(max_length=1000)


class ErrorResponse(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. not_found, payload_too_large")
    detail: str = Field(description="What went wrong and what to do")


class DuplicateCopy(BaseModel):
    id: str = Field(description="Opaque image id (a decimal string)")
    path: str
    width: int
    height: int
    size: int = Field(description="File size in bytes")
    taken_at: float = Field(description="EXIF date, else the file's mtime (POSIX seconds)")
    taken_source: str = Field(description="exif or mtime")
    file_type: str
    metadata: int = Field(description="How many of EXIF date, camera, GPS, caption it has")
    best: bool = Field(description="The copy to keep, by the `keep` rule")
    same_file: bool = Field(description="Byte-identical to the best copy")
    distance: int = Field(description="Perceptual-hash bits from the best copy; -1: unknown")
    thumbnail_url: str
    image_url: str


class DuplicateGroup(BaseModel):
    kind: str = Field(description="exact (all byte-identical) or near")
    copies: list[DuplicateCopy] = Field(description="Best copy first")


class DuplicatesResponse(BaseModel):
    threshold: int
    keep: str
    photos: int = Field(description="Photos compared (after the filters)")
    unhashed: int = Field(description="Photos without perceptual hashes: exact copies only")
    copies: int = Field(description="Photos, in all groups, that are not the best copy")
    total_groups: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null when no more")
    groups: list[DuplicateGroup]
