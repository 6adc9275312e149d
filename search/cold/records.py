"""The query snapshot's records file written window by window, for an index built from a
stream of the table (search/bigindex.py): no more than one window of rows in memory.

The file is exactly what ``snapshot.save_columns`` writes for the whole table at once (the
same columns, 8-byte aligned one after another, the same layout), so the cold path reads
both alike. Each column goes to its own temporary file while the windows arrive (a blob's
starts shifted by the bytes before it); ``close`` joins them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .snapshot import record_columns


class RecordsWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows = 0
        self.captioned = 0
        self.layout: dict[str, list] | None = None
        self._parts: dict[str, tuple[Path, np.dtype]] = {}
        self._sizes: dict[str, int] = {}  # items written per column

    def __enter__(self) -> RecordsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, batch) -> None:
        """A pyarrow table or record batch with snapshot.COLUMNS (and ``has_caption``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        if self.layout is not None:
            raise ValueError(f"{self.path} is closed")
        if table.num_rows == 0:
            return
        if "has_caption" in table.schema.names:
            self.captioned += int(pc.sum(table["has_caption"]).as_py() or 0)
        for name, array in record_columns(table).items():
            if name.endswith("_starts") and name in self._parts:
                blob = name[: -len("_starts")] + "_blob"
                array = array[1:] + self._sizes[blob]  # after the blob bytes already written
            if name not in self._parts:
                self._parts[name] = (self.path.with_name(f"{self.path.name}.{name}"), array.dtype)
                self._sizes[name] = 0
            part, dtype = self._parts[name]
            with open(part, "ab") as fh:
                fh.write(np.ascontiguousarray(array, dtype=dtype).tobytes())
            self._sizes[name] += len(array)
        self.rows += table.num_rows

    def close(self) -> None:
        """Join the columns into ``path`` (once) and remove the temporary files."""
        if self.layout is not None or not self._parts:
            return
        layout = {}
        with open(self.path, "wb") as out:
            for name, (part, dtype) in self._parts.items():
                out.write(b"\0" * (-out.tell() % 8))
                layout[name] = [dtype.str, [self._sizes[name]], out.tell()]
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
                part.unlink()
            out.write(b"\0" * 8)  # never an empty file: those can't be mapped
        self.layout = layout
