"""Milvus face gallery: the :class:`storage.gallery_faiss.GalleryIndex` interface over a Milvus collection.

One collection per gallery: ``id`` (INT64 primary key, our stable ids), ``label`` (VARCHAR) and ``vector``
(FLOAT_VECTOR). The same client code talks to an embedded Milvus Lite file on one machine
(``uri=/path/milvus.db``) and to a Milvus standalone server or distributed cluster (``uri=http://host:19530``),
which is why this engine was chosen (docs/scaling.md). What the FAISS path keeps in ``index_info.yaml`` is
kept as collection properties (model name, feature dimension, metric, index type, next id, creation
time) and checked on open: a gallery of another model or dimension is refused.

Index types map onto Milvus's: ``Flat`` → FLAT, ``IVF`` → IVF_FLAT (nlist ≈ sqrt of the first batch,
nprobe 16), ``HNSW32`` → HNSW (M 32, ef 64). Scores are cosine units for unit vectors, as in FAISS:
the inner product for ``IP``, ``1 - d²/2`` for ``L2`` (Milvus returns squared distances).
Reads are ``Strong``-consistent, so a search sees every add and remove acknowledged before it.

Not thread-safe for writers (like the FAISS gallery): ids come from a counter kept in the collection's
properties, re-read on every add, so replicas that take turns adding to one gallery never reuse an id;
two replicas adding to the same gallery at the same instant could (Milvus has no atomic counter), so
route writes of one gallery to one replica at a time.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from storage.gallery_faiss import (
    INFO_FILE,
    GalleryCorruptError,
    SearchHit,
    check_gallery,
    check_labels,
    check_model,
    check_query,
    check_vectors,
    cosine_scores,
)

FORMAT_VERSION = 1
BACKEND = "milvus"
MAX_LABEL_CHARS = 1024
_INSERT_BATCH = 5000
_FLUSH_AT = 1000  # a bulk add at least this large is sealed at once (Milvus Lite scans unsealed rows ~30x slower)
_INDEX = {
    "Flat": ("FLAT", {}, {}),
    "IVF": ("IVF_FLAT", None, {"nprobe": 16}),  # nlist chosen from the first batch
    "HNSW32": ("HNSW", {"M": 32, "efConstruction": 200}, {"ef": 64}),
}
_PROPERTY = "frood."
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def client_for(uri: str, token: str = "") -> Any:
    """One ``MilvusClient`` per (uri, token) in this process (Milvus Lite allows one embedded server per file)."""
    from pymilvus import MilvusClient

    key = (uri, token)
    with _clients_lock:
        if key not in _clients:
            if "://" not in uri:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            _clients[key] = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        return _clients[key]


def collection_name(key: str) -> str:
    """A valid Milvus collection name for a gallery key (letters, digits, underscores)."""
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in key)
    return f"frood_{cleaned}"[:255]


class MilvusGallery:
    """A searchable set of (id, label, feature vector) in one Milvus collection; see the module docstring."""

    def __init__(self, client: Any, collection: str, uri: str, properties: dict[str, str]):
        """Use :meth:`create` or :meth:`open`."""
        self._client = client
        self.collection = collection
        self.uri = uri
        self.dim = int(properties["feature_dim"])
        self.model_name = properties["model_name"]
        self.index_type = properties["index_type"]
        self.metric = properties["metric"]
        self.created = properties["created"]
        self._next_id = int(properties["next_id"])
        self._search_params = dict(_INDEX[self.index_type][2])
        self._ledger: Any = None
        self._pending_requests: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        dim: int,
        model_name: str,
        index_type: str = "Flat",
        metric: str = "IP",
        *,
        uri: str,
        token: str = "",
        collection: str | None = None,
    ) -> MilvusGallery:
        """An empty gallery in a new collection (a fresh name unless ``collection`` is given; an existing one is refused)."""
        check_gallery(dim, model_name, index_type, metric)
        client = client_for(uri, token)
        collection = collection or collection_name(uuid.uuid4().hex)
        if client.has_collection(collection):
            raise ValueError(f"Milvus collection {collection!r} already exists")
        properties = {
            "format_version": str(FORMAT_VERSION),
            "model_name": model_name,
            "feature_dim": str(dim),
            "index_type": index_type,
            "metric": metric,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "next_id": "0",
        }
        client.create_collection(
            collection, schema=cls._schema(client, dim), consistency_level="Strong", properties={_PROPERTY + k: v for k, v in properties.items()}
        )
        gallery = cls(client, collection, uri, properties)
        if index_type != "IVF":  # IVF waits for its first batch to choose nlist
            gallery._create_index(0)
        return gallery

    @classmethod
    def open(cls, collection: str, *, uri: str, token: str = "", expected_model: str | None = None, expected_dim: int | None = None) -> MilvusGallery:
        """An existing gallery, refusing one built by another model or of another dimension."""
        client = client_for(uri, token)
        if not client.has_collection(collection):
            raise KeyError(f"no Milvus collection {collection!r} at {uri}")
        raw = client.describe_collection(collection).get("properties", {})
        properties = {key[len(_PROPERTY) :]: value for key, value in raw.items() if key.startswith(_PROPERTY)}
        if properties.get("format_version") != str(FORMAT_VERSION):
            raise GalleryCorruptError(f"Milvus collection {collection!r} is not a gallery of format version {FORMAT_VERSION}")
        model, dim = properties["model_name"], int(properties["feature_dim"])
        check_model(f"Milvus collection {collection!r}", model, dim, expected_model, expected_dim, "use another gallery")
        return cls(client, collection, uri, properties)

    @classmethod
    def exists(cls, collection: str, *, uri: str, token: str = "") -> bool:
        return bool(client_for(uri, token).has_collection(collection))

    def drop(self) -> None:
        """Delete the collection and everything in it."""
        self._client.drop_collection(self.collection)

    def save(self, directory: Path | str) -> None:
        """Flush to durable storage and write ``index_info.yaml`` pointing at the collection (atomically).

        The vectors live in Milvus, not in the directory; the file lets directory-based callers (the CLI,
        the FAISS-style registry) find the collection again with :meth:`load`.
        """
        self._client.flush(self.collection)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        info = {**self.info(), "backend": BACKEND, "uri": self.uri, "collection": self.collection, "saved": datetime.now(UTC).isoformat(timespec="seconds")}
        temporary = directory / f".{INFO_FILE}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_text(yaml.safe_dump(info, sort_keys=False, allow_unicode=True), encoding="utf-8")
            os.replace(temporary, directory / INFO_FILE)
        finally:
            temporary.unlink(missing_ok=True)

    @classmethod
    def load(
        cls, directory: Path | str, expected_model: str | None = None, expected_dim: int | None = None, *, uri: str | None = None, token: str = ""
    ) -> MilvusGallery:
        """Open the collection named by ``directory/index_info.yaml`` (at its recorded URI unless ``uri`` is given)."""
        directory = Path(directory)
        info = yaml.safe_load((directory / INFO_FILE).read_text(encoding="utf-8"))
        if not isinstance(info, dict) or info.get("backend") != BACKEND:
            raise GalleryCorruptError(f"{directory / INFO_FILE} does not describe a Milvus gallery")
        return cls.open(info["collection"], uri=uri or info["uri"], token=token, expected_model=expected_model, expected_dim=expected_dim)

    # ------------------------------------------------------------------ contents

    def __len__(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    @property
    def labels(self) -> dict[int, str]:
        """A copy of the id → label map (read from the collection)."""
        labels: dict[int, str] = {}
        iterator = self._client.query_iterator(self.collection, batch_size=5000, filter="id >= 0", output_fields=["id", "label"])
        try:
            while batch := iterator.next():
                labels.update((int(row["id"]), str(row["label"])) for row in batch)
        finally:
            iterator.close()
        return dict(sorted(labels.items()))

    def info(self) -> dict[str, Any]:
        """What the gallery is (model, dimension, index) and which library versions serve it."""
        import pymilvus

        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "backend": BACKEND,
            "model_name": self.model_name,
            "feature_dim": self.dim,
            "metric": self.metric,
            "index_type": self.index_type,
            "created": self.created,
            "count": len(self),
            "next_id": self._next_id,
            "collection": self.collection,
            "versions": {"pymilvus": pymilvus.__version__, "numpy": np.__version__, "python": platform.python_version()},
        }
        indexes = self._client.list_indexes(self.collection)
        if indexes:
            described = self._client.describe_index(self.collection, indexes[0])
            info["milvus_index"] = {key: described[key] for key in ("index_type", "metric_type") if key in described}
        return info

    def wait_indexed(self, timeout_s: float = 600.0) -> float:
        """Block until Milvus has indexed every sealed row (it builds indexes in the background); returns the seconds waited.

        Until then a search scans the unindexed segments exhaustively: exact but slow. Benchmarks call this
        before timing searches; the service does not (a search right after a bulk enrolment is just slower).
        """
        start = time.monotonic()
        indexes = self._client.list_indexes(self.collection)
        while indexes:
            described = self._client.describe_index(self.collection, indexes[0])
            if described.get("pending_index_rows", 0) == 0 and described.get("indexed_rows", 0) >= described.get("total_rows", 0):
                break
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"Milvus did not finish indexing {self.collection!r} within {timeout_s:g} s: {described}")
            time.sleep(0.5)
        return time.monotonic() - start

    # ------------------------------------------------------------------ mutations

    def add(self, vectors: np.ndarray, labels: Sequence[str]) -> list[int]:
        """Add ``n`` vectors (shape ``[n, dim]``) with their labels; returns their new ids (never reused)."""
        x = check_vectors(self.dim, vectors)
        labels = check_labels(labels, len(x), MAX_LABEL_CHARS)
        if len(x) == 0:
            return []
        if self.index_type == "IVF" and not self._client.list_indexes(self.collection):
            self._create_index(len(x))
        # The counter is re-read from the collection, so a gallery object cached by one replica does not hand out
        # ids another replica already used; it is advanced before the insert, so a failed insert never reuses them.
        stored = self._client.describe_collection(self.collection).get("properties", {}).get(_PROPERTY + "next_id", "0")
        self._next_id = max(self._next_id, int(stored))
        ids = list(range(self._next_id, self._next_id + len(x)))
        self._next_id += len(x)
        self._client.alter_collection_properties(self.collection, properties={_PROPERTY + "next_id": str(self._next_id)})
        for start in range(0, len(x), _INSERT_BATCH):
            stop = start + _INSERT_BATCH
            rows = [{"id": i, "label": label, "vector": vector} for i, label, vector in zip(ids[start:stop], labels[start:stop], x[start:stop])]
            self._client.insert(self.collection, rows)
        if len(x) >= _FLUSH_AT:
            self._client.flush(self.collection)  # seal the bulk load so it is searched through its index, not brute force
        return ids

    def remove(self, ids: Iterable[int]) -> int:
        """Remove these ids (all or none: unknown ids raise ``KeyError``); returns how many were removed."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        present = {int(row["id"]) for row in self._client.query(self.collection, filter=f"id in {wanted}", output_fields=["id"])}
        unknown = [i for i in wanted if i not in present]
        if unknown:
            raise KeyError(f"ids not in the gallery: {unknown}")
        self._client.delete(self.collection, ids=wanted)
        return len(wanted)

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Give these ids a new label (all or none: unknown ids raise ``KeyError``): their rows are upserted as they were."""
        wanted = sorted({int(i) for i in ids})
        check_labels([label], 1, MAX_LABEL_CHARS)
        if not wanted:
            return 0
        rows = self._client.query(self.collection, filter=f"id in {wanted}", output_fields=["id", "vector"])
        unknown = sorted(set(wanted) - {int(row["id"]) for row in rows})
        if unknown:
            raise KeyError(f"ids not in the gallery: {unknown}")
        for start in range(0, len(rows), _INSERT_BATCH):
            batch = rows[start : start + _INSERT_BATCH]
            self._client.upsert(self.collection, [{"id": int(row["id"]), "label": label, "vector": list(row["vector"])} for row in batch])
        return len(rows)

    # ------------------------------------------------------------------ request ledger

    def attach_ledger(self, ledger: Any) -> None:
        """Where applied requestIds are kept (an object with ``remember(request_id, result)`` and ``recall(request_id)``,
        e.g. the gallery metadata store); requests remembered before it was attached are handed over."""
        self._ledger = ledger
        pending, self._pending_requests = self._pending_requests, {}
        for request_id, result in pending.items():
            ledger.remember(request_id, result)

    def remember_request(self, request_id: str, result: dict[str, Any]) -> None:
        """Note that a client's request was applied, so a retry is answered, not re-applied (the ledger, or held until one
        is attached)."""
        if self._ledger is None:
            self._pending_requests[request_id] = result
        else:
            self._ledger.remember(request_id, result)

    def recall_request(self, request_id: str) -> dict[str, Any] | None:
        if self._ledger is None:
            return self._pending_requests.get(request_id)
        return self._ledger.recall(request_id)

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[SearchHit]]:
        """The ``k`` best (id, label, score) per query (shape ``[m, dim]``), best first; empty lists when empty."""
        q = check_query(self.dim, queries, k)
        if len(q) == 0:
            return []
        if self.index_type == "IVF" and not self._client.list_indexes(self.collection):
            return [[] for _ in range(len(q))]  # nothing added yet: no index to search
        limit = min(k, 16384)  # Milvus's top-k ceiling
        results = self._client.search(
            self.collection,
            data=list(q),
            limit=limit,
            anns_field="vector",
            output_fields=["label"],
            search_params={"metric_type": self.metric, "params": self._search_params},
        )
        out = []
        for row in results:
            hits = []
            for hit in row:
                hits.append((int(hit["id"]), str(hit["entity"]["label"]), cosine_scores(float(hit["distance"]), self.metric)))
            hits.sort(key=lambda item: (-item[2], item[0]))
            out.append(hits)
        return out

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _schema(client: Any, dim: int) -> Any:
        from pymilvus import DataType

        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("label", DataType.VARCHAR, max_length=MAX_LABEL_CHARS * 4)  # bytes: UTF-8 up to 4 per character
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        return schema

    def _create_index(self, first_batch: int) -> None:
        """Build the vector index and load the collection for search (IVF: nlist from the first batch)."""
        milvus_type, params, _ = _INDEX[self.index_type]
        if params is None:
            params = {"nlist": max(1, min(round(math.sqrt(first_batch)), 65536))}
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=milvus_type, metric_type=self.metric, params=params)
        self._client.create_index(self.collection, index_params)
        self._client.load_collection(self.collection)
