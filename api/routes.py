"""HTTP routes: PaddleX face-recognition serving API, InsightFace-style ``/extract``, ``/models``.

PaddleX routes answer in its envelope ``{"logId", "errorCode", "errorMsg", "result"}``; on failure the
HTTP status equals ``errorCode``. Index keys and their galleries persist under ``DATA_DIR/indexes/``.
Uploads to the API are never stored (thumbnails of API traffic follow ``STORE_API_THUMBNAILS``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Literal

import faiss
from fastapi import APIRouter, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from api.security import image_bytes, presented_key
from errors import ApiError, FroodError
from logs import client_error
from schemas import api as schemas
from service import faces as service
from service import gallery as gallery_service
from service import models as model_service
from service.access import OPEN, door
from service.gallery import registry
from service.models import resolve_name
from service.validation import check_identifier, check_ids, check_label, shorten
from settings import get_settings

log = logging.getLogger("frood.api")
PADDLEX_PREFIX = "/face-recognition-"
PADDLEX_PATHS = (PADDLEX_PREFIX, "/human-keypoint-detection")  # paths whose errors use the envelope
router = APIRouter()
# What each route needs (the door in api/door.py enforces it before the route runs; a route missing here
# needs only a signed-in caller, and tests/test_security.py fails until it is listed).
ROUTE_SCOPES = {
    "/face-recognition-index-build": "gallery:write",
    "/face-recognition-index-add": "gallery:write",
    "/face-recognition-index-remove": "gallery:write",
    "/face-recognition-infer": "gallery:read",
    "/extract": "extract",
    "/models": OPEN,
}
MODEL_CHOSEN_BY_CALLER = {"/extract"}  # the route checks the model it is asked for itself
MAX_PAIRS = 10_000


class ImageLabelPair(BaseModel):
    image: str
    label: str = Field(min_length=1)


class ClientRequest(BaseModel):
    """Fields of ours on every PaddleX request: the client's camera/device/site id and, for writes, a retry id."""

    source: str | None = None
    requestId: str | None = None  # noqa: N815 (PaddleX's naming style)


class BuildRequest(ClientRequest):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1, max_length=MAX_PAIRS)  # noqa: N815 (PaddleX's field names)


class AddRequest(BuildRequest):
    indexKey: str  # noqa: N815


class BuildIndexRequest(BuildRequest):
    """PaddleX's build request plus two optional fields of ours: the FAISS index type and metric."""

    indexType: Literal["Flat", "IVF", "HNSW32"] = "Flat"  # noqa: N815
    metric: Literal["IP", "L2"] = "IP"


class RemoveRequest(ClientRequest):
    ids: list[int] = Field(min_length=1)
    indexKey: str  # noqa: N815


class InferRequest(ClientRequest):
    image: str
    indexKey: str  # noqa: N815
    topK: int = Field(5, ge=1, le=100)  # noqa: N815 (ours, optional: how many labels per face)
    threshold: float | None = Field(None, ge=-1.0, le=1.0)  # ours, optional: cosine; default: the model's match threshold
    components: bool | None = None  # ours, optional: each face's ISO/IEC 29794-5 components (as /extract's); default off


def envelope(result: dict) -> JSONResponse:
    return JSONResponse(schemas.envelope_json(str(uuid.uuid4()), result))


def envelope_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(schemas.envelope_error_json(str(uuid.uuid4()), status, message), status_code=status, headers=headers)


_PADDLEX_ERRORS = {
    status: {"model": schemas.ErrorEnvelope, "description": description}
    for status, description in (
        (400, "bad input"),
        (401, "missing or wrong API key"),
        (404, "unknown indexKey"),
        (413, "too large"),
        (503, "busy or storage error"),
    )
}


def _check_client_fields(body: ClientRequest) -> None:
    if body.source is not None:
        check_identifier(body.source, "source")
    if body.requestId is not None:
        check_identifier(body.requestId, "requestId")


def _decode_pairs(pairs: list[ImageLabelPair]) -> list[tuple[bytes, str, str]]:
    settings = get_settings()
    for index, pair in enumerate(pairs):
        check_label(pair.label, f"imageLabelPairs[{index}].label")
    return [(image_bytes(pair.image, settings), pair.label, f"imageLabelPairs[{index}]") for index, pair in enumerate(pairs)]


def _recorder(operation: str, source_id: str | None) -> gallery_service.Recorder:
    """Every image a gallery route processes gets the same stats row and reject webhook as ``/extract``."""

    def record(decoded, analysis, latency_ms: float) -> None:
        service.record_analysis(operation, "api", decoded, analysis, latency_ms, source_id=source_id)

    return record


def _id_map(gallery) -> dict[str, str]:
    return {str(k): v for k, v in gallery.labels.items()}


def _fingerprint(body: ClientRequest) -> str:
    return gallery_service.request_fingerprint(body.model_dump()) if body.requestId else ""


@router.post("/face-recognition-index-build", response_model=schemas.Envelope[schemas.IndexBuildJSON], responses=_PADDLEX_ERRORS)
def index_build(body: BuildIndexRequest, request: Request) -> JSONResponse:
    _check_client_fields(body)
    items = _decode_pairs(body.imageLabelPairs)
    key = registry.key_for(body.requestId, presented_key(request.headers))
    fingerprint = _fingerprint(body)

    def replayed() -> JSONResponse | None:
        """A retried build (same requestId and body): what the first one did. Another body with it: 409."""
        if not body.requestId or not registry.exists(key):
            return None
        gallery = registry.get(key)
        done = gallery_service.remembered(gallery.recall_request(body.requestId), body.requestId, fingerprint) or {}
        return envelope(schemas.index_build_json(key, _id_map(gallery), done.get("skipped", []), replayed=True))

    with registry.lock:
        if (answer := replayed()) is not None:
            return answer
    pipeline = service.get_pipeline()
    prepared = gallery_service.prepare_enrolment(pipeline, items, _recorder("index_build", body.source))
    gallery_service.require_enrolled(prepared)  # every image skipped: 422 with the reasons, nothing created
    gallery = gallery_service.new_gallery(pipeline, body.indexType, body.metric)
    result = gallery_service.add_prepared(gallery, prepared)
    if body.requestId:
        gallery.remember_request(body.requestId, {"enrolled": len(result.ids), "skipped": result.skipped[:100], "fingerprint": fingerprint})
    with registry.lock:
        if (answer := replayed()) is not None:  # a concurrent retry won the race: keep its gallery
            return answer
        key = registry.create(gallery, key)
    log.info("Index %s built: %d enrolled, %d skipped", key, len(result.ids), len(result.skipped))
    return envelope(schemas.index_build_json(key, _id_map(gallery), result.skipped))


@router.post("/face-recognition-index-add", response_model=schemas.Envelope[schemas.IndexAddJSON], responses=_PADDLEX_ERRORS)
def index_add(body: AddRequest, request: Request) -> JSONResponse:
    _check_client_fields(body)
    registry.get(body.indexKey)  # 400/404 before any image is decoded
    items = _decode_pairs(body.imageLabelPairs)
    pipeline = service.get_pipeline()
    fingerprint = _fingerprint(body)

    def replayed() -> JSONResponse | None:
        gallery = registry.get(body.indexKey)
        done = gallery.recall_request(body.requestId) if body.requestId else None
        done = gallery_service.remembered(done, body.requestId, fingerprint)  # same id, other body: 409
        return None if done is None else envelope(schemas.index_add_json(_id_map(gallery), done.get("skipped", []), replayed=True))

    with registry.lock:
        if (answer := replayed()) is not None:  # a retry: no image is analysed again
            return answer
    prepared = gallery_service.prepare_enrolment(pipeline, items, _recorder("index_add", body.source))  # outside the lock: slow
    with registry.lock:
        if (answer := replayed()) is not None:  # the same request, sent twice at once, was applied meanwhile
            return answer
        gallery = registry.get(body.indexKey)
        result = gallery_service.add_prepared(gallery, prepared)
        if body.requestId:
            gallery.remember_request(body.requestId, {"enrolled": len(result.ids), "skipped": result.skipped[:100], "fingerprint": fingerprint})
        registry.save(body.indexKey)
    return envelope(schemas.index_add_json(_id_map(gallery), result.skipped))


@router.post("/face-recognition-index-remove", response_model=schemas.Envelope[schemas.IndexRemoveJSON], responses=_PADDLEX_ERRORS)
def index_remove(body: RemoveRequest, request: Request) -> JSONResponse:
    _check_client_fields(body)
    check_ids(body.ids)
    fingerprint = _fingerprint(body)
    with registry.lock:
        gallery = registry.get(body.indexKey)
        if body.requestId and gallery_service.remembered(gallery.recall_request(body.requestId), body.requestId, fingerprint) is not None:
            return envelope(schemas.index_remove_json(_id_map(gallery), replayed=True))
        try:
            gallery.remove(body.ids)
        except KeyError as error:
            missing = sorted(set(body.ids) - set(gallery.labels))
            raise ApiError(404, f"ids not in the index: {shorten(missing, 200)}") from error
        if body.requestId:
            gallery.remember_request(body.requestId, {"removed": sorted(set(body.ids)), "fingerprint": fingerprint})
        registry.save(body.indexKey)
    return envelope(schemas.index_remove_json(_id_map(gallery)))


@router.post("/face-recognition-infer", response_model=schemas.Envelope[schemas.InferJSON], responses=_PADDLEX_ERRORS)
def infer(body: InferRequest, request: Request, components_query: bool | None = Query(None, alias="components")) -> JSONResponse:
    """PaddleX's infer; ``components`` (body field or query, the body wins) adds each face's components, nothing else changes."""
    settings = get_settings()
    _check_client_fields(body)
    check_identifier(body.indexKey, "indexKey")
    pipeline = service.get_pipeline()
    data = image_bytes(body.image, settings)
    decoded = pipeline.decode(data)
    registry.get(body.indexKey)  # 404 before the image is analysed
    analysis = gallery_service.analyse(pipeline, decoded, record=_recorder("infer", body.source))  # outside the lock: slow
    with registry.lock:  # GalleryIndex is not thread-safe: searches wait for adds and removes
        faces = gallery_service.match(pipeline, registry.get(body.indexKey), analysis, body.topK, body.threshold)
    reports = None  # measured outside the lock, only when asked (a pass of the helper networks per face)
    if flag(body.components, components_query, False):
        reports = [item.components for item in service.components_for(decoded, analysis)]
    drawn = gallery_service.annotate(decoded.rgb, faces, scale=decoded.scale)
    buffer = io.BytesIO()
    Image.fromarray(drawn).save(buffer, format="JPEG", quality=90)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    return envelope(schemas.infer_json(faces, image, unknown=gallery_service.UNKNOWN, components=reports))


@router.post(
    "/extract",
    response_model=schemas.ExtractJSON | schemas.ExtractNoFaceJSON,
    responses={status: {"model": schemas.DetailJSON} for status in (400, 401, 413, 503)},
)
async def extract(
    request: Request,
    image: UploadFile = File(...),
    model_name: str = Form("default"),
    source: str | None = Form(None),
    person_box: bool | None = Form(None),
    person_box_query: bool | None = Query(None, alias="person_box"),
    all_faces: bool | None = Form(None),
    all_faces_query: bool | None = Query(None, alias="all_faces"),
    components: bool | None = Form(None),
    components_query: bool | None = Query(None, alias="components"),
) -> JSONResponse:
    """InsightFace-evaluation style: multipart ``image`` + ``model_name`` (+ optional ``source`` id) → feature and quality.
    ``person_box`` (form or query; default FACE_PERSON_BOX) adds the face's person box from the keypoint engine.

    Back-pressure: the request takes its place in the model's queue here, in the event loop, before it waits for a
    worker thread; when the expected wait exceeds ``BATCH_MAX_QUEUE_WAIT_S`` it is answered 503 + ``Retry-After`` at once.
    """
    allowed = [model.name for model in model_service.usable_models()]
    check_identifier(model_name, "model_name")
    if source is not None:
        check_identifier(source, "source")
    name = resolve_name(model_name)
    if name not in allowed:
        raise ApiError(400, f"model_name {shorten(model_name)} is not available; allowed: {', '.join(allowed)}")
    door().check(getattr(request.state, "frood_principal", None), "extract", name, count=False)  # the door counted the call
    with service.admit(name) as ticket:  # 503 + Retry-After now, rather than a long wait later
        options = ExtractOptions(
            person_box=flag(person_box, person_box_query, get_settings().face_person_box),
            all_faces=flag(all_faces, all_faces_query, False),
            components=flag(components, components_query, False),
        )
        return await run_in_threadpool(_extract, image, name, source, options, ticket.admitted)


@dataclass(frozen=True)
class ExtractOptions:
    person_box: bool  # the main face's person box, from the keypoint engine
    all_faces: bool  # every face, not only the main one
    components: bool  # the ISO/IEC 29794-5 components of each face reported


def flag(form: bool | None, query: bool | None, default: bool) -> bool:
    """A flag given in the body (a form field, or a JSON field on /verify and PaddleX infer) or as a query parameter (the
    body wins), else its default: one rule for every optional report a route can add."""
    return next((value for value in (form, query) if value is not None), default)


def _extract(image: UploadFile, name: str, source: str | None, options: ExtractOptions, admitted: bool) -> JSONResponse:
    settings = get_settings()
    data = image.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, f"image larger than {settings.max_upload_bytes // 2**20} MiB")
    start = time.perf_counter()
    timed = service.extract(data, name=shorten(image.filename or "upload", 80), source="api", model=name, source_id=source, admitted=admitted)
    result = timed.value
    link = None  # issue 10: the person box of the face (keypoint engine on the same image), only when asked
    if result.faces and options.person_box:
        from schemas.faces import person_box_json
        from service.keypoints import person_boxes_for_faces

        link = person_box_json(person_boxes_for_faces(data, [result.faces[0].bbox])[0])
    reports = None
    if options.components:
        reports = [item.components for item in service.components_for(data, result)]
        reports = reports if options.all_faces else reports[:1]
    latency = (time.perf_counter() - start) * 1000
    return JSONResponse(schemas.extract_json(name, result, latency, person_box=link, all_faces=options.all_faces, components=reports))


@router.get("/models", response_model=schemas.ModelsJSON)
def models() -> JSONResponse:
    return JSONResponse(schemas.models_json(model_service.usable_models()))


def install(app: FastAPI) -> None:
    """Mount the routes and the error handlers (envelope for PaddleX paths, ``detail`` elsewhere)."""
    app.include_router(router)
    faiss.omp_set_num_threads(1)  # batch-1 searches were 15–45× slower with OpenMP threads fighting the models

    def respond(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if request.url.path.startswith(PADDLEX_PATHS):
            return envelope_error(status, message, headers)
        return JSONResponse(schemas.detail_json(message), status_code=status, headers=headers)

    def client_fault(request: Request, status: int, error: Exception) -> None:
        if status < 500:  # the caller's request or input: one warning line, never a traceback
            client_error(log, f"{request.method} {request.url.path} -> {status}", error)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        client_fault(request, error.status, error)
        return respond(request, error.status, str(error), error.headers)

    @app.exception_handler(FroodError)
    async def frood_error(request: Request, error: FroodError) -> JSONResponse:
        client_fault(request, error.status, error)
        return respond(request, error.status, str(error), getattr(error, "headers", None))  # e.g. 503 Retry-After

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            status, message = 400, "the request body is not valid JSON"
        else:
            details = "; ".join(f"{'.'.join(str(p) for p in problem.get('loc', [])[1:]) or 'body'}: {problem.get('msg')}" for problem in problems)
            status, message = 422, shorten_text(f"invalid request: {details}", 1000)
        client_fault(request, status, ApiError(status, message))
        return respond(request, status, message)

    app.add_middleware(ServerFaults, respond=respond)
    app.add_middleware(EarlyBusy, paths={"/extract"})


def shorten_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EarlyBusy:
    """ASGI middleware: when every model's queue is past its expected-wait limit, ``/extract`` is answered 503 with
    ``Retry-After`` before its upload is read or parsed, so refusing costs the server next to nothing under load (the
    route still takes its precise place in the queue of the model it is asked for). The unread body means the
    connection is closed after the answer, and the answer says so (``Connection: close``)."""

    def __init__(self, app, paths: set[str]):
        self.app = app
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") in self.paths and (retry := service.busy_everywhere()) is not None:
            message = f"the server is busy; retry in {retry} s"
            service.note_refused_early()  # counted in the batcher's throttled "busy" line, not one log line each
            body = json.dumps(schemas.detail_json(message)).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class ServerFaults:
    """ASGI middleware: a fault of ours (an unexpected exception) is logged once with its traceback and answered 500
    in the route's error format; the exception stops here, so the server keeps the keep-alive connection usable for
    the client's next request (uvicorn closes a connection whose app raised). If the answer had already started, it
    cannot be replaced: the exception goes on and the server closes the connection, as it must."""

    def __init__(self, app, respond):
        self.app = app
        self.respond = respond

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:  # the client left (or BodySizeLimit stopped an oversized body): no fault, no answer
            log.info("Client left before %s was read", scope.get("path", "")[:200])
            return
        except Exception:
            request = Request(scope)
            log.exception("Unexpected error on %s", request.url.path)
            if started:
                raise
            response = self.respond(request, 500, "internal error: the request could not be processed")
            await response(scope, receive, send)
