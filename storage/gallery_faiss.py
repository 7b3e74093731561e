"""FAISS face gallery: labelled, L2-normalised float32 feature vectors with stable integer ids.

The gallery keeps its own copy of the vectors (the source of truth, saved as ``vectors.npy``); the FAISS
index is derived from it and can always be rebuilt. How each index type deletes and grows:

* ``Flat``: exact search; ``IndexIDMap`` over ``IndexFlat``, deletion in place with ``remove_ids``.
* ``IVF``: ``IndexIVFFlat`` with its native ids, deletion in place with ``remove_ids``. It is trained
  lazily on the first add with ``nlist`` ≈ sqrt(n) (and ≥ 39 training points per list, so FAISS's k-means
  has enough data); it is retrained from the stored vectors whenever the gallery has grown enough for
  ``nlist`` to double, so a gallery filled one face at a time does not stay at one list forever.
* ``HNSW32``: ``IndexIDMap`` over ``IndexHNSWFlat``. HNSW cannot delete, so ``remove`` rebuilds the graph
  from the stored vectors without the removed ids (O(n log n): batch removals on large galleries).

Scores are higher-is-better in cosine units for unit vectors: the inner product for ``IP``, and
``1 - d²/2`` for ``L2`` (FAISS returns squared distances), so one threshold works for both metrics.

Not thread-safe: the caller serialises writers (and readers during writes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import platform
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import yaml

INDEX_TYPES = ("Flat", "IVF", "HNSW32")
METRICS = ("IP", "L2")
INDEX_FILE = "vector.index"
INFO_FILE = "index_info.yaml"
VECTORS_FILE = "vectors.npy"
LOCK_FILE = ".lock"  # flock'ed by a save and by a load's clean-up: another process's save in flight is never swept
POINTER_FILE = "CURRENT"  # names the current version folder; replacing it is the one atomic step of a save
TEMP_PREFIX = ".tmp-"
FORMAT_VERSION = 1
REMEMBERED_REQUESTS = 1000  # client request ids kept per gallery for idempotent retries
_VERSION_PATTERN = re.compile(r"v(\d{8})-[0-9a-f]{8}")

_FAISS_METRIC = {"IP": faiss.METRIC_INNER_PRODUCT, "L2": faiss.METRIC_L2}
_IVF_MAX_NPROBE = 16
_IVF_MIN_POINTS_PER_LIST = 39  # below this FAISS's k-means warns that it lacks training points
_HNSW_EF_SEARCH = 64  # FAISS's default (16) loses too much recall on 512-d features
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: large label maps load fast
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

SearchHit = tuple[int, str, float]


class GalleryMismatchError(ValueError):
    """A saved gallery was built by another model or with another feature dimension: its scores would be meaningless."""


class GalleryCorruptError(ValueError):
    """The files of a saved gallery do not belong together (e.g. a save was interrupted by a crash)."""


def ivf_nlist(n: int) -> int:
    """Number of IVF lists for ``n`` training vectors: ~sqrt(n), at least 1, and enough points per list."""
    return max(1, min(round(math.sqrt(n)), n // _IVF_MIN_POINTS_PER_LIST))


def check_vectors(dim: int, vectors: np.ndarray) -> np.ndarray:
    """C-contiguous float32 ``[n, dim]`` (one 1-d vector is accepted as ``n = 1``), finite, or ValueError.

    Every gallery backend checks its inputs with this one function, so they refuse the same inputs alike."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {list(np.shape(vectors))}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"vectors contain NaN or infinite values (rows {np.flatnonzero(bad)[:10].tolist()})")
    return np.ascontiguousarray(x)


def check_query(dim: int, queries: np.ndarray, k: int) -> np.ndarray:
    """The queries as :func:`check_vectors` gives them, once ``k`` is known to be at least 1 (else ValueError)."""
    q = check_vectors(dim, queries)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return q


def cosine_scores(distances: Any, metric: str) -> Any:
    """Higher-is-better cosine units for unit vectors: the inner product as is, ``1 - d²/2`` for a squared L2 distance."""
    return distances if metric == "IP" else 1.0 - distances / 2.0


def check_model(where: str, model: str, dim: int, expected_model: str | None, expected_dim: int | None, elsewhere: str) -> None:
    """GalleryMismatchError when the gallery in ``where`` holds another model's features, or another dimension's."""
    if expected_model is not None and model != expected_model:
        raise GalleryMismatchError(
            f"the gallery in {where} was built with model {model!r} (dim {dim}), but this service uses model {expected_model!r}: "
            f"features of different models are not comparable; re-enroll the faces or {elsewhere}"
        )
    if expected_dim is not None and dim != expected_dim:
        raise GalleryMismatchError(
            f"the gallery in {where} holds {dim}-d features (model {model!r}), but this service produces {expected_dim}-d features: "
            f"re-enroll the faces or {elsewhere}"
        )


def check_gallery(dim: int, model_name: str, index_type: str, metric: str) -> None:
    """ValueError unless these describe a gallery every backend can create (same message whichever backend)."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}: allowed values are {', '.join(INDEX_TYPES)}")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: allowed values are {', '.join(METRICS)}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if not isinstance(model_name, str) or not model_name:
        raise ValueError("model_name must be a non-empty string (it guards against mixing features of different models)")


def check_labels(labels: Sequence[str], count: int, max_chars: int | None = None) -> list[str]:
    """The labels as a list: one string per vector (at most ``max_chars`` long when given), or ValueError."""
    labels = list(labels)
    if len(labels) != count:
        raise ValueError(f"got {count} vectors but {len(labels)} labels")
    if not all(isinstance(label, str) for label in labels):
        raise ValueError("labels must be strings")
    too_long = [label for label in labels if max_chars is not None and len(label) > max_chars]
    if too_long:
        raise ValueError(f"labels longer than {max_chars} characters: {len(too_long)}")
    return labels


class GalleryIndex:
    """A searchable set of (id, label, feature vector); see the module docstring for the index strategies."""

    def __init__(self, dim: int, model_name: str, index_type: str = "Flat", metric: str = "IP") -> None:
        """An empty gallery; same as :meth:`create`."""
        check_gallery(dim, model_name, index_type, metric)
        self.dim = dim
        self.model_name = model_name
        self.index_type = index_type
        self.metric = metric
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        self._next_id = 0
        self._labels: dict[int, str] = {}
        self._vectors = np.empty((0, dim), dtype=np.float32)  # rows [0, _count) are live; the rest is spare capacity
        self._ids = np.empty(0, dtype=np.int64)
        self._count = 0
        self._index = self._build(self._vectors, self._ids)
        self._requests: dict[str, dict[str, Any]] = {}  # client request id → its result, oldest first

    @classmethod
    def create(cls, dim: int, model_name: str, index_type: str = "Flat", metric: str = "IP") -> GalleryIndex:
        """An empty gallery for features of ``dim`` dimensions produced by ``model_name``."""
        return cls(dim, model_name, index_type, metric)

    # ------------------------------------------------------------------ contents

    def __len__(self) -> int:
        return self._count

    @property
    def labels(self) -> dict[int, str]:
        """A copy of the id → label map."""
        return dict(self._labels)

    def info(self) -> dict[str, Any]:
        """What the gallery is (model, dimension, index) and which library versions wrote it."""
        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "feature_dim": self.dim,
            "metric": self.metric,
            "index_type": self.index_type,
            "created": self.created,
            "count": self._count,
            "next_id": self._next_id,
            "versions": {"faiss": faiss.__version__, "numpy": np.__version__, "pyyaml": yaml.__version__, "python": platform.python_version()},
        }
        if self.index_type == "IVF":
            ivf = faiss.extract_index_ivf(self._index)
            info["ivf"] = {"nlist": int(ivf.nlist), "nprobe": int(ivf.nprobe), "trained": bool(ivf.is_trained)}
        elif self.index_type == "HNSW32":
            info["hnsw"] = {"M": 32, "efSearch": int(faiss.downcast_index(self._index.index).hnsw.efSearch)}
        return info

    # ------------------------------------------------------------------ mutations

    def add(self, vectors: np.ndarray, labels: Sequence[str]) -> list[int]:
        """Add ``n`` vectors (shape ``[n, dim]``) with their labels; returns their new ids (never reused)."""
        x = check_vectors(self.dim, vectors)
        labels = check_labels(labels, len(x))
        if len(x) == 0:
            return []
        ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
        if self._needs_retrain(self._count + len(x)):
            if self._count:
                x_all, ids_all = np.concatenate([self._vectors[: self._count], x]), np.concatenate([self._ids[: self._count], ids])
            else:  # first add: no copy of a possibly large batch
                x_all, ids_all = x, ids
            self._index = self._build(x_all, ids_all)
        else:
            self._index.add_with_ids(x, ids)
        self._append(x, ids)
        self._labels.update(zip(ids.tolist(), labels))
        self._next_id += len(x)
        return ids.tolist()

    def remove(self, ids: Iterable[int]) -> int:
        """Remove these ids (all or none: unknown ids raise ``KeyError``); returns how many were removed."""
        wanted = sorted({int(i) for i in ids})
        unknown = [i for i in wanted if i not in self._labels]
        if unknown:
            raise KeyError(f"ids not in the gallery: {unknown}")
        if not wanted:
            return 0
        drop = np.array(wanted, dtype=np.int64)
        keep = ~np.isin(self._ids[: self._count], drop)
        if self.index_type == "HNSW32":
            self._index = self._build(self._vectors[: self._count][keep], self._ids[: self._count][keep])
        else:
            removed = self._index.remove_ids(drop)
            if removed != len(drop):  # cannot happen unless index and vectors disagree: say so loudly
                raise RuntimeError(f"FAISS removed {removed} of {len(drop)} ids; the gallery is inconsistent")
        live = int(keep.sum())
        self._vectors[:live] = self._vectors[: self._count][keep]
        self._ids[:live] = self._ids[: self._count][keep]
        self._count = live
        for i in wanted:
            del self._labels[i]
        return len(wanted)

    def relabel(self, ids: Iterable[int], label: str) -> int:
        """Give these ids a new label (all or none: unknown ids raise ``KeyError``); the vectors stay as they are."""
        wanted = sorted({int(i) for i in ids})
        unknown = [i for i in wanted if i not in self._labels]
        if unknown:
            raise KeyError(f"ids not in the gallery: {unknown}")
        check_labels([label], 1)
        for i in wanted:
            self._labels[i] = label
        return len(wanted)

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[SearchHit]]:
        """The ``k`` best (id, label, score) per query (shape ``[m, dim]``), best first; empty lists when empty."""
        q = check_query(self.dim, queries, k)
        if self._count == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        distances, found = self._index.search(q, min(k, self._count))
        scores = cosine_scores(distances, self.metric)
        return [
            [(int(i), self._labels[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]  # FAISS pads with -1
            for row_ids, row_scores in zip(found, scores)
        ]

    # ------------------------------------------------------------------ persistence

    def remember_request(self, request_id: str, result: dict[str, Any]) -> None:
        """Note that a client's request was applied (saved with the next ``save``), so a retry can be answered, not re-applied."""
        self._requests.pop(request_id, None)
        self._requests[request_id] = result
        while len(self._requests) > REMEMBERED_REQUESTS:
            self._requests.pop(next(iter(self._requests)))

    def recall_request(self, request_id: str) -> dict[str, Any] | None:
        """The result of an already-applied request with this id, or None."""
        return self._requests.get(request_id)

    def save(self, directory: Path | str) -> None:
        """Save as one atomic step: a new version folder, then one ``os.replace`` of the ``CURRENT`` pointer.

        A crash at any moment leaves ``CURRENT`` naming a complete version (the old or the new one); the
        leftovers (an unfinished or superseded version folder) are removed by the next save or load.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with _folder_lock(directory):
            self._save_locked(directory)

    def _save_locked(self, directory: Path) -> None:
        version = f"v{self._version_counter(directory) + 1:08d}-{uuid.uuid4().hex[:8]}"
        staging = directory / f"{TEMP_PREFIX}{version}"
        try:
            staging.mkdir()
            faiss.write_index(self._index, str(staging / INDEX_FILE))
            with open(staging / VECTORS_FILE, "wb") as handle:
                np.save(handle, self._vectors[: self._count], allow_pickle=False)
            info = self.info()
            info["saved"] = datetime.now(UTC).isoformat(timespec="seconds")
            info["sha256"] = {name: _sha256(staging / name) for name in (INDEX_FILE, VECTORS_FILE)}
            info["labels"] = {int(i): self._labels[int(i)] for i in self._ids[: self._count]}  # in the row order of vectors.npy
            info["requests"] = dict(self._requests)
            with open(staging / INFO_FILE, "w", encoding="utf-8") as handle:
                yaml.dump(info, handle, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True)
            for name in (INDEX_FILE, VECTORS_FILE, INFO_FILE):
                _fsync(staging / name)
            _fsync(staging)
            os.replace(staging, directory / version)  # a complete version, not yet current
            pointer = directory / f"{TEMP_PREFIX}{POINTER_FILE}.{version}"
            pointer.write_text(version + "\n", encoding="utf-8")
            _fsync(pointer)
            os.replace(pointer, directory / POINTER_FILE)  # the one step that makes the new version current
            _fsync(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            (directory / f"{TEMP_PREFIX}{POINTER_FILE}.{version}").unlink(missing_ok=True)
        clean_up(directory)

    @staticmethod
    def _version_counter(directory: Path) -> int:
        numbers = [int(match.group(1)) for path in directory.iterdir() if (match := _VERSION_PATTERN.fullmatch(path.name.removeprefix(TEMP_PREFIX)))]
        return max(numbers, default=0)

    @classmethod
    def load(cls, directory: Path | str, expected_model: str | None = None, expected_dim: int | None = None) -> GalleryIndex:
        """Read a gallery written by :meth:`save`, refusing one built by another model or of another dimension.

        Leftovers of an interrupted save are removed first; a folder in the older flat layout (three files, no
        ``CURRENT``) is still read.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"no gallery folder at {directory}")
        with _folder_lock(directory) as locked:
            if locked:  # never clean up a folder another process may be saving into
                clean_up(directory)
            return cls._load_locked(directory, expected_model, expected_dim)

    @classmethod
    def _load_locked(cls, directory: Path, expected_model: str | None, expected_dim: int | None) -> GalleryIndex:
        files = current_version_dir(directory)
        with open(files / INFO_FILE, encoding="utf-8") as handle:
            info = yaml.load(handle, Loader=_YAML_LOADER)
        if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
            raise GalleryCorruptError(f"{files / INFO_FILE} is not a gallery info file of format version {FORMAT_VERSION}")
        model, dim = info["model_name"], int(info["feature_dim"])
        check_model(str(directory), model, dim, expected_model, expected_dim, "point to another gallery directory")
        for name, digest in info["sha256"].items():
            if _sha256(files / name) != digest:
                raise GalleryCorruptError(f"{files / name} does not match {INFO_FILE} (interrupted save?); restore the gallery from a backup")
        gallery = cls(dim, model, info["index_type"], info["metric"])
        gallery.created, gallery._next_id = str(info["created"]), int(info["next_id"])
        labels = {int(i): str(label) for i, label in info["labels"].items()}
        vectors = np.load(files / VECTORS_FILE, allow_pickle=False)
        index = faiss.read_index(str(files / INDEX_FILE))
        if vectors.shape != (len(labels), dim) or index.ntotal != len(labels) or index.d != dim:
            raise GalleryCorruptError(f"the files in {files} disagree on the gallery size or dimension")
        gallery._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        gallery._ids = np.fromiter(labels, dtype=np.int64, count=len(labels))
        gallery._count = len(labels)
        gallery._labels = labels
        gallery._index = index
        gallery._requests = dict(info.get("requests") or {})
        gallery._tune(index)
        return gallery

    # ------------------------------------------------------------------ internals

    def _append(self, x: np.ndarray, ids: np.ndarray) -> None:
        """Append to the stored vectors, doubling capacity so that adding one face at a time stays O(1) amortised."""
        needed = self._count + len(x)
        if needed > len(self._vectors):
            capacity = max(needed, 2 * len(self._vectors), 64)
            vectors = np.empty((capacity, self.dim), dtype=np.float32)
            vectors[: self._count] = self._vectors[: self._count]
            ids_buffer = np.empty(capacity, dtype=np.int64)
            ids_buffer[: self._count] = self._ids[: self._count]
            self._vectors, self._ids = vectors, ids_buffer
        self._vectors[self._count : needed] = x
        self._ids[self._count : needed] = ids
        self._count = needed

    def _needs_retrain(self, n: int) -> bool:
        """IVF only: untrained, or grown enough that ``nlist`` should at least double."""
        if self.index_type != "IVF":
            return False
        ivf = faiss.extract_index_ivf(self._index)
        return not ivf.is_trained or ivf_nlist(n) >= 2 * ivf.nlist

    def _build(self, vectors: np.ndarray, ids: np.ndarray) -> faiss.Index:
        """A fresh FAISS index over these vectors (trained first for IVF)."""
        metric = _FAISS_METRIC[self.metric]
        if self.index_type == "Flat":
            index = faiss.index_factory(self.dim, "IDMap,Flat", metric)
        elif self.index_type == "HNSW32":
            index = faiss.index_factory(self.dim, "IDMap,HNSW32", metric)
        else:
            nlist = ivf_nlist(len(vectors))
            index = faiss.index_factory(self.dim, f"IVF{nlist},Flat", metric)
            if nlist == 1 and len(vectors):
                # k-means with one centroid is the mean; setting it directly avoids FAISS's "too few points" warning
                index.quantizer.add(vectors.mean(axis=0, keepdims=True))
                index.is_trained = True
            elif len(vectors):
                index.train(vectors)
        self._tune(index)
        if len(vectors):
            index.add_with_ids(vectors, ids)
        return index

    def _tune(self, index: faiss.Index) -> None:
        """Search-time parameters, re-applied after every build and load."""
        if self.index_type == "IVF":
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = min(ivf.nlist, _IVF_MAX_NPROBE)
        elif self.index_type == "HNSW32":
            faiss.downcast_index(index.index).hnsw.efSearch = _HNSW_EF_SEARCH


def current_version_dir(directory: Path | str) -> Path:
    """The folder holding the current files of a saved gallery (the older flat layout: the gallery folder itself)."""
    directory = Path(directory)
    pointer = directory / POINTER_FILE
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if not _VERSION_PATTERN.fullmatch(name) or not (directory / name).is_dir():
            raise GalleryCorruptError(f"{pointer} names {name[:40]!r}, which is not a version folder; restore the gallery from a backup")
        return directory / name
    if (directory / INFO_FILE).is_file():
        return directory
    raise GalleryCorruptError(f"{directory} holds no saved gallery ({POINTER_FILE} is missing)")


def clean_up(directory: Path | str) -> list[str]:
    """Remove what an interrupted or superseded save left: temp entries and version folders ``CURRENT`` does not name.

    Once ``CURRENT`` exists, the files of the older flat layout are superseded too. Returns the removed names.
    """
    directory = Path(directory)
    pointer = directory / POINTER_FILE
    current = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    removed = []
    for path in directory.iterdir():
        stale_version = _VERSION_PATTERN.fullmatch(path.name) is not None and current is not None and path.name != current
        legacy = current is not None and path.name in (INDEX_FILE, VECTORS_FILE, INFO_FILE)
        legacy_temp = path.name.startswith(".") and path.name.endswith(".tmp")  # the older layout's temp files
        if path.name.startswith(TEMP_PREFIX) or stale_version or legacy or legacy_temp:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


@contextlib.contextmanager
def _folder_lock(directory: Path) -> Iterator[bool]:
    """An exclusive ``flock`` on ``directory/.lock`` (released by the kernel if the process dies); yields whether
    it was taken (False on a read-only folder, where nothing is written or cleaned anyway)."""
    try:
        handle = open(directory / LOCK_FILE, "a+b")
    except OSError:
        yield False
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file (or a directory entry) to disk so that a replace survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
