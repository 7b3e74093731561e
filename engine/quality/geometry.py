"""Whether a face is cut by the image border (pure geometry on boxes and landmarks).

Here, not in ``recognition``, because the quality stage needs it and ``ood`` imports nothing from
``recognition`` (the dependency runs one way: ``recognition`` → ``ood``). The detector
(``engine.face.detect``) measures the share with :func:`outside_share` of :func:`landmark_box`, the
quality score and its reasons read it back with :func:`is_truncated`.
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
