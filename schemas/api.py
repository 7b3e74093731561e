"""Response models of the HTTP routes (``/extract``, ``/models``, the PaddleX face routes), the gallery's
identify/enrol answers and the reject webhook, and their builders.

The routes return ``JSONResponse(builder(...))``, so the bytes on the wire are exactly the builder's dict
(key order included); the models are also declared as each route's ``response_model``, so FastAPI's
``/openapi.json`` documents them. Like :mod:`schemas.faces`, this module imports nothing from the
engine or the app: results come in duck-typed.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from schemas.faces import Reason, _quality

Result = TypeVar("Result")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- /extract (InsightFace-evaluation style) and /models -----------------------------------------------------


class ExtractFaceJSON(_Strict):
    """One face of ``/extract?all_faces=true`` (main face first): what deepface's ``represent`` gives per face."""

    bbox: list[float]
    det_score: float
    quality_score: float | None
    reasons: list[Reason]
    feature: list[float]
    components: dict | None = None  # schemas.components.ComponentsJSON, when asked for


class ExtractJSON(_Strict):
    """``/extract`` for an image with a face: the main face's quality first, then its feature."""

    model_name: str
    quality_score: float | None
    faces_found: int
    bbox: list[float]
    reasons: list[Reason]
    # issue 10: written only when the request (or FACE_PERSON_BOX) asks for it; null when no person holds the face
    person_box: list[float] | None = None
    components: dict | None = None  # the main face's ISO/IEC 29794-5 components (``components=true``)
    faces: list[ExtractFaceJSON] | None = None  # every face (``all_faces=true``)
    latency_ms: float
    feature: list[float]


class ExtractNoFaceJSON(_Strict):
    """``/extract`` for an image without a face (HTTP 200: a valid answer, not an error): the same fields as a face's
    answer, empty, with the reason saying why."""

    model_name: str
    quality_score: float
    faces_found: int
    bbox: list[float] | None
    reasons: list[Reason]
    message: str
    faces: list[ExtractFaceJSON] | None = None
    latency_ms: float
    feature: list[float]


class ModelJSON(_Strict):
    name: str
    feature_dim: int
    default: bool


class ModelsJSON(_Strict):
    models: list[ModelJSON]


def extract_json(
    model_name: str, result: Any, latency_ms: float, person_box: dict | None = None, all_faces: bool = False, components: list | None = None
) -> dict:
    """The ``/extract`` answer for an ``AnalysisResult``: its main face (or the no-face answer), optionally every face.

    ``person_box``: :func:`schemas.faces.person_box_json`'s dict when the person box was asked for, else None
    (then the key is not written at all). ``components``: one ``engine.quality.components.Components`` per face
    when they were asked for."""
    from schemas.components import components_json
    from schemas.faces import _feature, analysis_json
    from schemas.messages import describe

    reports = [components_json(report) for report in components] if components is not None else None
    faces = None
    if all_faces:
        faces = [
            ExtractFaceJSON(
                bbox=[round(v, 1) for v in face.bbox],
                det_score=round(face.det_score, 4),
                quality_score=None if face.quality is None else round(float(face.quality), 4),
                reasons=describe(face.reasons),
                feature=_feature(face.feature),
                components=reports[index] if reports else None,
            )
            for index, face in enumerate(result.faces)
        ]
    if not result.faces:
        payload = ExtractNoFaceJSON(
            model_name=model_name,
            feature=[],
            quality_score=0.0,
            message="no face found",
            faces_found=0,
            bbox=None,
            reasons=describe(["no_face"]),
            faces=faces,
            latency_ms=round(latency_ms, 1),
        ).model_dump()
        if faces is None:
            payload.pop("faces")
        return payload
    face = analysis_json(result)
    payload = ExtractJSON(
        model_name=model_name,
        feature=face["feature"],
        quality_score=face["quality_score"],
        faces_found=face["faces_found"],
        bbox=face["bbox"],
        reasons=face["reasons"],
        person_box=(person_box or {}).get("person_box"),
        components=reports[0] if reports else None,
        faces=faces,
        latency_ms=round(latency_ms, 1),
    ).model_dump()
    for key, asked in (("person_box", person_box is not None), ("components", reports is not None), ("faces", all_faces)):
        if not asked:
            payload.pop(key)
    return payload


def models_json(models: list[Any]) -> dict:
    """``models``: the service's usable ``ModelInfo`` rows."""
    return ModelsJSON(models=[ModelJSON(name=model.name, feature_dim=model.feature_dim, default=model.default) for model in models]).model_dump()


# --- PaddleX face-recognition serving routes ------------------------------------------------------------------


class Envelope(_Strict, Generic[Result]):
    """PaddleX's answer envelope; on failure ``result`` is absent and the HTTP status equals ``errorCode``."""

    logId: str  # noqa: N815 (PaddleX's field names)
    errorCode: int  # noqa: N815
    errorMsg: str  # noqa: N815
    result: Result | None = None


class ErrorEnvelope(_Strict):
    logId: str  # noqa: N815
    errorCode: int  # noqa: N815
    errorMsg: str  # noqa: N815


class SkippedJSON(_Strict):
    """An image an enrolment did not add, and why (no face, low quality, unreadable)."""

    image: str
    label: str
    reason: str


class IndexBuildJSON(_Strict):
    indexKey: str  # noqa: N815
    idMap: dict[str, str]  # noqa: N815
    skipped: list[SkippedJSON]
    replayed: bool | None = None  # only on a retried request (same requestId): nothing was analysed again


class IndexAddJSON(_Strict):
    idMap: dict[str, str]  # noqa: N815
    skipped: list[SkippedJSON]
    replayed: bool | None = None


class IndexRemoveJSON(_Strict):
    idMap: dict[str, str]  # noqa: N815
    replayed: bool | None = None


class LabelScoreJSON(_Strict):
    label: str
    score: float


class InferFaceJSON(_Strict):
    """One face of ``/face-recognition-infer``: PaddleX's fields plus our ``qualityScore`` and ``topK``."""

    bbox: list[float]
    recResults: list[LabelScoreJSON]  # noqa: N815 (the best label; empty for an unknown face)
    score: float  # detection score
    qualityScore: float  # noqa: N815
    topK: list[LabelScoreJSON]  # noqa: N815
    components: dict | None = None  # ours, only with ``components=true``: schemas.components.ComponentsJSON


class InferJSON(_Strict):
    faces: list[InferFaceJSON]
    image: str  # the annotated image, base64 JPEG


def _drop_absent(payload: dict, *keys: str) -> dict:
    """Optional markers (``replayed``) are written only when set, as the routes always did."""
    for key in keys:
        if payload.get(key) is None:
            payload.pop(key, None)
    return payload


def envelope_json(log_id: str, result: dict) -> dict:
    return {"logId": log_id, "errorCode": 0, "errorMsg": "Success", "result": result}


def envelope_error_json(log_id: str, status: int, message: str) -> dict:
    return ErrorEnvelope(logId=log_id, errorCode=status, errorMsg=message).model_dump()


def index_build_json(key: str, id_map: dict[str, str], skipped: list[dict], replayed: bool = False) -> dict:
    payload = IndexBuildJSON(indexKey=key, idMap=id_map, skipped=skipped, replayed=replayed or None).model_dump()
    return _drop_absent(payload, "replayed")


def index_add_json(id_map: dict[str, str], skipped: list[dict], replayed: bool = False) -> dict:
    return _drop_absent(IndexAddJSON(idMap=id_map, skipped=skipped, replayed=replayed or None).model_dump(), "replayed")


def index_remove_json(id_map: dict[str, str], replayed: bool = False) -> dict:
    return _drop_absent(IndexRemoveJSON(idMap=id_map, replayed=replayed or None).model_dump(), "replayed")


def _label_scores(matches: list[tuple[str, float]]) -> list[LabelScoreJSON]:
    return [LabelScoreJSON(label=label, score=round(score, 4)) for label, score in matches]


def infer_json(faces: list[Any], image_base64: str, unknown: str = "unknown", components: list | None = None) -> dict:
    """``faces``: the gallery's identified faces (``bbox``, ``det_score``, ``quality``, ``matches``, ``label``).
    ``components``: one ``engine.quality.components.Components`` per face, in the same order, when asked for; only
    then does a face carry the key, so PaddleX's answer is otherwise unchanged."""
    from schemas.components import components_json

    reports = [components_json(report) for report in components] if components is not None else None
    payload = InferJSON(
        faces=[
            InferFaceJSON(
                bbox=[round(v, 1) for v in face.bbox],
                recResults=_label_scores(face.matches[:1]) if face.label != unknown else [],
                score=round(face.det_score, 4),
                qualityScore=round(face.quality, 4),
                topK=_label_scores(face.matches),
                components=reports[index] if reports is not None else None,
            )
            for index, face in enumerate(faces)
        ],
        image=image_base64,
    ).model_dump()
    if reports is None:
        for face in payload["faces"]:
            face.pop("components")
    return payload


def embed_components(line: dict, components: list) -> dict:
    """``frood embed --components``: a :func:`schemas.faces.embed_line` line whose faces each carry their component
    report (one ``engine.quality.components.Components`` per face, in the line's order), the same JSON as ``/extract``'s."""
    from schemas.components import components_json

    faces = [face | {"components": components_json(report)} for face, report in zip(line["faces"], components, strict=True)]
    return line | {"faces": faces}


# --- the gallery's own answers (``frood index identify`` / ``build`` / ``add``) ---------------------------------------


class IdentifiedFaceJSON(_Strict):
    bbox: list[float]
    det_score: float
    quality_score: float | None
    reasons: list[str]
    label: str
    matches: list[LabelScoreJSON]


class EnrolJSON(_Strict):
    enrolled: int
    id_map: dict[int, str]
    skipped: list[SkippedJSON]


def identified_face_json(face: Any) -> dict:
    return IdentifiedFaceJSON(
        bbox=[round(v, 1) for v in face.bbox],
        det_score=round(face.det_score, 4),
        quality_score=_quality(face.quality),
        reasons=list(face.reasons),
        label=face.label,
        matches=_label_scores(face.matches),
    ).model_dump()


def enrol_json(ids: list[int], labels: list[str], skipped: list[dict]) -> dict:
    return EnrolJSON(enrolled=len(ids), id_map=dict(zip(ids, labels)), skipped=skipped).model_dump()


# --- the reject webhook -----------------------------------------------------------------------------------------


class RejectWebhookJSON(_Strict):
    """What the reject webhook posts for an image scored below ``AUTO_REJECT_THRESHOLD``."""

    quality_score: float
    reasons: list[str]
    source: str  # the client's camera/device/site id when given, else the shell
    channel: str  # the shell: ui or api
    operation: str
    model: str
    image: str | None  # base64 PNG, at most 512 px a side; null unless STORE_API_THUMBNAILS (API) / STORE_THUMBNAILS (UI) keep images
    components: dict | None = None  # the main face's ISO/IEC 29794-5 components (schemas.components); null without a face


def reject_webhook_json(
    quality: float, reasons: list[str], source: str, channel: str, operation: str, model: str, image: str | None, components: dict | None = None
) -> dict:
    return RejectWebhookJSON(
        quality_score=round(float(quality), 4),
        reasons=list(reasons),
        source=source,
        channel=channel,
        operation=operation,
        model=model,
        image=image,
        components=components,
    ).model_dump()


# --- errors outside the PaddleX routes ----------------------------------------------------------------------------


class DetailJSON(_Strict):
    """Every error of a non-PaddleX route: one readable message, the HTTP status says the kind."""

    detail: str


def detail_json(message: str) -> dict:
    return DetailJSON(detail=message).model_dump()
