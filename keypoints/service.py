"""The one keypoint engine of this process, built from the settings on first use (thread-safe)."""

from __future__ import annotations

import base64
import io
import logging
import threading

from PIL import Image

from keypoints.draw import draw_skeletons
from keypoints.engine import KeypointEngine, KeypointResult
from settings import get_settings

log = logging.getLogger("frood.keypoints")
_lock = threading.Lock()
_engine: KeypointEngine | None = None


def get_engine() -> KeypointEngine:
    global _engine
    with _lock:
        if _engine is None:
            settings = get_settings()
            _engine = KeypointEngine(
                settings.models_dir,
                device=settings.device,
                input_size=settings.keypoints_input_size,
                refine=settings.keypoints_refine,
                tiles=settings.keypoints_tiles,
                detector=settings.keypoints_detector,
                max_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_image_pixels,
                max_width=settings.max_image_width,
            )
            log.info(
                "Keypoint models loaded on %s (input %d, refine %s, person detector %s)",
                _engine.device, _engine.input_size, _engine.refine, _engine.detector is not None,
            )
        return _engine


def drawn_image(result: KeypointResult) -> Image.Image:
    """The decoded image with every person's box and skeleton drawn."""
    decoded = result.decoded
    if decoded is None:
        raise ValueError("the result carries no image to draw on")
    settings = get_settings()
    return Image.fromarray(draw_skeletons(decoded.rgb, result.persons, scale=decoded.scale, kpt_threshold=settings.keypoints_kpt_threshold))


def drawn_jpeg_base64(result: KeypointResult) -> str:
    buffer = io.BytesIO()
    drawn_image(result).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
