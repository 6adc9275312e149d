"""The LanceDB table: the index's source of truth, one row per image, model spec in its metadata."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IndexMismatch, NoIndex, NotFound, UnusableIndex, backend_errors
from .location import IndexLocation, location_of, shown
from .types import EncoderSpec, Filters, ImageRecord, ModelInfo, OcrText, is_glob

if TYPE_CHECKING:  # pragma: no cover
    # imported where used: a re-index with nothing to do reads the table's name and
    # location from here without loading pyarrow (indexer/run.py)
    import pyarrow as pa

SCHEMA_VERSION = 2  # + keywords, ocr_*, phash*: added in place by `pixfind index`
TABLE = "images"
META_KEY = b"pixfind"
RECORD_COLUMNS = [
    "id",
    "path",
    "mtime",
    "size",
    "width",
    "height",
    "content_hash",
    "indexed_at",
    "file_type",
    "taken_at",
    "taken_source",
    "camera_make",
    "camera_model",
    "gps_lat",
    "gps_lon",
    "captions",
]


def path_id(path: str) -> int:
    """Stable opaque id of an indexed path (63-bit, so it fits int64 and JSON)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def stored_path(path: str) -> tuple[str, bytes | None]:
    """(text for the ``path`` column, raw bytes for ``path_raw`` or None).

    Paths are str with surrogateescape for undecodable bytes (what os.scandir gives). Arrow
    strings must be valid UTF-8, so such a path is stored as readable text with U+FFFD plus
    its exact bytes, which are what it is read back from."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = path.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace"), raw


def real_path(text: str, raw: bytes | None) -> str:
    return raw.decode("utf-8", "surrogateescape") if raw is not None else text


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def schema_for(info: ModelInfo) -> pa.Schema:
    import pyarrow as pa

    meta = {"schema_version": SCHEMA_VERSION, "model": info.to_dict()}
    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("path_raw", pa.binary()),
            pa.field("mtime", pa.float64()),
            pa.field("size", pa.int64()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("content_hash", pa.string()),
            pa.field("indexed_at", pa.float64()),
            pa.field("file_type", pa.string()),
            pa.field("taken_at", pa.float64()),
            pa.field("taken_source", pa.string()),
            pa.field("camera_make", pa.string()),
            pa.field("camera_model", pa.string()),
            pa.field("gps_lat", pa.float64()),
            pa.field("gps_lon", pa.float64()),
            pa.field("captions", pa.list_(pa.string())),
            pa.field("has_caption", pa.bool_()),
            # one text-tower vector per caption, flattened (len = n_captions * dim)
            pa.field("caption_vectors", pa.list_(pa.float32())),
            pa.field("keywords", pa.string()),  # what the full-text index reads
            pa.field("ocr_text", pa.string()),  # text read inside the photo (null: not read)
            pa.field("ocr_lang", pa.string()),  # the OCR's languages (null: not read)
            pa.field("phash", pa.int64()),  # perceptual hashes (search/phash.py)
            pa.field("phash_crop", pa.int64()),
            pa.field("vector", pa.list_(pa.float32(), info.dim)),
        ],
        metadata={META_KEY: json.dumps(meta).encode()},
    )


def rebuild_hint(home: Path, label: str) -> str:
    return (
        f"to rebuild it with {label}, run `pixfind --index {home} index --rebuild "
        f"--model ... PATH...`, or use another --index DIR"
    )


def check_location(home: Path) -> None:
    """Refuse an index location that is a file (``--index`` pointing at a photo, say)."""
    if home.exists() and not home.is_dir():
        msg = "is a file, not an index folder; give --index a folder (it is created when missing)"
        raise UnusableIndex(f"{home} {msg}")


class Store:
    """A pixfind index directory: ``db/`` (LanceDB) + derived artifacts (``faiss/``)."""

    def __init__(self, home: Path, table, info: ModelInfo):
        self.home = home
        self.table = table
        self.info = info

    # -- opening ---------------------------------------------------------------
    @property
    def location(self) -> IndexLocation:
        return location_of(self.home)

    @staticmethod
    def exists(home: Path) -> bool:
        location = location_of(home)
        if location.remote:  # one listing request
            with backend_errors(home, "listing its tables"):
                return TABLE in location.table_names()
        return (home / "db" / f"{TABLE}.lance").is_dir()

    @classmethod
    def require(cls, home: Path) -> None:
        """Raise NoIndex unless an index exists at ``home`` (a local one without importing
        LanceDB)."""
        check_location(home)
        if not cls.exists(home):
            where = shown(home)
            raise NoIndex(
                f"no index at {where}; create one with `pixfind --index {where} index PHOTOS_DIR`"
            )

    @classmethod
    def open(cls, home: Path) -> Store:
        cls.require(home)
        with backend_errors(home, "opening its table"):
            table = location_of(home).connect().open_table(TABLE)
            raw = (table.schema.metadata or {}).get(META_KEY)
        if not raw:
            raise IndexMismatch(f"{home} is not a pixfind index (no pixfind metadata)")
        meta = json.loads(raw)
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise IndexMismatch(
                f"index at {home} has schema version {meta.get('schema_version')}, this pixfind "
                f"reads version {SCHEMA_VERSION}; {rebuild_hint(home, 'this version')}"
            )
        return cls(home, table, ModelInfo.from_dict(meta["model"]))

    @classmethod
    def create(cls, home: Path, info: ModelInfo, overwrite: bool = False) -> Store:
        check_location(home)
        with backend_errors(home, "creating its table"):
            home.mkdir(parents=True, exist_ok=True)
            if overwrite:
                shutil.rmtree(home / "faiss", ignore_errors=True)
            db = location_of(home).connect()
            table = db.create_table(
                TABLE, schema=schema_for(info), mode="overwrite" if overwrite else "create"
            )
        return cls(home, table, info)

    def check_model(self, info: ModelInfo) -> None:
        """Refuse to mix vectors of two models in one index."""
        if info.identity != self.info.identity or info.dim != self.info.dim:
            raise IndexMismatch(
                f"the index at {self.home} was built with {self.info.label} "
                f"({self.info.dim}-d) but {info.label} ({info.dim}-d) was asked for; "
                f"search it with the model it was built with (omit --model), or "
                f"{rebuild_hint(self.home, info.label)}"
            )

    def check_spec(self, spec: EncoderSpec) -> EncoderSpec:
        """Refuse another model by its spec alone, before any weights are loaded (an offline
        machine would otherwise fail on the download instead of saying what is wrong)."""
        from .models import resolve_spec, spec_identity

        resolved = resolve_spec(spec.model, spec.pretrained)
        if spec_identity(resolved) != self.info.identity:
            raise IndexMismatch(
                f"the index at {self.home} was built with {self.info.label} but "
                f"{resolved.label} was asked for; use it without --model/--pretrained (it "
                f"remembers its model), or {rebuild_hint(self.home, resolved.label)}"
            )
        return resolved

    # -- reading ---------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.table.version)

    def count(self) -> int:
        with backend_errors(self.home, "counting its rows"):
            return int(self.table.count_rows())

    def _scan(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        with backend_errors(self.home, "reading its table"):
            query = self.table.search().select(list(columns))
            if where:
                query = query.where(where)
            return query.to_arrow()

    def file_states(self) -> dict[str, tuple[float, int]]:
        """path -> (mtime, size) of every indexed file, for incremental planning."""
        t = self._scan(["path", "path_raw", "mtime", "size"])
        paths = _real_paths(t)
        return dict(
            zip(paths, zip(t["mtime"].to_pylist(), t["size"].to_pylist(), strict=True), strict=True)
        )

    def known_hashes(self) -> set[str]:
        """Every content hash in the index: one scan per run, so batches look up moves in
        memory and only fetch vectors when a batch really holds known content."""
        t = self._scan(["content_hash"])
        return set(t["content_hash"].to_pylist())

    def rows_by_hash(self, hashes: Iterable[str]) -> dict[str, tuple[str, np.ndarray]]:
        """content_hash -> (a path holding it, its vector): how moves and renames are found."""
        hashes = sorted(set(hashes))
        out: dict[str, tuple[str, np.ndarray]] = {}
        for start in range(0, len(hashes), 500):
            chunk = ",".join(_sql_str(h) for h in hashes[start : start + 500])
            t = self._scan(
                ["content_hash", "path", "path_raw", "vector"], f"content_hash IN ({chunk})"
            )
            vecs = _vectors(t)
            for h, p, v in zip(t["content_hash"].to_pylist(), _real_paths(t), vecs, strict=True):
                out[h] = (p, v)
        return out

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, vectors float32 (n, dim)) of every row."""
        ids, vectors, _ = self.index_rows([])
        return ids, vectors

    def index_rows(self, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray, pa.Table]:
        """(ids, vectors, the other ``columns``) of every row, in one scan: one order."""
        t = self._scan(["id", "vector", *columns])
        ids = t["id"].to_numpy().astype(np.int64)
        return ids, _vectors(t, self.info.dim), t.drop_columns(["vector"])

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        if not ids:
            return {}
        id_list = ",".join(str(int(i)) for i in ids)
        t = self._scan([*RECORD_COLUMNS, "path_raw"], f"id IN ({id_list})")
        return {r["id"]: _record(r) for r in t.to_pylist()}

    def records_at(self, offsets: Sequence[int]) -> dict[int, ImageRecord]:
        """Records by row offset in the current table version: a take, not a scan."""
        with backend_errors(self.home, "reading its table"):
            query = self.table.take_offsets(sorted(set(offsets)))
            t = query.select([*RECORD_COLUMNS, "path_raw"]).to_arrow()
        return {r["id"]: _record(r) for r in t.to_pylist()}

    def record(self, image_id: int) -> ImageRecord:
        found = self.records([image_id]).get(int(image_id))
        if found is None:
            raise NotFound(f"no image with id {image_id} in the index")
        return found

    def vector(self, image_id: int) -> np.ndarray:
        if (t := self._scan(["vector"], f"id = {int(image_id)}")).num_rows == 0:
            raise NotFound(f"no image with id {image_id} in the index")
        return _vectors(t, self.info.dim)[0]

    def id_for_path(self, path: str) -> int | None:
        image_id = path_id(path)
        return image_id if self._scan(["id"], f"id = {image_id}").num_rows else None

    def filter_ids(self, filters: Filters) -> np.ndarray:
        """Ids of the rows that pass ``filters`` (int64, sorted)."""
        t = self._scan(["id", "path", "path_raw"], filter_where(filters))
        ids = t["id"].to_numpy().astype(np.int64)
        if filters.folder:
            keep = folder_matcher(filters.folder)
            mask = np.fromiter((keep(p) for p in _real_paths(t)), bool, count=len(ids))
            ids = ids[mask]
        return np.sort(ids)

    def captioned(self) -> Captioned:
        """Every captioned row: its id, image vector, caption texts and caption vectors."""
        t = self._scan(["id", "captions", "caption_vectors", "vector"], "has_caption = true")
        dim = self.info.dim
        ids = t["id"].to_numpy().astype(np.int64)
        texts = t["captions"].to_pylist()
        cap_col = t["caption_vectors"].combine_chunks()
        flat = cap_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        owners = np.repeat(np.arange(len(ids)), [len(c) for c in texts])
        return Captioned(
            ids=ids,
            image_vectors=_vectors(t, dim),
            texts=[c for caps in texts for c in caps],
            vectors=flat.reshape(-1, dim),
            owners=owners.astype(np.int64),
        )

    def last_update(self) -> float | None:
        t = self._scan(["indexed_at"])
        import pyarrow.compute as pc

        return float(pc.max(t["indexed_at"]).as_py()) if t.num_rows else None

    def disk_bytes(self) -> int:
        """The index's bytes (on object storage: under its URI, where it can list them)."""
        if self.location.remote:
            from .objectstore import stored_bytes

            with backend_errors(self.home, "listing its objects"):
                return stored_bytes(self.location)
        return sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file())

    # -- writing ---------------------------------------------------------------
    def upsert(
        self,
        records: Sequence[ImageRecord],
        vectors: np.ndarray,
        caption_vectors: Sequence[np.ndarray] | None = None,
        keywords: Sequence[str] | None = None,
        ocr: Sequence[OcrText | None] | None = None,
        hashes: Sequence[tuple[int, int] | None] | None = None,
    ) -> None:
        """Insert or replace rows by id (= hash of the path), atomically: one LanceDB commit.
        ``caption_vectors[i]``: one row per caption of ``records[i]``; ``keywords[i]``: its
        keyword text (search/keywords.py); ``ocr[i]``: the text read inside it, if read;
        ``hashes[i]``: its perceptual hashes (search/phash.py)."""
        if not records:
            return
        from .rows import records_table

        self.upsert_rows(
            records_table(
                records, vectors, self.table.schema, caption_vectors, keywords, ocr, hashes
            )
        )

    def upsert_rows(self, data: pa.Table) -> None:
        """Insert or replace rows laid out by search/rows.py records_table, by id, in one
        commit."""
        with backend_errors(self.home, "writing new rows"):
            (
                self.table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )

    def delete_paths(self, paths: Sequence[str]) -> None:
        ids = [path_id(p) for p in paths]
        with backend_errors(self.home, "removing rows"):
            for start in range(0, len(ids), 500):
                chunk = ",".join(str(i) for i in ids[start : start + 500])
                self.table.delete(f"id IN ({chunk})")

    def compact(self) -> None:
        """Merge small fragments written batch by batch and drop old versions."""
        try:
            from datetime import timedelta

            # Keep an hour of old versions: a running `pixfind serve` may still read one.
            self.table.optimize(cleanup_older_than=timedelta(hours=1))
        except Exception as exc:  # compaction is an optimisation: never fail indexing for it
            logging.getLogger(__name__).debug("compaction skipped: %s", exc)


def _vectors(t: pa.Table, dim: int | None = None) -> np.ndarray:
    col = t["vector"].combine_chunks()
    if len(col) == 0:
        return np.zeros((0, dim or 0), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(col), -1).astype(np.float32, copy=False)


def _real_paths(t: pa.Table) -> list[str]:
    return [
        real_path(p, r)
        for p, r in zip(t["path"].to_pylist(), t["path_raw"].to_pylist(), strict=True)
    ]


def _record(row: dict) -> ImageRecord:
    row["path"] = real_path(row["path"], row.pop("path_raw", None))
    row["captions"] = tuple(row.get("captions") or ())
    row["taken_source"] = row.get("taken_source") or "mtime"
    row["file_type"] = row.get("file_type") or ""
    row["taken_at"] = row.get("taken_at") or 0.0
    return ImageRecord(**row)


def filter_where(filters: Filters) -> str | None:
    """The SQL part of ``filters`` (all but the folder, which is matched on real paths)."""
    where = []
    if filters.after is not None:
        where.append(f"taken_at >= {float(filters.after)!r}")
    if filters.before is not None:
        where.append(f"taken_at <= {float(filters.before)!r}")
    if filters.min_width:
        where.append(f"width >= {int(filters.min_width)}")
    if filters.min_height:
        where.append(f"height >= {int(filters.min_height)}")
    if filters.file_types:
        kinds = {
            FILE_TYPE_ALIASES.get(k.lower().lstrip("."), k.lower().lstrip("."))
            for k in filters.file_types
        }
        where.append(f"file_type IN ({','.join(_sql_str(k) for k in sorted(kinds))})")
    return " AND ".join(where) or None


def folder_matcher(folder: str):
    """A predicate on paths: a glob (``*/trips/*``) or a folder prefix (``/photos/trips``)."""
    if is_glob(folder):
        return lambda p: fnmatch.fnmatchcase(p, folder)
    prefix = folder.rstrip(os.sep) or os.sep
    return lambda p: p == prefix or p.startswith(prefix.rstrip(os.sep) + os.sep)


@dataclass
class Captioned:
    ids: np.ndarray  # (m,) ids of captioned rows
    image_vectors: np.ndarray  # (m, dim)
    texts: list[str]  # (c,) every caption
    vectors: np.ndarray  # (c, dim) text-tower vector of each caption
    owners: np.ndarray  # (c,) index into ids of each caption's image


FILE_TYPE_ALIASES = {"jpg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "tif": "tiff", "heic": "heif"}


def now() -> float:
    return time.time()
