"""``POST /human-keypoint-detection``: PaddleX's human keypoint serving API over :mod:`keypoints`.

Request ``{"image": base64 or http(s) URL, "detThreshold": number | null}``; answer in the PaddleX
envelope with ``result = {"image": base64 JPEG with skeletons, "persons": [{"bbox", "kpts", "detScore",
"kptScore"}]}``. Bad input gets the same typed errors and statuses as the face routes.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.routes import envelope
from api.security import image_bytes
from schemas.api import Envelope
from schemas.keypoints import KeypointsResultJSON, person_json
from service import keypoints as service
from settings import get_settings

log = logging.getLogger("frood.api.keypoints")
PATH = "/human-keypoint-detection"
router = APIRouter()
ROUTE_SCOPES = {PATH: "keypoints"}


class KeypointRequest(BaseModel):
    image: str
    detThreshold: float | None = Field(None, ge=0.0, le=1.0)  # noqa: N815 (PaddleX's field name)


def _detect(data: bytes, threshold: float) -> dict:
    result = service.detect(data, threshold, source="api", name="api")
    return {"image": service.drawn_jpeg_base64(result), "persons": [person_json(person) for person in result.persons]}


@router.post(PATH, response_model=Envelope[KeypointsResultJSON])
def human_keypoint_detection(body: KeypointRequest, request: Request) -> JSONResponse:
    settings = get_settings()
    threshold = settings.keypoints_det_threshold if body.detThreshold is None else body.detThreshold
    result = _detect(image_bytes(body.image, settings), threshold)
    log.info("Keypoints: %d person(s) at detThreshold %.2f", len(result["persons"]), threshold)
    return envelope(result)


def install(app: FastAPI) -> None:
    """Mount the route (its errors use the PaddleX envelope: see ``api.routes.PADDLEX_PATHS``)."""
    app.include_router(router)
