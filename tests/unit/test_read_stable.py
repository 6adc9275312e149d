"""Issue 15 item 7: a huge (sparse) file named like a photo is refused from its size, before
a byte of it is read, never read whole into memory."""

from __future__ import annotations

import resource
import time

import pytest
from pixfind.search.images import DecodeError, decode_file, read_stable

from ..conftest import make_picture


def test_sparse_3gib_jpg_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(3 << 30)  # sparse: takes no disk, would take 3 GiB of memory
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="file too large"):
        decode_file(huge)
    assert time.perf_counter() - start < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 100_000  # not gigabytes


def test_file_growing_past_the_cap_while_read_is_refused(tmp_path):
    photo = make_picture(tmp_path / "a.jpg", 1)
    data, st = read_stable(photo)
    assert len(data) == st.st_size
    with pytest.raises(DecodeError, match="file too large"):
        read_stable(photo, max_bytes=len(data) - 1)
    assert read_stable(photo, max_bytes=len(data))[0] == data
