"""Service functions shared by every shell (UI, HTTP API, CLI): one pipeline per process, loaded once."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from recognition.decode import ImageInput
from recognition.pipeline import AnalysisResult, CompareResult, FacePipeline
from settings import get_settings

log = logging.getLogger("frood.service")
_lock = threading.Lock()
_pipeline: FacePipeline | None = None
STARTED_AT = time.time()


def get_pipeline() -> FacePipeline:
    """The process-wide pipeline for the configured model and device (built on first use)."""
    global _pipeline
    with _lock:
        if _pipeline is None:
            settings = get_settings()
            _pipeline = FacePipeline(model=settings.model, device=settings.device, settings=settings)
            log.info("Models loaded: %s on %s (match threshold %.3f)", _pipeline.model, _pipeline.device, _pipeline.match_threshold)
        return _pipeline


def is_ready() -> bool:
    return _pipeline is not None


@dataclass
class Timed:
    value: AnalysisResult | CompareResult
    latency_ms: float


def extract(image: ImageInput, name: str = "", thorough: bool = False) -> Timed:
    start = time.perf_counter()
    result = get_pipeline().analyze(image, name=name, thorough=thorough)
    latency = (time.perf_counter() - start) * 1000
    if result.faces:
        log.info("Feature extracted for %s (OOD: %.2f)", name or "upload", result.face.quality)
    else:
        log.info("No face found in %s", name or "upload")
    return Timed(result, latency)


def compare(image_a: ImageInput, image_b: ImageInput, thorough: bool = False) -> Timed:
    start = time.perf_counter()
    result = get_pipeline().compare(image_a, image_b, thorough=thorough)
    latency = (time.perf_counter() - start) * 1000
    log.info("Compared images: similarity %.3f, OOD %.2f / %.2f, %s", result.similarity, result.quality_a, result.quality_b, result.decision)
    return Timed(result, latency)
