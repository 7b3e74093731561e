"""The JSON of people and their keypoints (PaddleX's human-keypoint-detection serving shape)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


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


class PersonJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bbox: list[float]  # x1, y1, x2, y2 in the image's pixels
    kpts: list[list[float]]  # 17 COCO keypoints, each [x, y, score]
    detScore: float  # noqa: N815 (PaddleX's field names)
    kptScore: float  # noqa: N815


class KeypointsResultJSON(BaseModel):
    """The ``result`` of ``/human-keypoint-detection`` (inside PaddleX's envelope)."""

    model_config = ConfigDict(extra="forbid")

    image: str  # base64 JPEG with every person's box and skeleton drawn
    persons: list[PersonJSON]
