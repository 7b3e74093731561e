"""Synthetic degradations used to calibrate and to test the quality score (and the OOD evaluation).

Each takes an RGB image and the face box it degrades around (strengths scale with the face), and
returns a new RGB image; all are deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Degradation = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _face_width(bbox: np.ndarray) -> float:
    return float(max(bbox[2] - bbox[0], 8.0))


def blur(strength: float) -> Degradation:
    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        sigma = max(strength * _face_width(bbox), 0.5)
        return cv2.GaussianBlur(rgb, (0, 0), sigma)

    return apply


def downscale(face_px: float) -> Degradation:
    """Shrink the whole image so the face is ``face_px`` wide (a tiny face, as in a wide shot)."""

    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        factor = min(1.0, face_px / _face_width(bbox))
        height, width = rgb.shape[:2]
        size = (max(int(width * factor), 8), max(int(height * factor), 8))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)

    return apply


def exposure(gain: float, offset: float = 0.0, gamma: float = 1.0) -> Degradation:
    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        image = (rgb.astype(np.float32) / 255.0) ** gamma * 255.0
        return np.clip(image * gain + offset, 0, 255).astype(np.uint8)

    return apply


def noise(sigma: float) -> Degradation:
    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.clip(rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape), 0, 255).astype(np.uint8)

    return apply


def jpeg(quality: int) -> Degradation:
    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    return apply


def occlusion(top: float, bottom: float) -> Degradation:
    """A flat grey band across the face box from ``top`` to ``bottom`` (fractions of its height)."""

    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        image = rgb.copy()
        x1, y1, x2, y2 = bbox
        height = y2 - y1
        image[int(y1 + top * height) : int(y1 + bottom * height), int(x1) : int(x2)] = 128
        return image

    return apply


def cut_by_border(share: float) -> Degradation:
    """Crop the image through the face: ``share`` of the face box's width (left or right, by seed) and a
    tenth of its height lie outside the new frame, as when a face is cut by the photo's border."""

    def apply(rgb: np.ndarray, bbox: np.ndarray, seed: int = 0) -> np.ndarray:
        x1, y1, x2, y2 = (int(v) for v in bbox[:4])
        cut = int(share * (x2 - x1))
        top = max(0, y1 + (y2 - y1) // 10)
        if seed % 2 == 0:
            return np.ascontiguousarray(rgb[top:, max(x1 + cut, 0) :])
        return np.ascontiguousarray(rgb[top:, : max(x2 - cut, 1)])

    return apply


DEGRADATIONS: dict[str, Degradation] = {
    "blur_mild": blur(0.012),
    "blur_strong": blur(0.035),
    "downscale_48": downscale(48),
    "downscale_24": downscale(24),
    "dark": exposure(0.35, gamma=1.6),
    "very_dark": exposure(0.12, gamma=2.0),
    "over_exposed": exposure(2.2, offset=70),
    "noise": noise(25),
    "noise_strong": noise(60),
    "jpeg_q5": jpeg(5),
    "occlusion_eyes": occlusion(0.2, 0.55),
    "occlusion_lower": occlusion(0.5, 1.0),
    "cut_by_border": cut_by_border(0.35),
}

# The subset a user would call clearly degraded: used by the "clean scores higher" test.
STRONG_DEGRADATIONS = ("blur_strong", "downscale_24", "very_dark", "over_exposed", "noise_strong", "occlusion_eyes", "occlusion_lower")
