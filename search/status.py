"""What `pixfind status` and `GET /api/status` report about an index."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from .index import INDEX_DIR, IndexInfos
from .store import Store


@dataclass(frozen=True)
class FaissStatus:
    type: str
    rows: int
    recall_at_10: float
    up_to_date: bool  # built from the store's current version (else rebuilt on next search)


@dataclass(frozen=True)
class IndexStatus:
    index: str
    model: str
    dim: int
    images: int
    disk_bytes: int
    last_update: float | None  # POSIX seconds of the last write
    version: int
    faiss: FaissStatus | None

    @property
    def last_update_iso(self) -> str | None:
        if not self.last_update:
            return None
        return datetime.fromtimestamp(self.last_update).astimezone().isoformat(timespec="seconds")

    def to_dict(self) -> dict:
        return {**asdict(self), "last_update": self.last_update_iso}


def index_status(store: Store) -> IndexStatus:
    infos = IndexInfos.read(store.home / INDEX_DIR / "infos.json")
    faiss = (
        FaissStatus(
            infos.index_type, infos.rows, infos.recall_at_10, infos.store_version == store.version
        )
        if infos
        else None
    )
    return IndexStatus(
        index=store.location.uri,
        model=store.info.label,
        dim=store.info.dim,
        images=store.count(),
        disk_bytes=store.disk_bytes(),
        last_update=store.last_update(),
        version=store.version,
        faiss=faiss,
    )
