"""Where an index lives (search/location.py): folders stay folders, URIs get a cache folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from pixfind.search.errors import UnusableIndex
from pixfind.search.location import (
    is_uri,
    locate,
    location_of,
    options_from_text,
    parse_options,
)
from pixfind.search.settings import Settings, resolve_home


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PIXFIND_STORAGE_OPTIONS", raising=False)


def test_a_folder_is_its_own_home(tmp_path):
    where = locate(str(tmp_path / "idx"))
    assert not where.remote and where.home == tmp_path / "idx"
    assert where.db_uri == str(tmp_path / "idx" / "db")
    assert not is_uri(Path("s3://x/y"))  # a Path has already lost the '//': a folder
    assert location_of(tmp_path / "idx") == where


def test_a_uri_gets_a_cache_folder_that_remembers_it(tmp_path):
    where = locate("s3://bucket/photos/idx/", (("region", "eu-west-1"),))
    assert where.remote and where.scheme == "s3"
    assert where.uri == where.db_uri == "s3://bucket/photos/idx"
    assert where.home.is_relative_to(tmp_path / "cache") and where.home.is_dir()
    assert where.bucket_key("_pixfind.lease") == ("bucket", "photos/idx/_pixfind.lease")
    assert resolve_home("s3://bucket/photos/idx") == where.home
    assert locate("s3://bucket/other").home != where.home
    # another process knows the URI from the folder (not the options: never on disk)
    assert "eu-west-1" not in (where.home / "location.json").read_text()
    assert location_of(where.home).uri == where.uri


def test_storage_options_from_the_environment_and_the_command_line(monkeypatch):
    monkeypatch.setenv("PIXFIND_STORAGE_OPTIONS", '{"region": "us-east-1", "allow_http": "true"}')
    where = locate("gs://bucket/idx", parse_options(["region=eu-west-1"]))
    assert where.options == {"region": "eu-west-1", "allow_http": "true"}
    assert Settings.from_env({"PIXFIND_STORAGE_OPTIONS": "a=1, b=x=y"}).storage_options == (
        ("a", "1"),
        ("b", "x=y"),
    )
    assert options_from_text("{not json") == () == options_from_text("")


def test_bad_locations_and_options_are_one_line_errors():
    with pytest.raises(UnusableIndex, match="KEY=VALUE"):
        parse_options(["region"])
    with pytest.raises(UnusableIndex, match="s3://BUCKET/PREFIX"):
        locate("ftp://host/idx")
    with pytest.raises(UnusableIndex, match="s3://BUCKET/PREFIX"):
        locate("s3://")
