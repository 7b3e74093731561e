"""Skeleton drawing: boxes, COCO limbs and joints on a copy of the image (left side blue, right orange)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.keypoints.engine import COCO_SKELETON as SKELETON
from engine.keypoints.engine import Person

LEFT, RIGHT, CENTRE = (66, 135, 245), (245, 135, 66), (80, 200, 120)  # RGB


def _side(index: int) -> tuple[int, int, int]:
    if index == 0:
        return CENTRE
    return LEFT if index % 2 == 1 else RIGHT


def draw_skeletons(rgb: np.ndarray, persons: list[Person], scale: float = 1.0, kpt_threshold: float = 0.3) -> np.ndarray:
    """``persons`` are in original-image pixels; ``scale`` maps them onto ``rgb`` (a possibly downscaled copy).
    Joints under ``kpt_threshold`` and limbs touching them are not drawn."""
    canvas = np.ascontiguousarray(rgb.copy())
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    for person in persons:
        x1, y1, x2, y2 = (round(v * scale) for v in person.bbox)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), CENTRE, thickness)
        cv2.putText(canvas, f"{person.det_score:.2f}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, CENTRE, max(1, thickness // 2))
        points = person.keypoints
        visible = points[:, 2] >= kpt_threshold
        for a, b in SKELETON:
            if visible[a] and visible[b]:
                start = (round(points[a, 0] * scale), round(points[a, 1] * scale))
                end = (round(points[b, 0] * scale), round(points[b, 1] * scale))
                colour = _side(b) if _side(a) == _side(b) else CENTRE
                cv2.line(canvas, start, end, colour, thickness, cv2.LINE_AA)
        for index, (x, y, _) in enumerate(points):
            if visible[index]:
                cv2.circle(canvas, (round(x * scale), round(y * scale)), thickness + 1, _side(index), -1, cv2.LINE_AA)
    return canvas
