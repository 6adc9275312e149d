"""An index on object storage (s3://, moto's server on loopback): index, status, search and
serve work on it as on a folder, with the same results; one writer at a time (the lease)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ..conftest import TINY, json_out, shared_photos
from ..live_server import live_server
from ..motos3 import MotoS3, moto_s3  # noqa: F401 - the fixture ``s3``

MODEL = ["--model", TINY[0], "--pretrained", TINY[1]]
URI = "s3://pixfind-test/photos-idx"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in shared_photos(24):
        shutil.copy(path, folder / path.name)
    return folder


def search(cli, *args: str) -> list[tuple[str, float]]:
    hits = json_out(cli(*args, "-k", "8", "--json"))["results"]
    return [(h["path"], round(h["score"], 5)) for h in hits]


def test_s3_index_works_like_a_local_one(cli, photos, s3: MotoS3, tmp_path, monkeypatch):
    local = json_out(cli("index", photos, *MODEL, "--json"))
    remote = json_out(cli("--index", URI, "index", photos, *MODEL, "--json"))
    assert remote["index"] == URI
    assert (remote["added"], remote["skipped"]) == (local["added"], []) == (24, [])
    keys = s3.keys("photos-idx/")
    assert any(k.startswith("photos-idx/images.lance/_versions/") for k in keys)
    assert "photos-idx/derived/derived.json" in keys  # the FAISS index, for other machines
    assert "photos-idx/_pixfind.lease" not in keys  # released at the end

    status = json_out(cli("--index", URI, "status", "--json"))
    assert (status["index"], status["images"], status["model"]) == (URI, 24, TINY[0])
    assert status["disk_bytes"] > 0 and status["faiss"]["up_to_date"]

    query = photos / sorted(p.name for p in photos.iterdir())[3]
    for args in (["search", "a dog running on grass"], ["search", "--image", str(query)]):
        assert search(cli, "--index", URI, *args) == search(cli, *args)

    again = json_out(cli("--index", URI, "index", photos, *MODEL, "--json"))
    assert (again["added"], again["updated"], again["removed"], again["unchanged"]) == (
        0,
        0,
        0,
        24,
    )
    assert again["stages"]["index"] == 0  # stopped at the quick look: files.state was fresh
    # the query snapshot knows the table's newest version on s3 (one listing), as the cold
    # query path needs (pixfind-tiny has no text-tower recipe, so that path is not taken)
    from pixfind.search.cold import snapshot
    from pixfind.search.settings import resolve_home

    home = resolve_home(URI)
    assert snapshot.is_fresh(snapshot.read_meta(home / "faiss"), home)

    # another machine (an empty cache) pulls the derived files instead of rebuilding them
    first, other = os.environ["XDG_CACHE_HOME"], str(tmp_path / "other-machine")
    words = "a dog running on grass"
    monkeypatch.setenv("XDG_CACHE_HOME", other)
    assert search(cli, "--index", URI, "search", words) == search(cli, "search", words)
    pulled = list((tmp_path / "other-machine").rglob("faiss/infos.json"))
    assert [json.loads(p.read_text())["built_at"] for p in pulled] == [shared_built_at(s3)]
    # with the hits' records (query snapshot): a hit's path is not read from the bucket
    assert (pulled[0].parent / "records.bin").is_file()

    # the first machine adds a photo; the other one's cache is of an older table version:
    # it pulls the new version's files
    monkeypatch.setenv("XDG_CACHE_HOME", first)
    added = shared_photos(25)[-1]
    shutil.copy(added, photos / added.name)
    assert json_out(cli("--index", URI, "index", photos, *MODEL, "--json"))["added"] == 1
    assert json_out(cli("index", photos, *MODEL, "--json"))["added"] == 1
    monkeypatch.setenv("XDG_CACHE_HOME", other)
    assert search(cli, "--index", URI, "search", words) == search(cli, "search", words)
    assert json.loads(pulled[0].read_text())["built_at"] == shared_built_at(s3)
    assert json.loads(pulled[0].read_text())["rows"] == 25


def shared_built_at(s3: MotoS3) -> float:
    """When the FAISS index copied to the bucket was built."""
    key = "photos-idx/derived/infos.json"
    return json.loads(s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read())["built_at"]


def test_storage_options_on_the_command_line(cli, photos, s3: MotoS3, monkeypatch):
    """The endpoint and credentials as --storage-option, none in the environment: for the
    index and for photos read from the bucket."""
    for path in sorted(photos.iterdir())[:2]:
        s3.client().put_object(
            Bucket=s3.bucket, Key=f"cli-photos/{path.name}", Body=path.read_bytes()
        )
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ALLOW_HTTP",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name)
    options = [
        *("--storage-option", f"endpoint={s3.endpoint}"),
        *("--storage-option", "allow_http=true"),
        *("--storage-option", "aws_access_key_id=testing"),
        *("--storage-option", "aws_secret_access_key=testing"),
    ]
    report = json_out(cli("--index", URI, *options, "index", photos, *MODEL, "--json"))
    assert report["added"] == 24
    status = json_out(cli("--index", URI, *options, "status", "--json"))
    assert status["images"] == 24
    bad = cli("--index", URI, "--storage-option", "no-equals-sign", "status", ok=False)
    assert bad.exit_code == 1 and "KEY=VALUE" in bad.output
    doctor = cli("--index", URI, *options, "doctor", ok=False)
    assert doctor.exit_code == 1 and "checks index folders" in doctor.output
    local = ["--index", str(photos.parent / "local-idx"), *options]
    on_s3 = json_out(cli(*local, "index", f"s3://{s3.bucket}/cli-photos", *MODEL, "--json"))
    assert (on_s3["added"], on_s3["skipped"]) == (2, [])


def test_a_lease_held_by_another_run_stops_the_index_with_a_clear_error(cli, photos, s3: MotoS3):
    from pixfind.indexer.lease import Lease
    from pixfind.search.errors import IndexLocked
    from pixfind.search.location import locate

    other = Lease(locate(URI))
    other.acquire()  # another machine's indexer, renewing
    try:
        result = cli("--index", URI, "index", photos, *MODEL, ok=False)
    finally:
        other.release()
    assert result.exit_code == 1
    assert "is being updated by pid" in result.output and "Traceback" not in result.output
    assert s3.keys("photos-idx/_pixfind.lease") == []  # released by its holder
    # a writer that died leaves its lease: once expired, the next writer takes it over
    dead = Lease(locate(URI), expire=1.0)
    dead.acquire()
    dead._stop.set()  # stops renewing, as a killed process would
    time.sleep(2.2)
    taker = Lease(locate(URI), expire=1.0, renew=0.3)
    taker.acquire()
    first = taker.etag
    time.sleep(1.0)
    assert taker.etag != first and not taker.lost  # renewed: never looks stale while alive
    # renewed within the expiry: not taken over (5 s: the storage's clock, Last-Modified
    # against the reply's Date, counts whole seconds)
    with pytest.raises(IndexLocked):
        Lease(locate(URI), expire=5.0).acquire()
    taker.release()
    assert s3.keys("photos-idx/_pixfind.lease") == []


def test_serve_an_s3_index(cli, photos, s3: MotoS3):
    import httpx
    from pixfind.api.app import create_app
    from pixfind.api.settings import Settings
    from pixfind.search.settings import resolve_home

    cli("--index", URI, "index", photos, *MODEL)
    with (
        live_server(create_app(Settings(index=resolve_home(URI)))) as base,
        httpx.Client(base_url=base, timeout=60) as h,
    ):
        assert h.get("/api/status").json()["images"] == 24
        hits = h.get("/api/search", params={"q": "a dog", "k": 3}).json()["results"]
        assert len(hits) == 3 and all(str(photos) in hit["path"] for hit in hits)
        thumb = h.get(f"/api/thumbnails/{hits[0]['id']}", params={"size": 64})
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
