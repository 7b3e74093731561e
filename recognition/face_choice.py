"""Which face of an image is "the" face, and whether a face is cut by the image border (pure functions).

Main face: InsightFace's rule (``insightface.app.FaceAnalysis``/SCRFD ``max_num``): the box area minus
twice the squared offset of the box centre from the image centre. A bystander's large face at the edge
loses to the subject in the middle; on LFW pairs this fixed 27 of the 95 wrong decisions that "largest
face" made. Every place that uses one face (compare, extract, ``/extract``, enrolment) reads
``AnalysisResult.faces[0]``, which the pipeline orders with :func:`order_by_main_face`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A face is "truncated" when more than this share of its landmark box (below) lies outside the image.
# The detector's own box is no guide: on tight crops (Yale B, RMFD, a box grown by 20 %) it routinely
# pokes out of the frame by half while eyes, nose and mouth are all inside.
TRUNCATED_SHARE = 0.15
# The landmark box: the 5 points' bounding box grown by this many eye distances on every side (the
# cheeks beside the eyes, the brows above them, the chin below the mouth).
LANDMARK_BOX_GROWTH = 0.4


def main_face_scores(boxes: Sequence[Sequence[float]] | np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """InsightFace's score per box ``[x1, y1, x2, y2]``; ``image_size`` is (height, width)."""
    if len(boxes) == 0:
        return np.zeros(0)
    b = np.asarray(boxes, float)[:, :4]
    height, width = image_size
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    offset_x = (b[:, 0] + b[:, 2]) / 2 - width / 2
    offset_y = (b[:, 1] + b[:, 3]) / 2 - height / 2
    return area - 2.0 * (offset_x**2 + offset_y**2)


def main_face_order(boxes: Sequence[Sequence[float]] | np.ndarray, image_size: tuple[int, int]) -> list[int]:
    """Indices of the boxes, main face first (stable for ties)."""
    scores = main_face_scores(boxes, image_size)
    return sorted(range(len(scores)), key=lambda index: -scores[index])


def order_by_main_face(items: list, boxes: Sequence[Sequence[float]] | np.ndarray, image_size: tuple[int, int]) -> list:
    """``items`` (one per box) reordered so the main face comes first."""
    return [items[index] for index in main_face_order(boxes, image_size)]


def outside_share(box: Sequence[float], image_size: tuple[int, int]) -> float:
    """Share of an (unclipped) box's area that lies outside the image: 0 for a face fully in frame."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    height, width = image_size
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 0.0
    inside = max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0)
    return float(1.0 - inside / area)


def landmark_box(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` around the 5 landmarks (eyes, nose, mouth corners), grown by a share of the eye distance."""
    pts = np.asarray(points, float).reshape(-1, 2)
    growth = LANDMARK_BOX_GROWTH * max(float(np.linalg.norm(pts[1] - pts[0])), 1.0)
    return np.array([pts[:, 0].min() - growth, pts[:, 1].min() - growth, pts[:, 0].max() + growth, pts[:, 1].max() + growth])


def is_truncated(share_outside: float) -> bool:
    return share_outside > TRUNCATED_SHARE
