"""5-point similarity alignment to the 112×112 ArcFace template (what the recognizer was trained on)."""

from __future__ import annotations

import cv2
import numpy as np

from errors import AlignmentError

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ALIGNED_SIZE = 112


def similarity_transform(landmarks: np.ndarray, template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """2×3 least-squares similarity (rotation, uniform scale, shift) landmarks → template (Umeyama)."""
    source = np.asarray(landmarks, dtype=np.float64)
    target = np.asarray(template, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    source_var = (source_centered**2).sum() / len(source)
    if not np.isfinite(source_var) or source_var < 1e-9:
        raise AlignmentError("the face's landmarks are degenerate (all in one point or not finite); it cannot be aligned")
    covariance = target_centered.T @ source_centered / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / source_var
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]]).astype(np.float32)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Warp the face to the template; borders are replicated so the crop has no black wedges."""
    matrix = similarity_transform(landmarks)
    if size != ALIGNED_SIZE:
        matrix = matrix * (size / ALIGNED_SIZE)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
