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

# The border-truncation geometry lives in engine.quality.geometry (the quality stage needs it; ood imports nothing from
# recognition); re-exported here for the detector and existing callers.
from engine.quality.geometry import LANDMARK_BOX_GROWTH, TRUNCATED_SHARE, is_truncated, landmark_box, outside_share  # noqa: F401


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
