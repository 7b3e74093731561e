"""The JSON of people and their keypoints (PaddleX's human-keypoint-detection serving shape)."""

from __future__ import annotations

from typing import Any


def person_json(person: Any) -> dict:
    """PaddleX's serving shape: ``bbox``, ``kpts`` (17 × [x, y, score]), ``detScore``, ``kptScore``."""
    return {
        "bbox": [round(float(v), 1) for v in person.bbox],
        "kpts": [[round(float(x), 1), round(float(y), 1), round(float(s), 4)] for x, y, s in person.keypoints],
        "detScore": round(person.det_score, 4),
        "kptScore": round(person.kpt_score, 4),
    }


def keypoints_json(result: Any) -> dict:
    """Everyone found in one image, with the image's size."""
    return {"persons": [person_json(person) for person in result.persons], "width": result.width, "height": result.height}
