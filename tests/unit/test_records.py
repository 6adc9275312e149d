"""The query snapshot's records written window by window (search/cold/records.py) are the
very file the whole-table writer makes, so the cold path reads both alike."""

import numpy as np
import pyarrow as pa
from pixfind.search.cold import snapshot
from pixfind.search.cold.records import RecordsWriter


def _table(n: int) -> pa.Table:
    rng = np.random.default_rng(3)
    paths = [f"/photos/{'é' * (i % 3)}{i}.jpg" for i in range(n)]
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64) * 7),
            "path": pa.array(paths),
            "path_raw": pa.array([b"\xff raw" if i % 5 == 0 else None for i in range(n)]),
            "width": pa.array(
                [None if i % 4 == 0 else int(w) for i, w in enumerate(rng.integers(1, 5000, n))]
            ),
            "height": pa.array(rng.integers(1, 5000, n)),
            "taken_at": pa.array([None if i % 3 else float(i) for i in range(n)]),
            "file_type": pa.array(["jpeg" if i % 2 else None for i in range(n)]),
            "has_caption": pa.array([i % 6 == 0 for i in range(n)]),
        }
    )


def test_windows_write_the_whole_tables_file(tmp_path):
    table = _table(1000)
    whole = snapshot.save_columns(tmp_path / "whole.bin", snapshot.record_columns(table))
    with RecordsWriter(tmp_path / "streamed.bin") as writer:
        for batch in table.to_batches(max_chunksize=137):
            writer.add(batch)
    assert writer.rows == 1000 and writer.captioned == 167
    assert writer.layout == whole
    assert (tmp_path / "streamed.bin").read_bytes() == (tmp_path / "whole.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.bin", "whole.bin"]
    columns = snapshot.load_columns(tmp_path / "streamed.bin", writer.layout)
    assert snapshot._text(columns, "path", 4) == "/photos/é4.jpg"
    assert snapshot._text(columns, "path", 5, "surrogateescape") == "\udcff raw"
    assert columns["width"][4] == 0 and columns["id"][999] == 999 * 7
