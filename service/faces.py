"""Service functions shared by every shell (UI, HTTP API, CLI): one pipeline per process, loaded once.

Data flows one way: input → pipeline → result → (caller | stats store | reject webhook). The store
and the webhook outbox are attached by the app at start-up (``attach``); without them the service
just returns results (the CLI's case).
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from engine.decode import DecodedImage, ImageInput
from engine.face.models import resolve_name
from engine.face.pipeline import AnalysisResult, CompareResult, FacePipeline, FaceResult
from engine.quality.heatmap import quality_heatmap
from errors import NoFaceError
from schemas.api import reject_webhook_json
from service import quality
from service.models import create_pipeline
from settings import get_settings

log = logging.getLogger("frood.service")
_lock = threading.Lock()
_pipelines: dict[str, FacePipeline] = {}
_batchers: dict[str, Any] = {}
_store: Any = None
_outbox: Any = None
WEBHOOK_IMAGE_MAX_SIDE = 512
THUMBNAIL_MAX_SIDE = 128


def get_pipeline(model: str | None = None) -> FacePipeline:
    """The process-wide pipeline of a model (the configured one by default), built once on first use."""
    settings = get_settings()
    name = resolve_name(model or settings.model)
    with _lock:
        if name not in _pipelines:
            pipeline = create_pipeline(name, settings=settings)
            _pipelines[name] = pipeline
            log.info("Models loaded: %s on %s (match threshold %.3f)", pipeline.model, pipeline.device, pipeline.match_threshold)
        return _pipelines[name]


def get_batcher(model: str | None = None) -> Any:
    """The model's request batcher (one inference worker owning its pipeline), or None when disabled."""
    settings = get_settings()
    if not settings.batcher_enabled:
        return None
    pipeline = get_pipeline(model)
    with _lock:
        if pipeline.model not in _batchers:
            from service.batcher import RequestBatcher

            _batchers[pipeline.model] = RequestBatcher.from_settings(pipeline, settings)
            log.info(
                "Request batcher started for %s (max batch %d, max wait %.0f ms, queue %d)",
                pipeline.model,
                settings.batch_max_size,
                settings.batch_max_wait_ms,
                settings.batch_queue_length,
            )
        return _batchers[pipeline.model]


def _analyze(pipeline: FacePipeline, decoded: DecodedImage, name: str, thorough: bool, admitted: bool = False) -> AnalysisResult:
    """Through the model's batcher when there is one (the server), else directly (scripts, tests).

    ``decoded`` has passed every check of ``pipeline.decode`` (header limits, pixels): only valid images join a batch.
    """
    batcher = get_batcher(pipeline.model)
    if batcher is None:
        return pipeline.analyze(decoded, name=name, thorough=thorough)
    return batcher.analyze(decoded, name, thorough, admitted=admitted)


class _NoTicket:
    """Admission where no batcher runs yet (the model is still loading, or batching is off): nothing is held."""

    admitted = False

    def release(self) -> None:
        pass

    def __enter__(self) -> _NoTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def admit(model: str | None = None, images: int = 1) -> Any:
    """A place in the model's inference queue, taken before the request's work starts, or a 503 ``QueueFullError``
    (with ``Retry-After``) when the expected wait exceeds ``BATCH_MAX_QUEUE_WAIT_S``. Never waits: safe in the event
    loop (no lock, no model load). Release the returned ticket when the answer is ready."""
    try:
        batcher = _batchers.get(resolve_name(model or get_settings().model))
    except Exception:  # an unknown model name: the route answers it
        return _NoTicket()
    return _NoTicket() if batcher is None else batcher.admit(images)


def busy_everywhere() -> int | None:
    """The Retry-After (s) to answer at once when every model's queue would refuse one more image, else None: lets a
    shell refuse before it even reads the request's body (a refused upload then costs nothing). Plain reads, no lock."""
    refusals = [batcher.refusal() for batcher in list(_batchers.values())]
    if not refusals or any(refusal is None for refusal in refusals):
        return None
    return min(retry for _, retry in refusals)


def note_refused_early() -> None:
    """A request a shell refused before reading it (every queue busy): counted by the batchers' "busy" log line."""
    for batcher in list(_batchers.values()):
        batcher.note_refused()


def queue_depths() -> dict[str, int]:
    """Images each model's batcher holds now (for /health): plain reads, never waits on the worker or a lock."""
    return {model: batcher.depth for model, batcher in list(_batchers.items())}


def health_snapshot() -> dict[str, Any] | None:
    """The configured model's name and device, or None while it is loading: no lock, no model call."""
    pipeline = _pipelines.get(resolve_name(get_settings().model))
    return None if pipeline is None else {"model": pipeline.model, "device": pipeline.device}


def is_ready() -> bool:
    return resolve_name(get_settings().model) in _pipelines


def attach(store: Any = None, outbox: Any = None) -> None:
    """Where results go besides the caller: a stats ``Store`` and a reject ``WebhookOutbox``."""
    global _store, _outbox
    _store, _outbox = store, outbox


def store() -> Any:
    return _store


def outbox() -> Any:
    return _outbox


@dataclass
class Timed:
    value: Any
    latency_ms: float


def _shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, int(width * scale)), max(1, int(height * scale))), interpolation=cv2.INTER_AREA)


def _png_base64(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _record(
    operation: str,
    source: str,
    decoded: DecodedImage,
    result: AnalysisResult,
    latency_ms: float,
    similarity: float | None = None,
    decision: str | None = None,
    source_id: str | None = None,
) -> None:
    """One stats row per processed image, a thumbnail if low quality, a webhook if below the reject line.

    ``source`` is the shell (ui, api); ``source_id`` the client's optional camera/device/site id. The stats row and
    the webhook's ``source`` hold the id when given, else the shell (as the UI does); the webhook's ``channel`` the shell.
    The row also names the main face's failing components (the Monitor's "which components fail most"), measured once
    per image with the webhook's components (:func:`_main_components`).
    """
    settings = get_settings()
    quality = result.face.quality if result.faces else 0.0
    reasons = result.face.reasons if result.faces else ["no_face"]
    rejected = quality < settings.auto_reject_threshold
    webhook = rejected and _outbox is not None
    full = webhook and bool(getattr(_outbox, "enabled", True))  # a disabled outbox sends nothing: no full report
    failed, components = _main_components(decoded, result, full=full) if (_store is not None or webhook) else (None, None)
    if _store is not None:
        from storage.stats_sqlite import Event

        keep_thumbnail = quality < settings.reject_threshold and (source != "api" or settings.store_api_thumbnails)
        thumbnail = _shrink(decoded.rgb, THUMBNAIL_MAX_SIDE) if keep_thumbnail else None
        event = Event(
            source=source_id or source,
            operation=operation,
            model=result.model,
            quality=float(quality),
            similarity=similarity,
            decision=decision,
            reason_codes=list(reasons),
            latency_ms=float(latency_ms),
            rejected=rejected,
            failed_components=failed,
        )
        try:
            _store.record(event, thumbnail=thumbnail)
        except Exception:  # the user's answer must not fail because the stats store did
            log.exception("Could not record a stats event")
    if webhook:
        # The outbox keeps the event on disk until delivered (and a while after): the image goes with it only where
        # a setting keeps such images (STORE_API_THUMBNAILS for API traffic, STORE_THUMBNAILS for the UI's).
        keep_image = settings.store_api_thumbnails if source == "api" else settings.store_thumbnails
        image = _png_base64(_shrink(decoded.rgb, WEBHOOK_IMAGE_MAX_SIDE)) if keep_image else None
        payload = reject_webhook_json(quality, reasons, source_id or source, source, operation, result.model, image, components)
        event_id = _outbox.enqueue(payload)
        if event_id:
            log.info("Rejected image queued for the webhook (event %s, OOD: %.2f)", event_id, quality)


def failing_from_signals(face: FaceResult) -> list[str]:
    """The names of ``face``'s components that fail their requirement, from the signals the analysis computed.

    Only measures with a requirement can fail, and each of them reads one signal the pipeline already has (pose,
    sharpness, brightness, clipping, face size, truncation, detection, eye state, mask, lower-face colour, liveness,
    stability): ~20 µs, where the full report (``service.quality.components_of``: dense landmarks, the eye-state
    network, the 616×616 photometry) costs ~9–25 ms per face on CPU, ~50–90 ms for a group photo. These are the
    engine's own functions for those measures (``engine.quality.components.signal_measures``), so
    the names are the full report's whenever the pipeline measured the eye state (every face below trust, hence
    every reject); on a trusted face EyesOpen is not measured here, as the score does not look at it either.
    """
    from engine.quality.components import signal_measures

    return [component.name for component in signal_measures(face.signals).failing()]


def _main_components(decoded: DecodedImage, result: AnalysisResult, full: bool) -> tuple[list[str] | None, dict | None]:
    """The main face's failing component names (the stats row) and, when ``full``, its whole component report as the
    webhook's JSON: one measurement per image for both. Full only for a reject going out (what an operator fixes);
    otherwise the names come from the signals (:func:`failing_from_signals`). (None, None) without a face; a
    failure to measure gives None for what failed, never an error: the user's answer does not depend on it."""
    if not result.faces:
        return None, None
    if full:
        try:
            from schemas.components import components_json

            report = quality.components_of(get_pipeline(result.model), decoded, result)[0].components
            return [component.name for component in report.failing()], components_json(report)
        except Exception:  # the webhook goes out without them rather than not at all
            log.exception("Could not measure the components of a rejected face")
    try:
        return failing_from_signals(result.face), None
    except Exception:
        log.exception("Could not name the failing components of a face")
        return None, None


def record_analysis(operation: str, source: str, decoded: DecodedImage, result: AnalysisResult, latency_ms: float, source_id: str | None = None) -> None:
    """The recording path for shells that run the pipeline themselves (the gallery routes): same row and webhook as extract."""
    _record(operation, source, decoded, result, latency_ms, source_id=source_id)


def extract(
    image: ImageInput,
    name: str = "",
    thorough: bool = False,
    source: str = "ui",
    model: str | None = None,
    source_id: str | None = None,
    admitted: bool = False,
) -> Timed:
    """``admitted``: the caller holds a ticket from :func:`admit` for this image."""
    pipeline = get_pipeline(model)
    start = time.perf_counter()
    decoded = pipeline.decode(image, name)  # every check before the image joins a batch
    result = _analyze(pipeline, decoded, name, thorough, admitted)
    latency = (time.perf_counter() - start) * 1000
    if result.faces:
        log.info("Feature extracted for %s (OOD: %.2f)", name or "upload", result.face.quality)
    else:
        log.warning("No face found in %s", name or "upload")
    _record("extract", source, decoded, result, latency, source_id=source_id)
    return Timed(result, latency)


def components_for(image: ImageInput | DecodedImage, result: AnalysisResult) -> list[quality.FaceComponents]:
    """The ISO/IEC 29794-5 components of every face of an image this service analysed (with its pipeline)."""
    return quality.components_for(get_pipeline(result.model), image, result)


def heatmap(face: FaceResult, model: str | None = None) -> np.ndarray:
    """The quality heatmap overlay of one analysed face (occlusion sensitivity, one batched pass)."""
    return quality_heatmap(get_pipeline(model), face)[1]


def compare(image_a: ImageInput, image_b: ImageInput, thorough: bool = False, source: str = "ui") -> Timed:
    pipeline = get_pipeline()
    start = time.perf_counter()
    decoded_a, decoded_b = pipeline.decode(image_a), pipeline.decode(image_b)
    batcher = get_batcher(pipeline.model)
    if batcher is None:
        results = pipeline.analyze_batch([decoded_a, decoded_b], thorough=thorough)
        for side in results:
            if isinstance(side, Exception):
                raise side
        a, b = results
    else:  # both images go in together, most likely into the same micro-batch
        future_a, future_b = batcher.submit(decoded_a, "", thorough), batcher.submit(decoded_b, "", thorough)
        a, b = future_a.result(), future_b.result()
    try:
        result: CompareResult = pipeline.compare(a, b)
    except NoFaceError:
        latency = (time.perf_counter() - start) * 1000
        for decoded, side in ((decoded_a, a), (decoded_b, b)):
            _record("compare", source, decoded, side, latency / 2, None, "no_face")
        raise
    latency = (time.perf_counter() - start) * 1000
    log.info("Compared images: similarity %.3f, OOD %.2f / %.2f, %s", result.similarity, result.quality_a, result.quality_b, result.decision)
    for decoded, side in ((decoded_a, a), (decoded_b, b)):
        _record("compare", source, decoded, side, latency / 2, result.similarity, result.decision)
    return Timed(result, latency)
