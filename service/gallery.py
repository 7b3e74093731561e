"""Enrolment and 1:N identification over a :class:`GalleryIndex`, shared by the CLI and the HTTP API.

Enrolment is quality-gated: an image with no face, or whose largest face scores below the reject
threshold, is not enrolled; the result lists each skipped image with its reason. Identification
reports, for every face, the top-k ``(label, score)``; a face whose best score is below the model's
match threshold is "unknown".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.decode import DecodedImage, ImageInput
from engine.face.pipeline import AnalysisResult, FacePipeline
from errors import ApiError, FroodError
from schemas.api import enrol_json, identified_face_json
from service import backends as storage_factory
from service import faces as faces_service
from service.validation import check_identifier, shorten
from settings import get_settings
from storage.gallery_faiss import INDEX_TYPES, METRICS, TEMP_PREFIX, GalleryCorruptError, GalleryIndex, GalleryMismatchError

UNKNOWN = "unknown"
__all__ = ["INDEX_TYPES", "METRICS", "UNKNOWN", "GalleryIndex", "registry"]
log = logging.getLogger("frood.gallery")
Recorder = Callable[[DecodedImage, AnalysisResult, float], None]
"""Called once per processed image with (decoded image, analysis, latency in ms): the app's stats row and webhook."""


def _analyse_batch(
    pipeline: FacePipeline, items: list[tuple[ImageInput, str, str]], record: Recorder | None
) -> list[AnalysisResult | FroodError]:
    """Decode and analyse ``(image, label, name)`` items as one batch of the engine, recording each processed image."""
    start = time.perf_counter()
    decoded = pipeline.decode_batch([image for image, _, _ in items], [name for _, _, name in items])
    usable = [item for item in decoded if not isinstance(item, FroodError)]
    analysed = iter(pipeline.analyze_many(usable, names=[item.name for item in usable]))
    results = [item if isinstance(item, FroodError) else next(analysed) for item in decoded]
    if record is not None:
        latency_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
        for item, result in zip(decoded, results):
            if not isinstance(result, FroodError):
                record(item, result, latency_ms)
    return results


def _analyse(pipeline: FacePipeline, image: ImageInput, name: str, record: Recorder | None) -> AnalysisResult:
    """Decode and analyse one image, handing it to ``record`` (every processed image is counted)."""
    start = time.perf_counter()
    decoded = image if isinstance(image, DecodedImage) else pipeline.decode(image, name)
    analysis = pipeline.analyze(decoded, name=name)
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


def prepare_enrolment(pipeline: FacePipeline, items: list[tuple[ImageInput, str, str]], record: Recorder | None = None) -> Enrolment:
    """Analyse and quality-gate every image (slow; needs no gallery, so callers run it outside their gallery lock).

    Every per-image failure (unreadable image, degenerate landmarks...) is a typed error that skips that image only.
    """
    prepared = Enrolment()
    reject = pipeline.config.reject_threshold
    for (_, label, name), analysis in zip(items, _analyse_batch(pipeline, items, record)):
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


def analyse(pipeline: FacePipeline, image: ImageInput, name: str = "", record: Recorder | None = None) -> AnalysisResult:
    """The analysis step of :func:`identify` alone (no gallery needed, so a caller can run it outside its gallery lock)."""
    return _analyse(pipeline, image, name, record)


def match(pipeline: FacePipeline, gallery: GalleryIndex, analysis: AnalysisResult, top_k: int = 5) -> list[IdentifiedFace]:
    """The gallery step of :func:`identify`: each analysed face's top-k labels and its best label or "unknown"."""
    if not analysis.faces:
        return []
    hits = gallery.search(np.stack([face.feature for face in analysis.faces]), k=top_k)
    faces = []
    for face, row in zip(analysis.faces, hits):
        matches = [(label, score) for _, label, score in row]
        best = matches[0] if matches else None
        label = best[0] if best and best[1] >= pipeline.match_threshold else UNKNOWN
        faces.append(IdentifiedFace(face.bbox, face.det_score, float(face.quality), face.reasons, matches, label))
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


class IndexRegistry:
    """Index key → gallery directory, loaded lazily, one lock for all writers.

    A new key is saved into a temporary folder and renamed into place, so a key on disk is always complete;
    a save that fails drops the in-memory gallery, so the unsaved change is never served (the next request
    reloads what is on disk).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cache: dict[str, GalleryIndex] = {}
        self._swept = False

    @staticmethod
    def _path(key: str) -> Path:
        return get_settings().indexes_dir / check_identifier(key, "indexKey")

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
        return key in self._cache or self._path(key).is_dir()

    def create(self, gallery: GalleryIndex, key: str | None = None) -> str:
        key = key or uuid.uuid4().hex
        with self._lock:
            self._sweep()
            final = self._path(key)
            staging = final.with_name(f"{TEMP_PREFIX}{key}")
            try:
                gallery.save(staging)
                os.replace(staging, final)
            except OSError as error:
                shutil.rmtree(staging, ignore_errors=True)
                log.error("Could not save new index %s: %s", key, error)
                raise ApiError(503, "the index could not be saved (storage error); nothing was created, retry later") from error
            self._cache[key] = gallery
        return key

    def get(self, key: str) -> GalleryIndex:
        with self._lock:
            self._sweep()
            if key not in self._cache:
                path = self._path(key)
                if not path.is_dir():
                    raise ApiError(404, f"unknown indexKey {shorten(key)}")
                pipeline = faces_service.get_pipeline()
                try:
                    self._cache[key] = load_gallery(pipeline, path)
                except GalleryMismatchError as error:
                    raise ApiError(409, str(error)) from error
                except GalleryCorruptError as error:
                    raise ApiError(500, f"index {key} is damaged and cannot be loaded: {error}") from error
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

    @property
    def lock(self) -> threading.RLock:
        return self._lock


registry = IndexRegistry()
