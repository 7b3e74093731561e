"""Response models for a face, a comparison and a ``frood embed`` line, and their builders.

The builders take the engine's result objects (duck-typed: this package imports nothing from the
engine or the app), round the numbers once, and return plain dicts with a fixed key order, so every
shell writes the same JSON for the same face.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.messages import decision_message, describe


class Reason(BaseModel):
    """A reason code with its English and Simplified Chinese message."""

    code: str
    en: str
    zh: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaceJSON(_Strict):
    """The largest face of an image, as ``frood extract --json``, the Extract tab and ``/extract`` show it."""

    feature: list[float] | None = None
    quality_score: float | None
    resolution: str  # the aligned crop's size
    image_resolution: str
    detected_face_area_ratio: float
    bbox: list[float]
    det_score: float
    pose: dict[str, float]
    faces_found: int
    reasons: list[Reason]
    model: str


class NoFaceJSON(_Strict):
    """An image without a face: an empty feature and the ``no_face`` reason."""

    feature: list[float]
    quality_score: float
    resolution: str
    detected_face_area_ratio: float
    bbox: list[float]
    faces_found: int
    reasons: list[Reason]
    model: str


class CompareSideJSON(_Strict):
    quality_score: float | None
    bbox: list[float]
    faces_found: int
    reasons: list[Reason]


class CompareJSON(_Strict):
    similarity: float | None
    quality_a: float | None
    quality_b: float | None
    decision: str
    message: dict[str, str]
    match_threshold: float
    model: str
    image_a: CompareSideJSON
    image_b: CompareSideJSON


class EmbedFaceJSON(_Strict):
    bbox: list[float]
    det_score: float
    quality_score: float | None
    reasons: list[str]  # codes only: a compact line per face
    feature: list[float]


class EmbedLineJSON(_Strict):
    """One ``frood embed`` output line: every face of one input, or the input's error."""

    path: str
    faces: list[EmbedFaceJSON]
    error: str | None
    error_code: str | None = None  # only on a failed input (a no-face answer is not a failure)


# Face ↔ person link (issue 10, optional, off by default): /extract adds this field when FACE_PERSON_BOX
# or the request's person_box flag is on; the keypoint service finds the box (service/keypoints.py).
class PersonBoxJSON(_Strict):
    person_box: list[float] | None  # x1, y1, x2, y2 of the person whose box holds the face; null when none does


def person_box_json(bbox: Any) -> dict:
    return PersonBoxJSON(person_box=None if bbox is None else [round(float(v), 1) for v in bbox]).model_dump()


def _feature(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


def _quality(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None else None


def analysis_json(result: Any, include_feature: bool = True) -> dict:
    """The JSON of an ``AnalysisResult``'s largest face (or of its absence)."""
    if not result.faces:
        return NoFaceJSON(
            feature=[],
            quality_score=0.0,
            resolution=f"{result.image_size[0]}x{result.image_size[1]}",
            detected_face_area_ratio=0.0,
            bbox=[],
            faces_found=0,
            reasons=describe(["no_face"]),
            model=result.model,
        ).model_dump()
    face = result.faces[0]
    payload = FaceJSON(
        feature=_feature(face.feature) if include_feature else None,
        quality_score=_quality(face.quality),
        resolution=f"{face.aligned.shape[1]}x{face.aligned.shape[0]}",
        image_resolution=f"{result.image_size[0]}x{result.image_size[1]}",
        detected_face_area_ratio=round(face.area_ratio, 4),
        bbox=[round(v, 1) for v in face.bbox],
        det_score=round(face.det_score, 4),
        pose={key: round(value, 1) for key, value in face.pose.items()},
        faces_found=len(result.faces),
        reasons=describe(face.reasons),
        model=result.model,
    )
    return payload.model_dump(exclude=None if include_feature else {"feature"})


def compare_json(result: Any) -> dict:
    """The JSON of a ``CompareResult``: similarity, both qualities, the decision and each side's face."""

    def side(analysis: Any) -> CompareSideJSON:
        data = analysis_json(analysis, include_feature=False)
        return CompareSideJSON(**{key: data[key] for key in ("quality_score", "bbox", "faces_found", "reasons")})

    return CompareJSON(
        similarity=None if result.similarity is None else round(result.similarity, 4),
        quality_a=_quality(result.quality_a),
        quality_b=_quality(result.quality_b),
        decision=result.decision,
        message=decision_message(result.decision),
        match_threshold=result.match_threshold,
        model=result.a.model,
        image_a=side(result.a),
        image_b=side(result.b),
    ).model_dump()


def embed_line(path: str, result: Any = None, error: str | None = None, error_code: str | None = None) -> dict:
    """One ``frood embed`` line: all faces of ``result`` (an ``AnalysisResult``), or ``error``."""
    faces = []
    if result is not None:
        faces = [
            EmbedFaceJSON(
                bbox=[round(v, 1) for v in face.bbox],
                det_score=round(face.det_score, 4),
                quality_score=_quality(face.quality),
                reasons=list(face.reasons),
                feature=_feature(face.feature),
            )
            for face in result.faces
        ]
        if not faces and error is None:
            error = "no face found"
    line = EmbedLineJSON(path=path, faces=faces, error=error, error_code=error_code).model_dump()
    if error_code is None:
        line.pop("error_code")
    return line
