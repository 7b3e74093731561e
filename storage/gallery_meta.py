"""Gallery metadata: which galleries exist, their names, what they hold, and the requestId ledger.

The vectors and their labels stay in the gallery backend (FAISS files or a Milvus collection), written in the
same step as the vectors, so a label and its vector can never disagree. What a replica must otherwise find on
its own disk lives here instead:

* one :class:`GalleryRecord` per gallery: its ``key`` (the PaddleX ``indexKey``), a unique ``name``, the model
  and feature dimension, index type and metric, and where the vectors are (``backend`` + ``location``: the
  Milvus collection, or nothing for FAISS files under ``DATA_DIR/indexes/<key>``);
* the requestId ledger of galleries whose vectors are not files (a retried write is answered, not applied
  twice; FAISS galleries keep theirs inside their files, saved in the same atomic step as the change);
* a per-gallery write lock shared by every process that uses the same store (``writing``).

Backends: ``storage.gallery_meta_sqlite`` (one machine, ``DATA_DIR/galleries.sqlite3``) and
``storage.gallery_meta_postgres`` (``DATABASE_URL``, shared by replicas). ``tests/test_contract_gallery_meta.py``
runs one suite over both.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

NAME_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REMEMBERED_REQUESTS = 1000  # requestIds kept per gallery (the same bound as the FAISS files keep)


class NameTakenError(ValueError):
    """Another gallery already has this name (HTTP 409)."""


class KeyTakenError(ValueError):
    """A gallery with this key is already registered."""


@dataclass(frozen=True)
class GalleryRecord:
    key: str
    name: str
    model: str
    dim: int
    index_type: str
    metric: str
    backend: str  # "faiss" or "milvus"
    location: str = ""  # the Milvus collection; "" for FAISS (its folder is DATA_DIR/indexes/<key>)
    created: str = ""  # ISO 8601, UTC

    def as_row(self) -> tuple[Any, ...]:
        return (self.key, self.name, self.model, self.dim, self.index_type, self.metric, self.backend, self.location)

    @classmethod
    def from_row(cls, row: tuple) -> GalleryRecord:
        """A row of ``WRITTEN_COLUMNS`` followed by the creation time (as each backend spells it in ISO 8601)."""
        return cls(row[0], row[1], row[2], int(row[3]), row[4], row[5], row[6], row[7], row[8])


WRITTEN_COLUMNS = "key, name, model, dim, index_type, metric, backend, location"  # GalleryRecord.as_row's order


class GalleryMeta(Protocol):
    """What every metadata backend offers (names are unique; every method is safe from any thread)."""

    shared: bool  # True when other machines see the same records (PostgreSQL)

    def add(self, record: GalleryRecord) -> GalleryRecord:
        """Register a gallery; :class:`NameTakenError` / :class:`KeyTakenError` when its name or key is in use."""
        ...

    def get(self, key: str) -> GalleryRecord | None: ...

    def by_name(self, name: str) -> GalleryRecord | None: ...

    def list(self) -> list[GalleryRecord]:
        """Every gallery, by name."""
        ...

    def rename(self, key: str, new_name: str) -> bool:
        """False when the key is unknown; :class:`NameTakenError` when another gallery has ``new_name``."""
        ...

    def delete(self, key: str) -> bool:
        """Forget the gallery and its ledger; False when the key was unknown."""
        ...

    def remember(self, key: str, request_id: str, result: dict[str, Any]) -> None:
        """Note that a request was applied to this gallery (the newest :data:`REMEMBERED_REQUESTS` are kept)."""
        ...

    def recall(self, key: str, request_id: str) -> dict[str, Any] | None: ...

    def writing(self, key: str) -> AbstractContextManager[None]:
        """Held while one gallery is changed: one writer per gallery across every process sharing the store."""
        ...

    def close(self) -> None: ...


class SQLGalleryMeta(ABC):
    """The statements both SQL backends share, written once: each backend supplies its dialect.

    ``_param`` spells a named placeholder, ``_unique_violation`` is the driver's duplicate-key error and
    ``_columns`` the selected columns (``WRITTEN_COLUMNS`` plus ``created`` in ISO 8601, as the dialect writes it).
    """

    _columns: str
    _unique_violation: type[Exception]

    @abstractmethod
    def _param(self, name: str) -> str: ...

    @abstractmethod
    def _one(self, sql: str, params: dict[str, Any]) -> tuple | None: ...

    @abstractmethod
    def _all(self, sql: str, params: dict[str, Any]) -> list[tuple]: ...

    @abstractmethod
    def _change(self, sql: str, params: dict[str, Any]) -> int:
        """Run one writing statement in its own transaction; the number of rows it touched."""

    def add(self, record: GalleryRecord) -> GalleryRecord:
        names = WRITTEN_COLUMNS.split(", ")
        values = ", ".join(self._param(name) for name in names)
        try:
            self._change(f"INSERT INTO galleries ({WRITTEN_COLUMNS}) VALUES ({values})", dict(zip(names, record.as_row())))
        except self._unique_violation as error:
            if self.get(record.key) is not None:
                raise KeyTakenError(f"a gallery with key {record.key!r} is already registered") from error
            raise NameTakenError(f"a gallery named {record.name!r} already exists") from error
        stored = self.get(record.key)
        assert stored is not None
        return stored

    def get(self, key: str) -> GalleryRecord | None:
        row = self._one(f"SELECT {self._columns} FROM galleries WHERE key = {self._param('key')}", {"key": key})
        return None if row is None else GalleryRecord.from_row(row)

    def by_name(self, name: str) -> GalleryRecord | None:
        row = self._one(f"SELECT {self._columns} FROM galleries WHERE name = {self._param('name')}", {"name": name})
        return None if row is None else GalleryRecord.from_row(row)

    def list(self) -> list[GalleryRecord]:
        return [GalleryRecord.from_row(row) for row in self._all(f"SELECT {self._columns} FROM galleries ORDER BY name", {})]

    def rename(self, key: str, new_name: str) -> bool:
        sql = f"UPDATE galleries SET name = {self._param('name')} WHERE key = {self._param('key')}"
        try:
            return self._change(sql, {"name": new_name, "key": key}) > 0
        except self._unique_violation as error:
            raise NameTakenError(f"a gallery named {new_name!r} already exists") from error


def check_name(name: object) -> str:
    """A gallery name: 1–64 of ``A-Z a-z 0-9 . _ : -`` (ValueError otherwise)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"gallery name {str(name)[:70]!r} is not valid: use 1–64 characters of A-Z a-z 0-9 . _ : -")
    return name
