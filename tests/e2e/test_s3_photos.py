"""Photos read from an s3:// prefix (moto's server on loopback): `pixfind index s3://...`
indexes them by their URIs, a re-run after objects changed, went and came gives the table a
fresh index gives, search finds a photo by its own image, and `serve` serves its bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ..conftest import TINY, json_out, shared_photos
from ..live_server import live_server
from ..motos3 import MotoS3, moto_s3  # noqa: F401 - the fixture ``s3``

MODEL = ["--model", TINY[0], "--pretrained", TINY[1]]
PREFIX = "photos"
N = 20


def put(s3: MotoS3, key: str, data: bytes) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=data)


def key_of(i: int, photo: Path) -> str:
    return f"{PREFIX}/{'trip/' if i % 4 == 0 else ''}{photo.name}"  # some one "folder" down


@pytest.fixture
def originals() -> list[Path]:
    photos = shared_photos(N + 6)
    if len(photos) < N + 6:
        pytest.skip(f"../shared/photos has fewer than {N + 6} flickr8k photos")
    return photos


@pytest.fixture
def bucket(s3: MotoS3, originals: list[Path]) -> str:
    """N real photos under s3://BUCKET/photos, a corrupt one, and what is not indexed: a
    hidden "folder", a text file, a sibling prefix that only starts with the same name."""
    for i, photo in enumerate(originals[:N]):
        put(s3, key_of(i, photo), photo.read_bytes())
    put(s3, f"{PREFIX}/corrupt.jpg", b"\xff\xd8\xff\xe0" + b"not a jpeg at all" * 50)
    put(s3, f"{PREFIX}/.cache/hidden.jpg", originals[0].read_bytes())
    put(s3, f"{PREFIX}/notes.txt", b"not an image")
    put(s3, f"{PREFIX}-old/other.jpg", originals[1].read_bytes())
    return f"s3://{s3.bucket}/{PREFIX}"


def table(home: Path):
    from pixfind.search.store import Store

    return Store.open(home).table.to_arrow().sort_by("id")


def assert_same_table(home: Path, fresh: Path) -> None:
    """Same ids and rows (but when they were indexed), vectors within 1e-5."""
    got, want = table(home), table(fresh)
    assert got.column_names == want.column_names
    for name in got.column_names:
        if name in ("indexed_at", "vector", "caption_vectors"):
            continue
        assert got[name].to_pylist() == want[name].to_pylist(), name
    np.testing.assert_allclose(
        np.stack(got["vector"].to_numpy(zero_copy_only=False)),
        np.stack(want["vector"].to_numpy(zero_copy_only=False)),
        atol=1e-5,
    )


def test_index_search_and_serve_photos_on_s3(cli, s3: MotoS3, bucket, originals, tmp_path):
    import httpx
    from pixfind.api.app import create_app
    from pixfind.api.settings import Settings

    home = tmp_path / "idx"
    report = json_out(cli("--index", home, "index", bucket, *MODEL, "--json"))
    assert (report["added"], report["total"]) == (N, N)
    [skip] = report["skipped"]
    assert skip["path"] == f"{bucket}/corrupt.jpg" and "trip" not in skip["reason"]
    paths = set(table(home)["path"].to_pylist())
    assert paths == {f"s3://{s3.bucket}/{key_of(i, p)}" for i, p in enumerate(originals[:N])}

    # a photo found by its own image (a local copy of it), by its URI
    found = json_out(cli("--index", home, "search", "--image", originals[5], "-k", "1", "--json"))
    [hit] = found["results"]
    assert hit["path"] == f"s3://{s3.bucket}/{key_of(5, originals[5])}"
    # the keyword index knows the prefix's "folders", the folder filter takes a prefix
    trip = {p for p in paths if "/trip/" in p}
    search = ["--index", home, "search", "-k", "20", "--json"]
    words = json_out(cli(*search, "--mode", "keyword", "trip"))["results"]
    assert {h["path"] for h in words} == trip
    under = json_out(cli(*search, "a dog", "--folder", f"{bucket}/trip/"))["results"]
    assert {h["path"] for h in under} == trip

    with (
        live_server(create_app(Settings(index=home))) as base,
        httpx.Client(base_url=base, timeout=60) as h,
    ):
        original = h.get(f"/api/images/{hit['id']}")
        assert original.status_code == 200
        assert original.content == originals[5].read_bytes()
        assert original.headers["content-type"] == "image/jpeg"
        thumb = h.get(f"/api/thumbnails/{hit['id']}", params={"size": 64})
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        # rewritten in the bucket since it was indexed: not served
        put(s3, key_of(5, originals[5]), originals[N].read_bytes())
        assert h.get(f"/api/images/{hit['id']}").status_code == 410
        assert h.get(f"/api/thumbnails/{hit['id']}", params={"size": 128}).status_code == 410

    # 3 rewritten (with the one above), 3 deleted, 3 added
    for i in (6, 7):
        put(s3, key_of(i, originals[i]), originals[N + i - 5].read_bytes())
    for i in (8, 9, 10):
        s3.client().delete_object(Bucket=s3.bucket, Key=key_of(i, originals[i]))
    for photo in originals[N + 3 : N + 6]:
        put(s3, f"{PREFIX}/new/{photo.name}", photo.read_bytes())
    again = json_out(cli("--index", home, "index", bucket, *MODEL, "--json"))
    counts = ("added", "updated", "removed", "unchanged")
    assert tuple(again[k] for k in counts) == (3, 3, 3, N - 6)
    fresh = tmp_path / "fresh"
    json_out(cli("--index", fresh, "index", bucket, *MODEL, "--json"))
    assert_same_table(home, fresh)
    # nothing changed: the quick look stops the run (no table read, no model)
    last = json_out(cli("--index", home, "index", bucket, *MODEL, "--json"))
    assert (last["added"], last["updated"], last["unchanged"]) == (0, 0, N)
    assert last["stages"]["index"] == 0


def test_listing_a_prefix(s3: MotoS3, bucket):
    """What the scan of a prefix yields and reports; an empty or unknown prefix removes
    nothing (it is reported unreadable, as a missing folder is)."""
    from pixfind.indexer.scan import scan
    from pixfind.search.images import supported_extensions
    from pixfind.search.photobucket import use_options

    use_options(())  # not the options of a command run before in this process
    unreadable = []
    found = list(scan([bucket + "/"], exclude=["*/trip/*"], on_unreadable=unreadable.append))
    names = sorted(s.path.rsplit("/", 1)[1] for s in found)
    assert len(found) == N - 5 + 1 and "corrupt.jpg" in names and unreadable == []
    assert all(s.path.startswith(f"{bucket}/") and "/trip/" not in s.path for s in found)
    assert all(s.mtime == int(s.mtime) > 0 and s.size > 0 for s in found)

    def note(path, reason):
        unreadable.append((path, reason))

    assert list(scan([f"s3://{s3.bucket}/nothing-here"], on_unreadable=note)) == []
    assert unreadable == [(f"s3://{s3.bucket}/nothing-here", "no objects under this prefix")]
    one = f"{bucket}/corrupt.jpg"  # a root naming one object
    assert [s.path for s in scan([one])] == [one]

    if ".cr2" not in supported_extensions():
        return  # no RAW decoder installed: RAWs are not listed at all
    # a RAW beside its JPEG is one photo, indexed through the JPEG
    for name in ("IMG_1.CR2", "IMG_1.JPG", "IMG_2.CR2"):
        put(s3, f"raws/{name}", b"bytes")
    pairs = []
    found = scan([f"s3://{s3.bucket}/raws"], on_pair=lambda raw, jpeg: pairs.append((raw, jpeg)))
    raws = f"s3://{s3.bucket}/raws"
    assert [s.path for s in found] == [f"{raws}/IMG_1.JPG", f"{raws}/IMG_2.CR2"]
    assert pairs == [(f"{raws}/IMG_1.CR2", f"{raws}/IMG_1.JPG")]


def test_photo_uri_errors_are_one_line(cli, s3: MotoS3, bucket, tmp_path):
    for uri in ("gs://bucket/photos", "s3://"):
        result = cli("--index", tmp_path / "idx", "index", uri, *MODEL, ok=False)
        assert result.exit_code == 1 and "photos are read from local paths or from s3://" in (
            result.output
        )
        assert "Traceback" not in result.output
    watched = cli("--index", tmp_path / "idx", "watch", bucket, ok=False)
    assert watched.exit_code == 1 and "watch takes folders" in watched.output
