"""What a Ray actor does with its share of the plan: decode, embed, build rows (the same stage
functions as the single-process pipeline), then write the new rows as *uncommitted* Lance
fragments. Only the driver commits, so a retried or lost call adds nothing to the table.

No Ray import here: the actor is a plain class that `Dataset.map_batches` instantiates once
per actor (one model each) and calls with one block of the plan's TODO table at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from pixfind.search.encoder import load_encoder
from pixfind.search.images import DEFAULT_MAX_MEGAPIXELS, register_heif
from pixfind.search.location import IndexLocation, Options, adopt
from pixfind.search.photobucket import use_options
from pixfind.search.store import TABLE, Store
from pixfind.search.types import EncoderSpec, FileStat

from .arrow_plan import key_path, path_key
from .captions import CaptionFinder
from .decode import decode_batch
from .embed import EmbeddedBatch, embed_batch
from .write import Writer, rows_of, stale_paths, tally

# one row per call: what the driver needs to commit it and to fill the report
RESULT = pa.schema(
    [
        ("fragments", pa.list_(pa.string())),  # FragmentMetadata JSON of the new rows
        ("appended", pa.int64()),  # rows in those fragments
        ("updates", pa.binary()),  # Arrow IPC stream of rows replacing indexed ones
        ("stale", pa.list_(pa.binary())),  # indexed files that no longer decode
        ("skipped", pa.list_(pa.binary())),
        ("reasons", pa.list_(pa.string())),
        ("files", pa.int64()),
        ("added", pa.int64()),
        ("updated", pa.int64()),
        ("moved", pa.int64()),
        ("reused", pa.int64()),
        ("captioned", pa.int64()),
        ("decode_s", pa.float64()),
        ("embed_s", pa.float64()),
        ("write_s", pa.float64()),
    ]
)


@dataclass(frozen=True)
class WorkerJob:
    """What every actor of one run shares (small: per-file facts travel in the blocks)."""

    location: IndexLocation  # the index: a folder, or a URI with its storage options
    spec: EncoderSpec
    device: str
    read_version: int  # the table as planned: content reuse sees what a local run would
    roots: tuple[str, ...]
    removed: tuple[str, ...]  # gone paths: a new path with their content counts as moved
    captions: bool = True
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    runtime: str = "torch"  # auto | torch | onnx: the driver's, resolved from its settings
    photo_options: Options = ()  # the driver's storage options, for photos on s3://


def lance_uri(location: IndexLocation) -> str:
    return f"{location.db_uri}/{TABLE}.lance"


def lance_options(location: IndexLocation) -> dict[str, str] | None:
    """Lance's ``storage_options`` for the index (None for a folder)."""
    return location.options if location.remote else None


class EmbedActor:
    """Holds one model; each call turns a block of TODO rows into one RESULT row."""

    def __init__(self, job: WorkerJob):
        import lance

        register_heif()
        use_options(job.photo_options)
        self.job = job
        self.encoder = load_encoder(job.spec, job.device, job.runtime)
        store = Store.open(adopt(job.location))  # on object storage: its URI and options
        store.table.checkout(job.read_version)
        self.schema = store.table.schema
        self.writer = Writer(store, removed=job.removed, roots=job.roots)
        self.captions = CaptionFinder(list(job.roots)) if job.captions else None
        self.uri, self.options = lance_uri(job.location), lance_options(job.location)
        dataset = lance.dataset(self.uri, storage_options=self.options)
        self.storage_version = dataset.data_storage_version

    def __call__(self, todo: pa.Table) -> pa.Table:
        keys, flags = todo["key"].to_pylist(), todo["changed"].to_pylist()
        paths = [key_path(k) for k in keys]
        mtimes, sizes = todo["mtime"].to_pylist(), todo["size"].to_pylist()
        stats = [FileStat(*state) for state in zip(paths, mtimes, sizes, strict=True)]
        changed = {p for p, flag in zip(paths, flags, strict=True) if flag}
        started = time.perf_counter()
        decoded = decode_batch(
            stats,
            self.encoder.preprocess,
            self.encoder.image_size,
            self.job.max_megapixels,
            self.captions,
        )
        decoding = time.perf_counter()
        embedded = embed_batch(self.encoder, decoded, self.writer.reusable(decoded))
        embedding = time.perf_counter()
        fragments, appended, updates = self._write(embedded, changed)
        result = tally(embedded, changed, self.writer.removed)
        row = {
            "fragments": fragments,
            "appended": appended,
            "updates": updates,
            "stale": [path_key(p) for p in stale_paths(embedded, changed)],
            "skipped": [path_key(s.path) for s in result.skipped],
            "reasons": [s.reason for s in result.skipped],
            "files": len(stats),
            "added": result.added,
            "updated": result.updated,
            "moved": result.moved,
            "reused": result.reused,
            "captioned": result.captioned,
            "decode_s": decoding - started,
            "embed_s": embedding - decoding,
            "write_s": time.perf_counter() - embedding,
        }
        return pa.Table.from_pylist([row], schema=RESULT)

    def _write(self, batch: EmbeddedBatch, changed: set[str]) -> tuple[list[str], int, bytes]:
        """New rows -> uncommitted fragments; rows of indexed files -> IPC for merge_insert."""
        from lance.fragment import write_fragments

        new = [im for im in batch.images if im.facts.stat.path not in changed]
        old = [im for im in batch.images if im.facts.stat.path in changed]
        fragments: list[str] = []
        if new:
            rows = rows_of(new, self.schema, self.job.roots)
            written = write_fragments(
                rows,
                self.uri,
                schema=rows.schema,
                data_storage_version=self.storage_version,
                storage_options=self.options,
            )
            fragments = [json.dumps(f.to_json()) for f in written]
        updates = ipc_bytes(rows_of(old, self.schema, self.job.roots)) if old else b""
        return fragments, len(new), updates


def ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue().to_pybytes()


def ipc_table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


def blocks(todo: pa.Table, size: int) -> Sequence[pa.Table]:
    """The plan cut into blocks of ``size`` rows: one actor call (one model batch) each.
    Copies (take), not slices: a pickled slice may carry its parent's whole buffers."""
    ends = range(0, len(todo), size)
    return [todo.take(pa.array(range(at, min(at + size, len(todo))))) for at in ends]
