"""Enrolment and 1:N identification over a :class:`GalleryIndex`, shared by the CLI and the HTTP API.

Enrolment is quality-gated: an image with no face, or whose largest face scores below the reject
threshold, is not enrolled; the result lists each skipped image with its reason. Identification
reports, for every face, the top-k ``(label, score)``; a face whose best score is below the model's
match threshold is "unknown".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.decode import DecodedImage, ImageInput
from engine.face.pipeline import AnalysisResult, FacePipeline
from errors import ApiError, FroodError
from schemas import galleries as gallery_schemas
from schemas.api import enrol_json, identified_face_json
from service import backends as storage_factory
from service import faces as faces_service
from service.validation import check_identifier, check_label, shorten
from settings import get_settings
from storage.gallery_faiss import INDEX_TYPES, METRICS, TEMP_PREFIX, GalleryCorruptError, GalleryIndex, GalleryMismatchError
from storage.gallery_meta import GalleryRecord, KeyTakenError, NameTakenError, check_name

UNKNOWN = "unknown"
__all__ = ["INDEX_TYPES", "METRICS", "UNKNOWN", "GalleryIndex", "registry"]
log = logging.getLogger("frood.gallery")
Recorder = Callable[[DecodedImage, AnalysisResult, float], None]
"""Called once per processed image with (decoded image, analysis, latency in ms): the app's stats row and webhook."""


_batched = False  # set by the server (use_request_batcher): gallery analyses go through the model's request batcher


def use_request_batcher(enabled: bool = True) -> None:
    """In the server, every gallery analysis (PaddleX routes, /galleries, the UI's Gallery tab) joins the model's
    request batcher like /extract: one inference worker, micro-batches and back-pressure (503 + Retry-After when the
    expected wait is too long). Scripts and the CLI run their own pipeline directly (the default)."""
    global _batched
    _batched = enabled


def _analyse_decoded(pipeline: FacePipeline, decoded: list[DecodedImage], names: list[str], admitted: bool = False) -> list[AnalysisResult | FroodError]:
    """Checked, decoded images analysed: through the request batcher in the server (``admitted``: the caller holds a
    ticket for all of them), else by the pipeline directly. One result or one typed error per image."""
    batcher = faces_service.get_batcher(pipeline.model) if _batched and faces_service.get_pipeline(pipeline.model) is pipeline else None
    if batcher is None:
        return pipeline.analyze_many(decoded, names=names)
    futures = [batcher.submit(image, name, False, admitted=admitted) for image, name in zip(decoded, names)]
    results: list[AnalysisResult | FroodError] = []
    for future in futures:
        try:
            results.append(future.result())
        except FroodError as error:
            results.append(error)
    return results


def _analyse_batch(
    pipeline: FacePipeline, items: list[tuple[ImageInput, str, str]], record: Recorder | None, admitted: bool = False
) -> list[AnalysisResult | FroodError]:
    """Decode and analyse ``(image, label, name)`` items as one batch of the engine, recording each processed image."""
    start = time.perf_counter()
    decoded = pipeline.decode_batch([image for image, _, _ in items], [name for _, _, name in items])
    usable = [item for item in decoded if not isinstance(item, FroodError)]
    analysed = iter(_analyse_decoded(pipeline, usable, [item.name for item in usable], admitted))
    results = [item if isinstance(item, FroodError) else next(analysed) for item in decoded]
    if record is not None:
        latency_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
        for item, result in zip(decoded, results):
            if not isinstance(result, FroodError):
                record(item, result, latency_ms)
    return results


def _analyse(pipeline: FacePipeline, image: ImageInput, name: str, record: Recorder | None, admitted: bool = False) -> AnalysisResult:
    """Decode and analyse one image, handing it to ``record`` (every processed image is counted)."""
    start = time.perf_counter()
    decoded = image if isinstance(image, DecodedImage) else pipeline.decode(image, name)
    analysis = _analyse_decoded(pipeline, [decoded], [name], admitted)[0]
    if isinstance(analysis, FroodError):
        raise analysis
    if record is not None:
        record(decoded, analysis, (time.perf_counter() - start) * 1000)
    return analysis


@dataclass
class EnrolResult:
    ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"image", "label", "reason"}

    def as_dict(self) -> dict:
        return enrol_json(self.ids, self.labels, self.skipped)


@dataclass
class IdentifiedFace:
    bbox: list[float]
    det_score: float
    quality: float
    reasons: list[str]
    matches: list[tuple[str, float]]  # top-k (label, score), best first
    label: str  # best label, or "unknown"
    ids: list[int] = field(default_factory=list)  # the gallery ids of ``matches``, in the same order

    def as_dict(self) -> dict:
        return identified_face_json(self)


def new_gallery(pipeline: FacePipeline, index_type: str = "Flat", metric: str = "IP") -> GalleryIndex:
    """An empty gallery of the configured backend (``GALLERY_BACKEND``: FAISS files or Milvus)."""
    return storage_factory.create_gallery(pipeline.embedder.dim, pipeline.model, index_type, metric)


def load_gallery(pipeline: FacePipeline, directory: Path) -> GalleryIndex:
    """Load a gallery (whichever backend saved it), refusing one built by another model or dimension."""
    return storage_factory.load_gallery(directory, expected_model=pipeline.model, expected_dim=pipeline.embedder.dim)


@dataclass
class Enrolment:
    """The analysed, quality-gated faces of an enrolment request, not yet added to a gallery."""

    vectors: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def prepare_enrolment(
    pipeline: FacePipeline, items: list[tuple[ImageInput, str, str]], record: Recorder | None = None, admitted: bool = False
) -> Enrolment:
    """Analyse and quality-gate every image (slow; needs no gallery, so callers run it outside their gallery lock).

    Every per-image failure (unreadable image, degenerate landmarks...) is a typed error that skips that image only.
    """
    prepared = Enrolment()
    reject = pipeline.config.reject_threshold
    for (_, label, name), analysis in zip(items, _analyse_batch(pipeline, items, record, admitted)):
        if isinstance(analysis, FroodError):
            prepared.skipped.append({"image": name, "label": label, "reason": str(analysis)})
            continue
        if not analysis.faces:
            prepared.skipped.append({"image": name, "label": label, "reason": "no face found"})
            continue
        face = analysis.face
        if face.quality < reject:
            why = ", ".join(face.reasons) or "low quality"
            prepared.skipped.append({"image": name, "label": label, "reason": f"quality {face.quality:.2f} < {reject} ({why})"})
            continue
        prepared.vectors.append(face.feature)
        prepared.labels.append(label)
    return prepared


def add_prepared(gallery: GalleryIndex, prepared: Enrolment) -> EnrolResult:
    """Add what :func:`prepare_enrolment` accepted (fast; under the caller's gallery lock)."""
    result = EnrolResult(skipped=list(prepared.skipped))
    if prepared.vectors:
        result.ids = gallery.add(np.stack(prepared.vectors), prepared.labels)
        result.labels = list(prepared.labels)
    return result


class NothingEnrolledError(ApiError):
    """A gallery build where every image was skipped: nothing is created, and the caller is told why (422)."""

    code = "nothing_enrolled"

    def __init__(self, skipped: list[dict]):
        reasons = "; ".join(f"{item['image']} ({shorten(item['label'], 30)}): {item['reason']}" for item in skipped[:10])
        more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        super().__init__(422, f"no image could be enrolled, so no index was created: {reasons}{more}")
        self.skipped = skipped


def require_enrolled(prepared: Enrolment) -> Enrolment:
    """A new gallery needs at least one enrolled face: otherwise :class:`NothingEnrolledError` (nothing is created)."""
    if not prepared.vectors:
        raise NothingEnrolledError(prepared.skipped)
    return prepared


def request_fingerprint(payload: dict[str, Any]) -> str:
    """The sha256 of a write request's body (its ``requestId`` left out): a retry has the same, another request not."""
    body = {name: value for name, value in payload.items() if name != "requestId"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True, default=str).encode()).hexdigest()


def remembered(done: dict[str, Any] | None, request_id: str | None, fingerprint: str) -> dict[str, Any] | None:
    """What an already-applied request with this ``requestId`` answered, or None if there was none.

    The same ``requestId`` with a different body is a conflict (409), as an idempotency key reused for another
    request is in payment APIs: the new request is never silently dropped. (Results remembered before fingerprints
    were stored carry none and are replayed as before.)
    """
    if done is None:
        return None
    if done.get("fingerprint", fingerprint) != fingerprint:
        raise ApiError(
            409,
            f"requestId {shorten(request_id)} was already used for a different request; "
            "a retry must send the same body, and a new request needs a new requestId",
        )
    return done


def enrol(
    pipeline: FacePipeline, gallery: GalleryIndex, items: list[tuple[ImageInput, str, str]], record: Recorder | None = None
) -> EnrolResult:
    """``items``: (image, label, name for the report). Adds the largest face of each trusted image; skips the rest."""
    return add_prepared(gallery, prepare_enrolment(pipeline, items, record))


def identify(
    pipeline: FacePipeline, gallery: GalleryIndex, image: ImageInput, top_k: int = 5, name: str = "", record: Recorder | None = None
) -> list[IdentifiedFace]:
    """Every face of the image against the gallery, largest face first."""
    return match(pipeline, gallery, analyse(pipeline, image, name, record), top_k)


def analyse(pipeline: FacePipeline, image: ImageInput, name: str = "", record: Recorder | None = None, admitted: bool = False) -> AnalysisResult:
    """The analysis step of :func:`identify` alone (no gallery needed, so a caller can run it outside its gallery lock)."""
    return _analyse(pipeline, image, name, record, admitted)


MAX_TOP_K = 100


def check_search(top_k: int | None, threshold: float | None) -> tuple[int, float | None]:
    """``topK`` 1–100 (default 5) and ``threshold`` a finite cosine in [-1, 1] (default: the model's), else 422."""
    top_k = 5 if top_k is None else top_k
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ApiError(422, f"topK must be a whole number from 1 to {MAX_TOP_K}, got {shorten(top_k)}")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float) or not np.isfinite(threshold) or not -1.0 <= threshold <= 1.0
    ):
        raise ApiError(422, f"threshold must be a cosine similarity in [-1, 1], got {shorten(threshold)}")
    return top_k, None if threshold is None else float(threshold)


def match(
    pipeline: FacePipeline, gallery: GalleryIndex, analysis: AnalysisResult, top_k: int = 5, threshold: float | None = None
) -> list[IdentifiedFace]:
    """The gallery step of :func:`identify`: each analysed face's top-k labels and its best label, or "unknown" when the best
    score is below ``threshold`` (default: the model's calibrated match threshold)."""
    if not analysis.faces:
        return []
    threshold = pipeline.match_threshold if threshold is None else threshold
    hits = gallery.search(np.stack([face.feature for face in analysis.faces]), k=top_k)
    faces = []
    for face, row in zip(analysis.faces, hits):
        matches = [(label, score) for _, label, score in row]
        best = matches[0] if matches else None
        label = best[0] if best and best[1] >= threshold else UNKNOWN
        faces.append(IdentifiedFace(face.bbox, face.det_score, float(face.quality), face.reasons, matches, label, [i for i, _, _ in row]))
    return faces


def annotate(rgb: np.ndarray, faces: list[IdentifiedFace], scale: float = 1.0) -> np.ndarray:
    """Boxes with label and score drawn on a copy (``scale`` maps original-pixel boxes onto ``rgb``)."""
    canvas = rgb.copy()
    thickness = max(2, int(round(max(canvas.shape[:2]) / 400)))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face.bbox)
        known = face.label != UNKNOWN
        colour = (46, 160, 67) if known else (220, 53, 69)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        score = face.matches[0][1] if face.matches else 0.0
        text = f"{face.label} {score:.2f}"
        font_scale = max(0.5, thickness / 3)
        (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - height - 8, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 6, top + height + 8), colour, -1)
        cv2.putText(canvas, text, (x1 + 3, top + height + 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness)
    return canvas


def read_label_file(root: Path, label_file: Path | None = None) -> list[tuple[Path, str]]:
    """PaddleX layout: ``root/images/<identity>/*.jpg`` plus a label file of ``relative/path.jpg label`` lines.

    Without a label file, every image under ``root/images/<identity>/`` (or ``root/<identity>/``) is
    labelled by its folder name.
    """
    root = Path(root)
    candidates = [label_file] if label_file else [root / "gallery.txt", root / "label.txt"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            pairs = []
            for line in Path(candidate).read_text(encoding="utf-8").splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                path, _, label = line.strip().rpartition(" ")
                if not path:
                    raise FroodError(f"{candidate}: line {line!r} is not 'relative/path.jpg label'")
                pairs.append((root / path, label))
            return pairs
    images = root / "images" if (root / "images").is_dir() else root
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
    return sorted((path, path.parent.name) for path in images.glob("*/*") if path.suffix.lower() in suffixes)


_REQUEST_NAMESPACE = uuid.UUID("5d1c3a52-8f1e-4b7a-9a57-6b3f0e7c2d11")  # index keys derived from build request ids


class _Ledger:
    """The requestId ledger of one gallery in the metadata store (for galleries whose vectors are not files)."""

    def __init__(self, meta: Any, key: str):
        self._meta, self._key = meta, key

    def remember(self, request_id: str, result: dict[str, Any]) -> None:
        self._meta.remember(self._key, request_id, result)

    def recall(self, request_id: str) -> dict[str, Any] | None:
        return self._meta.recall(self._key, request_id)


class IndexRegistry:
    """Index key → gallery, through the gallery metadata store (``storage.gallery_meta``), loaded lazily.

    The metadata store says which keys exist, their names, and where the vectors are: FAISS files under
    ``DATA_DIR/indexes/<key>`` or a Milvus collection. A new FAISS key is saved into a temporary folder and renamed
    into place, so a key on disk is always complete; a save that fails drops the in-memory gallery, so the unsaved
    change is never served (the next request reloads what is on disk). A gallery folder made before the metadata
    store existed is adopted on first use under its key as its name.

    ``lock`` serialises this process's readers and writers of the (not thread-safe) gallery objects; ``writing(key)``
    also takes the metadata store's lock of that gallery, so replicas sharing PostgreSQL take turns changing it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cache: dict[str, GalleryIndex] = {}
        self._swept = False
        self._meta: Any = None
        self._meta_for: tuple[str, ...] | None = None

    # -- where things are ----------------------------------------------------------------------------------------

    @staticmethod
    def _path(key: str) -> Path:
        return get_settings().indexes_dir / check_identifier(key, "indexKey")

    def meta(self) -> Any:
        """The gallery metadata store of the current settings (opened once; reopened when the settings change)."""
        settings = get_settings()
        wanted = (str(settings.data_dir), settings.database_url, settings.gallery_backend)
        with self._lock:
            if self._meta is None or self._meta_for != wanted:
                if self._meta is not None:
                    self._meta.close()
                self._meta, self._meta_for = storage_factory.open_gallery_meta(settings), wanted
                self._cache.clear()
            return self._meta

    def _sweep(self) -> None:
        """Once per process: remove key folders a crash left half-created."""
        if self._swept:
            return
        self._swept = True
        root = get_settings().indexes_dir
        if root.is_dir():
            for leftover in root.glob(f"{TEMP_PREFIX}*"):
                shutil.rmtree(leftover, ignore_errors=True)

    @staticmethod
    def key_for(request_id: str | None, client: str | None = None) -> str:
        """A new key: derived from the client's request id and API key (a retried build finds its key), else random."""
        return uuid.uuid5(_REQUEST_NAMESPACE, f"{client or ''}\n{request_id}").hex if request_id else uuid.uuid4().hex

    def exists(self, key: str) -> bool:
        return self._record_or_none(key) is not None

    def _record_or_none(self, key: str) -> GalleryRecord | None:
        """The key's metadata record; a gallery folder without one (made before the store existed) is adopted."""
        path = self._path(key)  # 400 for a malformed key, before any store or disk is asked
        meta = self.meta()
        record = meta.get(key)
        if record is not None or not path.is_dir():
            return record
        with self._lock:
            try:
                gallery = load_gallery(faces_service.get_pipeline(), path)
            except (FileNotFoundError, KeyError):
                return None  # a pointer to a Milvus collection another replica deleted
            except GalleryMismatchError as error:
                raise ApiError(409, str(error)) from error
            except GalleryCorruptError as error:
                raise ApiError(500, f"index {key} is damaged and cannot be loaded: {error}") from error
            record = self._register(meta, key, key, gallery)
            self._cache[key] = gallery
        return record

    @staticmethod
    def _register(meta: Any, key: str, name: str, gallery: Any) -> GalleryRecord:
        backend, location = storage_factory.gallery_location(gallery)
        record = GalleryRecord(key, check_gallery_name(name), gallery.model_name, gallery.dim, gallery.index_type, gallery.metric, backend, location)
        try:
            record = meta.add(record)
        except NameTakenError as error:
            raise ApiError(409, f"a gallery named {shorten(name, 70)} already exists; choose another name") from error
        except KeyTakenError as error:
            raise ApiError(409, f"index {key} is being created by another request; retry with the same requestId") from error
        if backend == "milvus":
            gallery.attach_ledger(_Ledger(meta, key))
        return record

    def record(self, key: str) -> GalleryRecord:
        """The metadata of an existing key, or 404."""
        record = self._record_or_none(key)
        if record is None:
            with self._lock:
                self._cache.pop(key, None)  # deleted by another replica: forget the handle
            raise ApiError(404, f"unknown indexKey {shorten(key)}")
        return record

    def by_name(self, name: str) -> GalleryRecord:
        """The gallery called ``name``, or 404 (400 for a name no gallery could have)."""
        check_gallery_name(name)
        record = self.meta().by_name(name)
        if record is None:
            raise ApiError(404, f"no gallery named {shorten(name, 70)}")
        return record

    def records(self) -> list[GalleryRecord]:
        """Every gallery, by name (folders of this machine not yet in the store are adopted first, unless it is shared)."""
        meta = self.meta()
        root = get_settings().indexes_dir
        if not meta.shared and root.is_dir():
            known = {record.key for record in meta.list()}
            for folder in sorted(root.iterdir()):
                if folder.is_dir() and not folder.name.startswith(".") and folder.name not in known:
                    try:
                        self._record_or_none(folder.name)
                    except ApiError as error:
                        log.warning("Gallery folder %s not listed: %s", folder.name, error)
        return meta.list()

    # -- life cycle ----------------------------------------------------------------------------------------------

    def create(self, gallery: GalleryIndex, key: str | None = None, name: str | None = None) -> str:
        """Register a new gallery under ``key`` (random by default) and ``name`` (default: the key); 409 for a name in use."""
        key = key or uuid.uuid4().hex
        name = check_gallery_name(name or key)
        meta = self.meta()
        with self._lock:
            self._sweep()
            if meta.by_name(name) is not None:
                if hasattr(gallery, "drop"):
                    gallery.drop()  # a Milvus collection made for it
                raise ApiError(409, f"a gallery named {shorten(name, 70)} already exists; choose another name")
            final = self._path(key)
            staging = final.with_name(f"{TEMP_PREFIX}{key}")
            try:
                gallery.save(staging)  # FAISS: the files; Milvus: flushed, and a pointer file for `frood index info`
                os.replace(staging, final)
            except OSError as error:
                shutil.rmtree(staging, ignore_errors=True)
                log.error("Could not save new index %s: %s", key, error)
                raise ApiError(503, "the index could not be saved (storage error); nothing was created, retry later") from error
            try:
                self._register(meta, key, name, gallery)
            except ApiError:
                shutil.rmtree(final, ignore_errors=True)
                if hasattr(gallery, "drop"):
                    gallery.drop()
                raise
            self._cache[key] = gallery
        return key

    def get(self, key: str) -> GalleryIndex:
        with self._lock:
            self._sweep()
            record = self.record(key)
            if key not in self._cache:
                pipeline = faces_service.get_pipeline()
                try:
                    gallery = storage_factory.open_gallery(
                        record.backend, record.location, self._path(key), expected_model=pipeline.model, expected_dim=pipeline.embedder.dim
                    )
                except (FileNotFoundError, KeyError) as error:
                    raise ApiError(404, f"index {key} is registered but its vectors are gone ({shorten(str(error), 120)})") from error
                except GalleryMismatchError as error:
                    raise ApiError(409, str(error)) from error
                except GalleryCorruptError as error:
                    raise ApiError(500, f"index {key} is damaged and cannot be loaded: {error}") from error
                if record.backend == "milvus":
                    gallery.attach_ledger(_Ledger(self.meta(), key))
                self._cache[key] = gallery
            return self._cache[key]

    def save(self, key: str) -> None:
        """Persist the cached gallery; on failure forget it (the unsaved change is not served) and answer 503."""
        with self._lock:
            try:
                self._cache[key].save(self._path(key))
            except Exception as error:
                self._cache.pop(key, None)
                if isinstance(error, OSError):
                    log.error("Could not save index %s: %s", key, error)
                    raise ApiError(503, "the index could not be saved (storage error); the change was not applied, retry later") from error
                raise

    def rename(self, key: str, new_name: str) -> None:
        check_gallery_name(new_name)
        try:
            found = self.meta().rename(key, new_name)
        except NameTakenError as error:
            raise ApiError(409, f"a gallery named {shorten(new_name, 70)} already exists; choose another name") from error
        if not found:
            raise ApiError(404, f"unknown indexKey {shorten(key)}")

    def delete(self, key: str) -> None:
        """Forget the gallery everywhere (the metadata first, so no replica finds it any more), then drop its vectors."""
        with self._lock:
            record = self.record(key)
            gallery = self._cache.pop(key, None)
            self.meta().delete(key)
            if record.backend == "milvus":
                try:
                    gallery = gallery or storage_factory.open_gallery(record.backend, record.location, self._path(key))
                    gallery.drop()
                except KeyError:
                    pass  # already dropped
            shutil.rmtree(self._path(key), ignore_errors=True)
        log.info("Index %s (%s) deleted", key, record.name)

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[None]:
        """One writer of this gallery at a time, across every process sharing the metadata store; then this process's lock."""
        try:
            with self.meta().writing(key), self._lock:
                yield
        except TimeoutError as error:
            raise ApiError(503, f"index {key} is being changed by another request; retry later", {"Retry-After": "2"}) from error

    @property
    def lock(self) -> threading.RLock:
        return self._lock


def check_gallery_name(name: object) -> str:
    try:
        return check_name(name)
    except ValueError as error:
        raise ApiError(400, str(error)) from error


registry = IndexRegistry()


# -- galleries and identities by name (the /galleries routes and `frood index`) ----------------------------------


def check_embedding(values: object, dim: int, what: str = "embedding") -> np.ndarray:
    """A caller's feature of the served model: ``dim`` finite numbers, not all zero; returned as a unit float32 vector (422)."""
    vector = np.asarray(values if isinstance(values, list | tuple) else [], dtype=np.float64)
    if vector.ndim != 1 or len(vector) != dim:
        got = len(values) if isinstance(values, list | tuple) else type(values).__name__
        raise ApiError(422, f"{what} must be a list of {dim} numbers (the served model's feature), got {got}")
    norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else 0.0
    if not norm:
        raise ApiError(422, f"{what} must be finite and not all zero")
    return (vector / norm).astype(np.float32)


def _identities(gallery: Any) -> dict[str, list[int]]:
    """label → its photo ids (ascending), labels sorted."""
    by_label: dict[str, list[int]] = {}
    for photo_id, label in sorted(gallery.labels.items()):
        by_label.setdefault(label, []).append(photo_id)
    return dict(sorted(by_label.items()))


def gallery_summary(record: GalleryRecord) -> dict:
    """One gallery's name, key, size, identities, model and index (size unknown, with the reason, if it cannot be opened)."""
    try:
        with registry.lock:
            labels = registry.get(record.key).labels
        return gallery_schemas.gallery_json(record, size=len(labels), identities=len(set(labels.values())))
    except ApiError as error:
        return gallery_schemas.gallery_json(record, problem=str(error))


def list_galleries() -> dict:
    return gallery_schemas.galleries_json([gallery_summary(record) for record in registry.records()])


def create_gallery(name: str, index_type: str = "Flat", metric: str = "IP") -> dict:
    """An empty named gallery of the configured backend (409 when the name is taken)."""
    check_gallery_name(name)
    if index_type not in INDEX_TYPES or metric not in METRICS:
        raise ApiError(422, f"indexType must be one of {', '.join(INDEX_TYPES)} and metric one of {', '.join(METRICS)}")
    if registry.meta().by_name(name) is not None:  # before any collection is made
        raise ApiError(409, f"a gallery named {shorten(name, 70)} already exists; choose another name")
    key = registry.create(new_gallery(faces_service.get_pipeline(), index_type, metric), name=name)
    log.info("Gallery %s created (index %s)", name, key)
    return gallery_summary(registry.record(key))


def rename_gallery(name: str, new_name: str) -> dict:
    record = registry.by_name(name)
    registry.rename(record.key, new_name)
    return gallery_summary(registry.record(record.key))


def delete_gallery(name: str) -> dict:
    record = registry.by_name(name)
    registry.delete(record.key)
    return gallery_schemas.gallery_deleted_json(record)


def list_identities(name: str, page: int = 1, page_size: int = 100) -> dict:
    """One page of a gallery's identities (by label), each with its photo count and ids."""
    if not 1 <= page <= 10**9 or not 1 <= page_size <= gallery_schemas.MAX_PAGE_SIZE:
        raise ApiError(422, f"page must be at least 1 and pageSize from 1 to {gallery_schemas.MAX_PAGE_SIZE}")
    record = registry.by_name(name)
    with registry.lock:
        identities = _identities(registry.get(record.key))
    chosen = list(identities.items())[(page - 1) * page_size : page * page_size]
    return gallery_schemas.identities_json(record.name, len(identities), page, page_size, chosen)


def add_photos(
    name: str,
    label: str,
    images: list[tuple[ImageInput, str]],
    embeddings: list[Any] | None = None,
    request_id: str | None = None,
    record: Recorder | None = None,
    admitted: bool = False,
) -> dict:
    """Enrol photos (quality-gated) and/or the caller's embeddings (trusted) under ``label`` in gallery ``name``.

    ``request_id``: a retry with the same body is answered from the ledger, not enrolled twice; another body with the
    same id is 409."""
    check_label(label)
    embeddings = embeddings or []
    if not images and not embeddings:
        raise ApiError(422, "send at least one image (JSON images, or multipart files) or one embedding")
    gallery_record = registry.by_name(name)
    key = gallery_record.key
    pipeline = faces_service.get_pipeline()
    registry.get(key)  # 404 / 409 (another model's gallery) before any image is analysed
    vectors = [check_embedding(values, pipeline.embedder.dim, f"embeddings[{index}]") for index, values in enumerate(embeddings)]
    fingerprint = request_fingerprint({
        "gallery": key, "label": label, "embeddings": [vector.tolist() for vector in vectors],
        "images": [hashlib.sha256(data if isinstance(data, bytes) else str(data).encode()).hexdigest() for data, _ in images],
    }) if request_id else ""

    def replayed() -> dict | None:
        if not request_id:
            return None
        done = remembered(registry.get(key).recall_request(request_id), request_id, fingerprint)
        if done is None:
            return None
        return gallery_schemas.photos_added_json(gallery_record.name, label, done.get("added", []), done.get("skipped", []),
                                                 len(_identities(registry.get(key)).get(label, [])), replayed=True)

    with registry.writing(key):
        if (answer := replayed()) is not None:
            return answer
    prepared = prepare_enrolment(pipeline, [(data, label, image_name) for data, image_name in images], record, admitted) if images else Enrolment()
    prepared.vectors.extend(vectors)
    prepared.labels.extend([label] * len(vectors))
    with registry.writing(key):
        if (answer := replayed()) is not None:
            return answer
        gallery = registry.get(key)
        result = add_prepared(gallery, prepared)
        if request_id:
            gallery.remember_request(request_id, {"added": result.ids, "skipped": result.skipped[:100], "fingerprint": fingerprint})
        if result.ids or request_id:
            registry.save(key)
        photos = len(_identities(gallery).get(label, []))
    log.info("Gallery %s, identity %s: %d photos added, %d skipped", gallery_record.name, shorten(label, 40), len(result.ids), len(result.skipped))
    return gallery_schemas.photos_added_json(gallery_record.name, label, result.ids, result.skipped, photos)


def _identity_ids(gallery: Any, label: str) -> list[int]:
    ids = _identities(gallery).get(label)
    if not ids:
        raise ApiError(404, f"no identity {shorten(label, 70)} in this gallery")
    return ids


def remove_identity(name: str, label: str) -> dict:
    record = registry.by_name(name)
    with registry.writing(record.key):
        gallery = registry.get(record.key)
        ids = _identity_ids(gallery, label)
        gallery.remove(ids)
        registry.save(record.key)
    return gallery_schemas.removed_json(record.name, ids, label)


def remove_photo(name: str, photo_id: int) -> dict:
    record = registry.by_name(name)
    with registry.writing(record.key):
        gallery = registry.get(record.key)
        label = gallery.labels.get(photo_id)
        if label is None:
            raise ApiError(404, f"no photo {photo_id} in gallery {shorten(record.name, 70)}")
        gallery.remove([photo_id])
        registry.save(record.key)
    return gallery_schemas.removed_json(record.name, [photo_id], label)


def rename_identity(name: str, label: str, new_label: str) -> dict:
    """Relabel every photo of ``label`` (409 when ``new_label`` is another identity already: no silent merge)."""
    check_label(new_label, "newLabel")
    record = registry.by_name(name)
    with registry.writing(record.key):
        gallery = registry.get(record.key)
        identities = _identities(gallery)
        ids = _identity_ids(gallery, label)
        if new_label != label and new_label in identities:
            raise ApiError(409, f"identity {shorten(new_label, 70)} already exists in this gallery; remove or rename it first")
        gallery.relabel(ids, new_label)
        registry.save(record.key)
    return gallery_schemas.identity_json(record.name, new_label, ids)


def identify_in(
    name: str,
    image: ImageInput | None = None,
    embedding: Any = None,
    top_k: int | None = None,
    threshold: float | None = None,
    record: Recorder | None = None,
    admitted: bool = False,
    components: bool = False,
) -> dict:
    """Every face of ``image`` (or the caller's ``embedding``) against gallery ``name``: its top-k and best label.
    ``components``: each face also carries its component report (measured outside the gallery lock; null for an
    embedding)."""
    top_k, threshold = check_search(top_k, threshold)
    if (image is None) == (embedding is None):
        raise ApiError(422, "give exactly one of image and embedding")
    gallery_record = registry.by_name(name)
    key = gallery_record.key
    pipeline = faces_service.get_pipeline()
    registry.get(key)  # 404 / 409 before the image is analysed
    used = pipeline.match_threshold if threshold is None else threshold
    if embedding is not None:
        vector = check_embedding(embedding, pipeline.embedder.dim)
        with registry.lock:
            row = registry.get(key).search(vector[None, :], k=top_k)[0]
        matches = [(label, score) for _, label, score in row]
        best = matches[0][0] if matches and matches[0][1] >= used else UNKNOWN
        face = IdentifiedFace([], 0.0, 1.0, [], matches, best, [i for i, _, _ in row])
        return gallery_schemas.identify_json(gallery_record.name, [face], top_k, used, from_embedding=True, components=[None] if components else None)
    decoded = pipeline.decode(image)
    analysis = analyse(pipeline, decoded, record=record, admitted=admitted)  # outside the lock: slow
    with registry.lock:
        faces = match(pipeline, registry.get(key), analysis, top_k, threshold)
    reports = [item.components for item in faces_service.components_for(decoded, analysis)] if components else None
    return gallery_schemas.identify_json(gallery_record.name, faces, top_k, used, components=reports)
