"""The LanceDB table: the index's source of truth, one row per image, model spec in its metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import IndexMismatch, NoIndex, NotFound
from .types import ImageRecord, ModelInfo

SCHEMA_VERSION = 1
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
]

os.environ.setdefault("LANCE_LOG", "error")
logging.getLogger("lancedb").setLevel(logging.ERROR)


def path_id(path: str) -> int:
    """Stable opaque id of an indexed path (63-bit, so it fits int64 and JSON)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def schema_for(info: ModelInfo) -> pa.Schema:
    meta = {"schema_version": SCHEMA_VERSION, "model": info.to_dict()}
    return pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("mtime", pa.float64()),
            pa.field("size", pa.int64()),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("content_hash", pa.string()),
            pa.field("indexed_at", pa.float64()),
            pa.field("vector", pa.list_(pa.float32(), info.dim)),
        ],
        metadata={META_KEY: json.dumps(meta).encode()},
    )


def rebuild_hint(home: Path, label: str) -> str:
    return (
        f"to rebuild it with {label}, run `pixfind --index {home} index --rebuild "
        f"--model ... PATH...`, or use another --index DIR"
    )


class Store:
    """A pixfind index directory: ``db/`` (LanceDB) + derived artifacts (``faiss/``)."""

    def __init__(self, home: Path, table, info: ModelInfo):
        self.home = home
        self.table = table
        self.info = info

    # -- opening ---------------------------------------------------------------
    @staticmethod
    def exists(home: Path) -> bool:
        return (home / "db" / f"{TABLE}.lance").is_dir()

    @classmethod
    def open(cls, home: Path) -> Store:
        import lancedb

        if not cls.exists(home):
            raise NoIndex(
                f"no index at {home}; create one with `pixfind --index {home} index PHOTOS_DIR`"
            )
        table = lancedb.connect(str(home / "db")).open_table(TABLE)
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
        import lancedb

        home.mkdir(parents=True, exist_ok=True)
        if overwrite:
            shutil.rmtree(home / "faiss", ignore_errors=True)
        db = lancedb.connect(str(home / "db"))
        table = db.create_table(
            TABLE, schema=schema_for(info), mode="overwrite" if overwrite else "create"
        )
        return cls(home, table, info)

    @classmethod
    def open_or_create(cls, home: Path, info: ModelInfo) -> Store:
        if cls.exists(home):
            store = cls.open(home)
            store.check_model(info)
            return store
        return cls.create(home, info)

    def check_model(self, info: ModelInfo) -> None:
        """Refuse to mix vectors of two models in one index."""
        if info.identity != self.info.identity or info.dim != self.info.dim:
            raise IndexMismatch(
                f"the index at {self.home} was built with {self.info.label} "
                f"({self.info.dim}-d) but {info.label} ({info.dim}-d) was asked for; "
                f"search it with the model it was built with (omit --model), or "
                f"{rebuild_hint(self.home, info.label)}"
            )

    # -- reading ---------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.table.version)

    def count(self) -> int:
        return int(self.table.count_rows())

    def _scan(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        query = self.table.search().select(list(columns))
        if where:
            query = query.where(where)
        return query.to_arrow()

    def file_states(self) -> dict[str, tuple[float, int]]:
        """path -> (mtime, size) of every indexed file, for incremental planning."""
        t = self._scan(["path", "mtime", "size"])
        return dict(
            zip(
                t["path"].to_pylist(),
                zip(t["mtime"].to_pylist(), t["size"].to_pylist(), strict=True),
                strict=True,
            )
        )

    def vectors_by_hash(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """content_hash -> vector for rows that already hold these contents (moves, renames)."""
        hashes = sorted(set(hashes))
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = ",".join(_sql_str(h) for h in hashes[start : start + 500])
            t = self._scan(["content_hash", "vector"], f"content_hash IN ({chunk})")
            vecs = _vectors(t)
            for h, v in zip(t["content_hash"].to_pylist(), vecs, strict=True):
                out[h] = v
        return out

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, vectors float32 (n, dim)) of every row."""
        t = self._scan(["id", "vector"])
        return t["id"].to_numpy().astype(np.int64), _vectors(t, self.info.dim)

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        if not ids:
            return {}
        id_list = ",".join(str(int(i)) for i in ids)
        t = self._scan(RECORD_COLUMNS, f"id IN ({id_list})")
        return {r["id"]: ImageRecord(**r) for r in t.to_pylist()}

    def record(self, image_id: int) -> ImageRecord:
        found = self.records([image_id]).get(int(image_id))
        if found is None:
            raise NotFound(f"no image with id {image_id} in the index")
        return found

    def vector(self, image_id: int) -> np.ndarray:
        t = self._scan(["vector"], f"id = {int(image_id)}")
        if t.num_rows == 0:
            raise NotFound(f"no image with id {image_id} in the index")
        return _vectors(t, self.info.dim)[0]

    def id_for_path(self, path: str) -> int | None:
        t = self._scan(["id"], f"path = {_sql_str(path)}")
        return int(t["id"][0].as_py()) if t.num_rows else None

    def last_update(self) -> float | None:
        t = self._scan(["indexed_at"])
        return float(pc.max(t["indexed_at"]).as_py()) if t.num_rows else None

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.home.rglob("*") if p.is_file())

    # -- writing ---------------------------------------------------------------
    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> None:
        """Insert or replace rows by path, atomically (one LanceDB commit)."""
        if not records:
            return
        data = _records_table(records, vectors, self.table.schema)
        (
            self.table.merge_insert("path")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )

    def delete_paths(self, paths: Sequence[str]) -> None:
        for start in range(0, len(paths), 500):
            chunk = ",".join(_sql_str(p) for p in paths[start : start + 500])
            self.table.delete(f"path IN ({chunk})")

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


def _records_table(
    records: Sequence[ImageRecord], vectors: np.ndarray, schema: pa.Schema
) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    cols = {name: [getattr(r, name) for r in records] for name in RECORD_COLUMNS}
    arrays = [pa.array(cols[f.name], type=f.type) for f in schema if f.name != "vector"]
    dim = vectors.shape[1]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim))
    return pa.Table.from_arrays(arrays, schema=schema)


def now() -> float:
    return time.time()
