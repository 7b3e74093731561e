"""Galleries and identities by name (``/galleries``), beside the PaddleX routes (which keep working by ``indexKey``).

A gallery has a unique ``name`` (1–64 of ``A-Z a-z 0-9 . _ : -``) and its PaddleX ``indexKey``; identities are
labels, and a photo is one enrolled face with its gallery id. Reads and identification need ``gallery:read``,
changes ``gallery:write`` (the door checks both, per method: ``ROUTE_SCOPES``). Photos and identification take
JSON (base64 / URL images, or embeddings) or multipart files; their images
join the model's request batcher like ``/extract``, with its back-pressure (503 + ``Retry-After``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from api.routes import flag
from api.security import image_bytes
from errors import ApiError
from schemas import galleries as schemas
from schemas.api import DetailJSON
from service import faces as faces_service
from service import gallery as gallery_service
from service.validation import check_identifier, shorten
from settings import get_settings

router = APIRouter()
GALLERIES = "/galleries"
GALLERY = "/galleries/{name}"
IDENTITIES = "/galleries/{name}/identities"
IDENTITY = "/galleries/{name}/identities/{label:path}"
PHOTOS = "/galleries/{name}/identities/{label:path}/photos"
PHOTO = "/galleries/{name}/photos/{photo_id}"
IDENTIFY = "/galleries/{name}/identify"
# The door's table (api.door.ScopeTable, templates included): what each method on these paths needs. Reads and
# identification need gallery:read; every change gallery:write (an unknown method: the stricter, "*").
ROUTE_SCOPES = {path: {"GET": "gallery:read", "*": "gallery:write"} for path in (GALLERIES, GALLERY, IDENTITIES, IDENTITY, PHOTOS, PHOTO)}
ROUTE_SCOPES[IDENTIFY] = "gallery:read"
_ERRORS = {status: {"model": DetailJSON} for status in (400, 401, 403, 404, 409, 413, 422, 503)}


def _recorder(operation: str, source_id: str | None) -> gallery_service.Recorder:
    """Every image these routes analyse gets the same stats row and reject webhook as ``/extract``."""

    def record(decoded, analysis, latency_ms: float) -> None:
        faces_service.record_analysis(operation, "api", decoded, analysis, latency_ms, source_id=source_id)

    return record


def _parse(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details = "; ".join(f"{'.'.join(str(p) for p in problem['loc']) or 'body'}: {problem['msg']}" for problem in error.errors())
        raise ApiError(422, shorten_text(f"invalid request: {details}", 1000)) from error


async def _json_body(request: Request, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(await request.body())
    except ValueError as error:
        raise ApiError(400, "the request body is not valid JSON") from error
    return _parse(model, data)


def shorten_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def _files(form: Any, names: tuple[str, ...], limit: int) -> list[tuple[bytes, str]]:
    settings = get_settings()
    uploads = [value for name in names for value in form.getlist(name) if isinstance(value, UploadFile)]
    if len(uploads) > limit:
        raise ApiError(422, f"at most {limit} files per request, got {len(uploads)}")
    files = []
    for index, upload in enumerate(uploads):
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, f"file {index} is larger than {settings.max_upload_bytes // 2**20} MiB")
        files.append((data, shorten(upload.filename or f"files[{index}]", 80).strip("'")))
    return files


def _form_fields(form: Any, names: tuple[str, ...]) -> dict[str, str]:
    return {name: value for name in names if isinstance(value := form.get(name), str) and value != ""}


def _source(source: str | None) -> str | None:
    return None if source is None else check_identifier(source, "source")


def _multipart(required: list[str], fields: dict[str, dict]) -> dict:
    schema = {"type": "object", "required": required, "properties": fields}
    return {"multipart/form-data": {"schema": schema}}


# --- galleries ------------------------------------------------------------------------------------------------


@router.get(GALLERIES, response_model=schemas.GalleriesJSON, responses=_ERRORS)
def list_galleries() -> JSONResponse:
    """Every gallery: name, indexKey, size (photos), identities, model, feature dimension, index type, metric."""
    return JSONResponse(gallery_service.list_galleries())


@router.post(GALLERIES, response_model=schemas.GalleryJSON, responses=_ERRORS)
def create_gallery(body: schemas.CreateGalleryRequest) -> JSONResponse:
    """An empty gallery called ``name`` (409 when the name is taken); its ``indexKey`` works on the PaddleX routes too."""
    return JSONResponse(gallery_service.create_gallery(body.name, body.indexType, body.metric))


@router.patch(GALLERY, response_model=schemas.GalleryJSON, responses=_ERRORS)
def rename_gallery(name: str, body: schemas.RenameGalleryRequest) -> JSONResponse:
    """A new name (409 when another gallery has it); the indexKey stays."""
    return JSONResponse(gallery_service.rename_gallery(name, body.newName))


@router.delete(GALLERY, response_model=schemas.GalleryDeletedJSON, responses=_ERRORS)
def delete_gallery(name: str) -> JSONResponse:
    """The gallery, its photos and its vectors, gone for every replica."""
    return JSONResponse(gallery_service.delete_gallery(name))


# --- identities -----------------------------------------------------------------------------------------------


@router.get(IDENTITIES, response_model=schemas.IdentitiesJSON, responses=_ERRORS)
def list_identities(name: str, page: int = Query(1, ge=1), pageSize: int = Query(100, ge=1, le=schemas.MAX_PAGE_SIZE)) -> JSONResponse:  # noqa: N803
    """One page of identities by label, each with its photo count and photo ids."""
    return JSONResponse(gallery_service.list_identities(name, page, pageSize))


@router.patch(IDENTITY, response_model=schemas.IdentityJSON, responses=_ERRORS)
def rename_identity(name: str, label: str, body: schemas.RenameIdentityRequest) -> JSONResponse:
    """Every photo of ``label`` relabelled ``newLabel`` (409 when that identity exists: no silent merge)."""
    return JSONResponse(gallery_service.rename_identity(name, label, body.newLabel))


@router.delete(IDENTITY, response_model=schemas.RemovedJSON, responses=_ERRORS)
def remove_identity(name: str, label: str) -> JSONResponse:
    """Every photo of ``label`` removed."""
    return JSONResponse(gallery_service.remove_identity(name, label))


@router.delete(PHOTO, response_model=schemas.RemovedJSON, responses=_ERRORS)
def remove_photo(name: str, photo_id: int) -> JSONResponse:
    """One photo (by the id its enrolment answered) removed."""
    return JSONResponse(gallery_service.remove_photo(name, photo_id))


_PHOTOS_BODY = {
    "application/json": {"schema": schemas.AddPhotosRequest.model_json_schema()},
    **_multipart(["files"], {"files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                             "requestId": {"type": "string"}, "source": {"type": "string"}}),
}


@router.post(PHOTOS, response_model=schemas.PhotosAddedJSON, responses=_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": _PHOTOS_BODY}})
async def add_photos(name: str, label: str, request: Request) -> JSONResponse:
    """Photos of ``label`` (JSON ``images``: base64 / URL, or multipart ``files``), quality-gated, and/or its ``embeddings``:
    the ids added and the images skipped, with why. A ``requestId`` makes a retry safe."""
    if _is_multipart(request):
        form = await request.form()
        files = await _files(form, ("files", "file", "images"), schemas.MAX_IMAGES)
        fields = _form_fields(form, ("requestId", "source"))
        body = _parse(schemas.AddPhotosRequest, fields)
        raw: list[Any] = files
    else:
        body = await _json_body(request, schemas.AddPhotosRequest)
        raw = [(value, f"images[{index}]") for index, value in enumerate(body.images)]
    if body.requestId is not None:
        check_identifier(body.requestId, "requestId")
    source = _source(body.source)

    def work(admitted: bool) -> dict:
        settings = get_settings()
        images = [(data if isinstance(data, bytes) else image_bytes(data, settings), image_name) for data, image_name in raw]
        return gallery_service.add_photos(name, label, images, body.embeddings, body.requestId, _recorder("gallery_add", source), admitted)

    if not raw:
        return JSONResponse(await run_in_threadpool(work, False))
    with faces_service.admit(None, images=len(raw)) as ticket:  # 503 + Retry-After now, rather than a long wait later
        return JSONResponse(await run_in_threadpool(work, ticket.admitted))


_IDENTIFY_BODY = {
    "application/json": {"schema": schemas.IdentifyRequest.model_json_schema()},
    **_multipart(["image"], {"image": {"type": "string", "format": "binary"}, "topK": {"type": "integer"},
                             "threshold": {"type": "number"}, "source": {"type": "string"}, "components": {"type": "boolean"}}),
}


@router.post(IDENTIFY, response_model=schemas.IdentifyJSON, responses=_ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": _IDENTIFY_BODY}})
async def identify(name: str, request: Request, components_query: bool | None = Query(None, alias="components")) -> JSONResponse:
    """Every face of an image (JSON ``image`` or multipart ``image``), or the caller's ``embedding``, against the gallery:
    the ``topK`` (1–100) best photos with scores, and the best label when its score reaches ``threshold`` ([-1, 1];
    default: the model's match threshold), else "unknown". ``components`` (body or form field, or query; the body
    wins) adds each face's ISO/IEC 29794-5 report, as ``/extract``'s."""
    data: bytes | str | None
    if _is_multipart(request):
        form = await request.form()
        files = await _files(form, ("image",), 1)
        fields: dict[str, Any] = _form_fields(form, ("topK", "threshold", "source", "components"))
        for field, kind in (("topK", int), ("threshold", float)):
            if field in fields:
                try:
                    fields[field] = kind(fields[field])
                except ValueError as error:
                    raise ApiError(422, f"{field} must be a number, got {shorten(fields[field])}") from error
        body = _parse(schemas.IdentifyRequest, fields)
        data = files[0][0] if files else None
    else:
        body = await _json_body(request, schemas.IdentifyRequest)
        data = body.image
    source = _source(body.source)

    def work(admitted: bool) -> dict:
        image = image_bytes(data, get_settings()) if isinstance(data, str) else data
        recorder = _recorder("gallery_identify", source)
        asked = flag(body.components, components_query, False)  # a form field's text is read as pydantic reads a bool
        return gallery_service.identify_in(name, image, body.embedding, body.topK, body.threshold, recorder, admitted, asked)

    if data is None:
        return JSONResponse(await run_in_threadpool(work, False))
    with faces_service.admit(None, images=1) as ticket:
        return JSONResponse(await run_in_threadpool(work, ticket.admitted))


def install(app: FastAPI) -> None:
    app.include_router(router)
    gallery_service.use_request_batcher(True)  # every gallery analysis of this server joins the request batcher
