"""Where an index lives: a local folder, or a prefix on object storage (s3://, gs://, az://).

Everything in pixfind that reads or writes an index takes its *home*, a local folder. For a
local index that is the index itself. For one on object storage it is a cache folder on
this machine, named by a hash of the URI, that holds what is derived from the table (the
FAISS index, its query snapshot); the LanceDB table itself lives at the URI, and the store
(search/store.py), the writer's lease (indexer/lease.py) and the derived files' copies
(search/objectstore.py) ask ``location_of(home)`` where that is. The cache folder also holds
``location.json`` with the URI (never the credentials), so any process given the folder
knows the URI; storage options come from ``--storage-option`` / ``$PIXFIND_STORAGE_OPTIONS``
of the process, credentials also from the environment (``AWS_ACCESS_KEY_ID``, ...), which
Lance and boto3 read themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import UnusableIndex

SCHEMES = ("s3", "gs", "az")
LOCATION_FILE = "location.json"
_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$", re.IGNORECASE)

Options = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class IndexLocation:
    """An index's place: ``uri`` is the folder's absolute path for a local index, else the
    object-store prefix; ``storage_options`` go to LanceDB/Lance (and boto3 on s3://)."""

    uri: str
    storage_options: Options = ()

    @property
    def remote(self) -> bool:
        return _URI.match(self.uri) is not None

    @property
    def scheme(self) -> str:
        found = _URI.match(self.uri)
        return found.group(1).lower() if found else "file"

    @property
    def home(self) -> Path:
        """The local folder of this index: the index itself, or the remote one's cache."""
        if not self.remote:
            return Path(self.uri)
        from .settings import model_cache_dir

        key = hashlib.blake2b(self.uri.encode(), digest_size=8).hexdigest()
        return model_cache_dir() / "remote" / f"index-{key}"

    @property
    def db_uri(self) -> str:
        """What ``lancedb.connect`` is given: the table is ``<db_uri>/images.lance``."""
        return self.uri if self.remote else str(Path(self.uri) / "db")

    @property
    def options(self) -> dict[str, str]:
        return dict(self.storage_options)

    def connect(self):
        """The LanceDB database holding the index's table."""
        import lancedb

        if self.remote:
            return lancedb.connect(self.db_uri, storage_options=self.options)
        return lancedb.connect(self.db_uri)

    def table_names(self) -> list[str]:
        db = self.connect()
        listed = getattr(db, "list_tables", None)  # LanceDB 0.40+; table_names() before
        return list(listed().tables) if listed else list(db.table_names())

    def join(self, *parts: str) -> str:
        """``uri/part/...`` (object keys use '/' on every system)."""
        return "/".join([self.uri.rstrip("/"), *parts])

    def bucket_key(self, *parts: str) -> tuple[str, str]:
        """(bucket, key) of ``uri/part/...`` on object storage."""
        rest = _URI.match(self.join(*parts)).group(2)
        bucket, _, key = rest.partition("/")
        return bucket, key


def is_uri(text: str | os.PathLike) -> bool:
    return isinstance(text, str) and _URI.match(text) is not None


def parse_options(items: Iterable[str]) -> Options:
    """``KEY=VALUE`` strings -> options; a malformed one is a one-line error."""
    parsed = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UnusableIndex(f"storage option {item!r}: give KEY=VALUE, e.g. region=eu-west-1")
        parsed.append((key.strip(), value))
    return tuple(parsed)


def options_from_text(text: str | None) -> Options:
    """``$PIXFIND_STORAGE_OPTIONS``: a JSON object, or ``k=v,k=v``; unreadable text gives
    none here (``locate`` reports it, where a command can say so)."""
    if not text or not text.strip():
        return ()
    if text.lstrip().startswith("{"):
        try:
            found = json.loads(text)
        except ValueError:
            return ()
        if not isinstance(found, Mapping):
            return ()
        return tuple((str(k), str(v)) for k, v in found.items())
    try:
        return parse_options(p for p in text.split(",") if p.strip())
    except UnusableIndex:
        return ()


# the locations this process chose, by home: they carry the options given on the command line
_chosen: dict[Path, IndexLocation] = {}


def locate(index: str | os.PathLike, storage_options: Options = ()) -> IndexLocation:
    """The location of ``index`` (a folder or a URI), remembered by its home for this
    process; ``storage_options`` override those of the environment, key by key."""
    from .settings import get_settings

    if not is_uri(index):
        return IndexLocation(str(Path(index).expanduser().resolve()))
    uri = str(index)
    scheme, rest = _URI.match(uri).groups()
    uri = f"{scheme}://{rest.rstrip('/')}"
    if scheme.lower() not in SCHEMES or not rest.strip("/"):
        where = ", ".join(f"{s}://BUCKET/PREFIX" for s in SCHEMES)
        raise UnusableIndex(f"{uri}: give --index a folder or one of {where}")
    options = dict(get_settings().storage_options)
    options.update(storage_options)
    location = IndexLocation(uri, tuple(sorted(options.items())))
    _remember(location)
    return location


def _remember(location: IndexLocation) -> None:
    home = location.home
    _chosen[home] = location
    try:
        home.mkdir(parents=True, exist_ok=True)
        (home / LOCATION_FILE).write_text(json.dumps({"uri": location.uri}))
    except OSError:  # a read-only cache: this process still knows it
        pass


def location_of(home: Path) -> IndexLocation:
    """Where the index whose local folder is ``home`` lives: a remote one's cache folder
    names its URI (``location.json``), anything else is a local index."""
    if found := _chosen.get(home):
        return found
    try:
        uri = json.loads((home / LOCATION_FILE).read_text())["uri"]
    except (OSError, ValueError, KeyError, TypeError):
        return IndexLocation(str(home))
    return locate(uri)


def shown(home: Path) -> str:
    """How messages name the index at ``home``: its URI when remote."""
    return location_of(home).uri
