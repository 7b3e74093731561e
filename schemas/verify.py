"""``POST /verify`` and ``frood verify``: what is asked and what is answered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.components import components_json
from schemas.faces import Reason
from schemas.messages import decision_message, describe


class VerifyRequest(BaseModel):
    """Each side is an image (``img1``: base64, a ``data:`` URL or an http(s) URL) or an embedding (``embedding1``)."""

    model_config = ConfigDict(extra="forbid")

    img1: str | None = None
    img2: str | None = None
    embedding1: list[float] | None = None
    embedding2: list[float] | None = None
    threshold: float | None = Field(None, description="cosine similarity in [-1, 1]; default: the model's match threshold")
    model_name: str = "default"
    source: str | None = None
    components: bool | None = Field(None, description="also report each compared face's ISO/IEC 29794-5 components (as /extract)")


class VerifySideJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str  # "image" or "embedding"
    bbox: list[float] | None  # x1, y1, x2, y2 of the face compared (the image's main face)
    quality_score: float | None
    reasons: list[Reason]
    faces_found: int | None
    # schemas.components.ComponentsJSON, written only when asked (``components=true``); null for an embedding or no face
    components: dict | None = None


class VerifyJSON(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verified: bool | None  # null: the decision is to review or retake, not a verdict
    decision: str
    message: dict[str, str]
    similarity: float | None  # cosine of the two unit features
    distance: float | None  # 1 - similarity (deepface's cosine distance)
    similarity_metric: str
    threshold: float
    model: str
    img1: VerifySideJSON
    img2: VerifySideJSON
    latency_ms: float


def _side(side: Any, components: bool) -> VerifySideJSON:
    quality = None if side.quality is None else round(float(side.quality), 4)
    bbox = None if side.bbox is None else [round(v, 1) for v in side.bbox]
    report = components_json(side.components) if components and side.components is not None else None
    return VerifySideJSON(input=side.kind, bbox=bbox, quality_score=quality, reasons=describe(side.reasons), faces_found=side.faces_found, components=report)


def verify_json(result: Any, components: bool = False) -> dict:
    """``components``: the caller asked for each side's component report; the key is written only then, so answers
    stay small."""
    similarity = None if result.similarity is None else round(result.similarity, 4)
    payload = VerifyJSON(
        verified=result.verified,
        decision=result.decision,
        message=decision_message(result.decision),
        similarity=similarity,
        distance=None if similarity is None else round(1.0 - similarity, 4),
        similarity_metric="cosine",
        threshold=round(result.threshold, 4),
        model=result.model,
        img1=_side(result.first, components),
        img2=_side(result.second, components),
        latency_ms=round(result.latency_ms, 1),
    ).model_dump()
    if not components:
        for side in ("img1", "img2"):
            payload[side].pop("components")
    return payload
