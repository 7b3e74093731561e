"""``/galleries`` (galleries and identities by name) and ``frood index``'s named verbs: what is asked and answered.

Builders take duck-typed inputs (a gallery record with ``key``, ``name``, ``model``, ``dim``, ``index_type``,
``metric``, ``backend``, ``created``; identified faces as ``service.gallery`` makes them) and return the dict the
route sends, validated by the model FastAPI documents.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import SkippedJSON

MAX_PAGE_SIZE = 1000
MAX_IMAGES = 100  # photos per enrolment request
NAME_DESCRIPTION = "1–64 of A-Z a-z 0-9 . _ : -"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------------------------


class CreateGalleryRequest(_Strict):
    name: str = Field(description=NAME_DESCRIPTION)
    indexType: Literal["Flat", "IVF", "HNSW32"] = "Flat"  # noqa: N815 (the PaddleX routes' naming style)
    metric: Literal["IP", "L2"] = "IP"


class RenameGalleryRequest(_Strict):
    newName: str = Field(description=NAME_DESCRIPTION)  # noqa: N815


class RenameIdentityRequest(_Strict):
    newLabel: str = Field(min_length=1, max_length=128)  # noqa: N815


class AddPhotosRequest(_Strict):
    """Photos (base64, a ``data:`` URL or an http(s) URL), quality-gated, and/or the caller's own embeddings (trusted)."""

    images: list[str] = Field(default_factory=list, max_length=MAX_IMAGES)
    embeddings: list[list[float]] = Field(default_factory=list, max_length=MAX_IMAGES)
    requestId: str | None = None  # noqa: N815 (a retry with the same id and body is answered, not enrolled twice)
    source: str | None = None


class IdentifyRequest(_Strict):
    image: str | None = None
    embedding: list[float] | None = None
    topK: int = Field(5, ge=1, le=100)  # noqa: N815
    threshold: float | None = Field(None, ge=-1.0, le=1.0, description="cosine similarity; default: the model's match threshold")
    source: str | None = None
    components: bool | None = Field(None, description="each face's ISO/IEC 29794-5 components (as /extract's); default off")


# --- answers --------------------------------------------------------------------------------------------------


class GalleryJSON(_Strict):
    name: str
    indexKey: str  # noqa: N815 (the PaddleX routes take it as is)
    size: int | None  # vectors (photos); null when the gallery cannot be opened (see problem)
    identities: int | None
    model: str
    featureDim: int  # noqa: N815
    indexType: str  # noqa: N815
    metric: str
    backend: str
    created: str
    problem: str | None = None


class GalleriesJSON(_Strict):
    galleries: list[GalleryJSON]


class GalleryDeletedJSON(_Strict):
    name: str
    indexKey: str  # noqa: N815
    deleted: bool


class IdentityJSON(_Strict):
    gallery: str
    label: str
    photos: int
    ids: list[int]


class IdentityRowJSON(_Strict):
    label: str
    photos: int
    ids: list[int]


class IdentitiesJSON(_Strict):
    gallery: str
    total: int  # identities in the gallery
    page: int
    pageSize: int  # noqa: N815
    identities: list[IdentityRowJSON]


class PhotosAddedJSON(_Strict):
    gallery: str
    label: str
    added: list[int]  # the new photo ids
    skipped: list[SkippedJSON]
    photos: int  # the identity's photos now
    replayed: bool | None = None


class RemovedJSON(_Strict):
    gallery: str
    label: str
    removed: list[int]


class MatchJSON(_Strict):
    label: str
    score: float
    id: int


class IdentifiedJSON(_Strict):
    bbox: list[float] | None  # null for an embedding
    detScore: float | None  # noqa: N815
    quality: float | None
    reasons: list[str]
    label: str  # the best match at or above the threshold, else "unknown"
    score: float | None  # the best match's score
    matches: list[MatchJSON]
    components: dict | None = None  # only with ``components=true``: schemas.components.ComponentsJSON (null: an embedding)


class IdentifyJSON(_Strict):
    gallery: str
    topK: int  # noqa: N815
    threshold: float
    faces: list[IdentifiedJSON]


# --- builders -------------------------------------------------------------------------------------------------


def gallery_json(record: Any, size: int | None = None, identities: int | None = None, problem: str | None = None) -> dict:
    payload = GalleryJSON(
        name=record.name, indexKey=record.key, size=size, identities=identities, model=record.model, featureDim=record.dim,
        indexType=record.index_type, metric=record.metric, backend=record.backend, created=str(record.created), problem=problem,
    ).model_dump()
    if problem is None:
        payload.pop("problem")
    return payload


def galleries_json(galleries: list[dict]) -> dict:
    return {"galleries": galleries}


def gallery_deleted_json(record: Any) -> dict:
    return GalleryDeletedJSON(name=record.name, indexKey=record.key, deleted=True).model_dump()


def identity_json(gallery: str, label: str, ids: list[int]) -> dict:
    return IdentityJSON(gallery=gallery, label=label, photos=len(ids), ids=ids).model_dump()


def identities_json(gallery: str, total: int, page: int, page_size: int, rows: list[tuple[str, list[int]]]) -> dict:
    return IdentitiesJSON(
        gallery=gallery, total=total, page=page, pageSize=page_size,
        identities=[IdentityRowJSON(label=label, photos=len(ids), ids=ids) for label, ids in rows],
    ).model_dump()


def photos_added_json(gallery: str, label: str, added: list[int], skipped: list[dict], photos: int, replayed: bool = False) -> dict:
    payload = PhotosAddedJSON(gallery=gallery, label=label, added=added, skipped=skipped, photos=photos, replayed=replayed or None).model_dump()
    if not replayed:
        payload.pop("replayed")
    return payload


def removed_json(gallery: str, ids: list[int], label: str) -> dict:
    return RemovedJSON(gallery=gallery, label=label, removed=ids).model_dump()


def identify_json(
    gallery: str, faces: list[Any], top_k: int, threshold: float, from_embedding: bool = False, components: list | None = None
) -> dict:
    """``faces``: identified faces (``bbox``, ``det_score``, ``quality``, ``reasons``, ``matches``, ``ids``, ``label``).
    ``components``: when asked for, one ``engine.quality.components.Components`` (or None) per face, in the same order;
    only then does a face carry the key, so answers stay small."""
    from schemas.components import components_json

    reports = [None if report is None else components_json(report) for report in components] if components is not None else None
    rows = []
    for index, face in enumerate(faces):
        matches = [MatchJSON(label=label, score=round(score, 4), id=photo_id) for (label, score), photo_id in zip(face.matches, face.ids)]
        rows.append(IdentifiedJSON(
            bbox=None if from_embedding else [round(v, 1) for v in face.bbox],
            detScore=None if from_embedding else round(float(face.det_score), 4),
            quality=None if from_embedding else round(float(face.quality), 4),
            reasons=list(face.reasons),
            label=face.label,
            score=matches[0].score if matches else None,
            matches=matches,
            components=reports[index] if reports is not None else None,
        ))
    payload = IdentifyJSON(gallery=gallery, topK=top_k, threshold=round(threshold, 4), faces=rows).model_dump()
    if reports is None:
        for row in payload["faces"]:
            row.pop("components")
    return payload
