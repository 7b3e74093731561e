"""HTTP routes: PaddleX face-recognition serving API, InsightFace-style ``/extract``, ``/models``.

PaddleX routes answer in its envelope ``{"logId", "errorCode", "errorMsg", "result"}``; on failure the
HTTP status equals ``errorCode``. Index keys and their galleries persist under ``DATA_DIR/indexes/``.
Uploads to the API are never stored (thumbnails of API traffic follow ``STORE_API_THUMBNAILS``).
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

import faiss
from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, Field

from api.security import ApiError, RateLimiter, authorize, image_bytes
from gallery import service as gallery_service
from gallery.index import GalleryCorruptError, GalleryIndex, GalleryMismatchError
from recognition import service
from recognition.errors import FroodError
from recognition.models import resolve_name
from settings import get_settings

log = logging.getLogger("frood.api")
PADDLEX_PREFIX = "/face-recognition-"
limiter = RateLimiter()
router = APIRouter()


class ImageLabelPair(BaseModel):
    image: str
    label: str = Field(min_length=1)


class BuildRequest(BaseModel):
    imageLabelPairs: list[ImageLabelPair] = Field(min_length=1)  # noqa: N815 (PaddleX's field names)


class AddRequest(BuildRequest):
    indexKey: str  # noqa: N815


class BuildIndexRequest(BuildRequest):
    """PaddleX's build request plus two optional fields of ours: the FAISS index type and metric."""

    indexType: Literal["Flat", "IVF", "HNSW32"] = "Flat"  # noqa: N815
    metric: Literal["IP", "L2"] = "IP"


class RemoveRequest(BaseModel):
    ids: list[int] = Field(min_length=1)
    indexKey: str  # noqa: N815


class InferRequest(BaseModel):
    image: str
    indexKey: str  # noqa: N815


class IndexRegistry:
    """Index key → gallery directory, loaded lazily, one lock for all writers (saves are atomic)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._cache: dict[str, GalleryIndex] = {}

    @staticmethod
    def _path(key: str) -> Path:
        if not key or not key.replace("-", "").isalnum():
            raise ApiError(404, f"unknown indexKey {key!r}")
        return get_settings().indexes_dir / key

    def create(self, gallery: GalleryIndex) -> str:
        key = uuid.uuid4().hex
        with self._lock:
            gallery.save(self._path(key))
            self._cache[key] = gallery
        return key

    def get(self, key: str) -> GalleryIndex:
        with self._lock:
            if key not in self._cache:
                path = self._path(key)
                if not path.is_dir():
                    raise ApiError(404, f"unknown indexKey {key!r}")
                pipeline = service.get_pipeline()
                try:
                    self._cache[key] = gallery_service.load_gallery(pipeline, path)
                except GalleryMismatchError as error:
                    raise ApiError(409, str(error)) from error
                except GalleryCorruptError as error:
                    raise ApiError(500, f"index {key} is damaged and cannot be loaded: {error}") from error
            return self._cache[key]

    def save(self, key: str) -> None:
        with self._lock:
            self._cache[key].save(self._path(key))

    @property
    def lock(self) -> threading.RLock:
        return self._lock


registry = IndexRegistry()


def envelope(result: dict) -> JSONResponse:
    return JSONResponse({"logId": str(uuid.uuid4()), "errorCode": 0, "errorMsg": "Success", "result": result})


def envelope_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"logId": str(uuid.uuid4()), "errorCode": status, "errorMsg": message}, status_code=status, headers=headers)


def _decode_pairs(pairs: list[ImageLabelPair]) -> list[tuple[bytes, str, str]]:
    settings = get_settings()
    return [(image_bytes(pair.image, settings), pair.label, f"imageLabelPairs[{index}]") for index, pair in enumerate(pairs)]


@router.post("/face-recognition-index-build")
def index_build(body: BuildIndexRequest, request: Request) -> JSONResponse:
    authorize(get_settings(), limiter, request.headers, None)
    pipeline = service.get_pipeline()
    gallery = gallery_service.new_gallery(pipeline, body.indexType, body.metric)
    result = gallery_service.enrol(pipeline, gallery, _decode_pairs(body.imageLabelPairs))
    key = registry.create(gallery)
    log.info("Index %s built: %d enrolled, %d skipped", key, len(result.ids), len(result.skipped))
    return envelope({"indexKey": key, "idMap": {str(k): v for k, v in gallery.labels.items()}, "skipped": result.skipped})


@router.post("/face-recognition-index-add")
def index_add(body: AddRequest, request: Request) -> JSONResponse:
    authorize(get_settings(), limiter, request.headers, None)
    pipeline = service.get_pipeline()
    items = _decode_pairs(body.imageLabelPairs)
    with registry.lock:
        gallery = registry.get(body.indexKey)
        result = gallery_service.enrol(pipeline, gallery, items)
        registry.save(body.indexKey)
    return envelope({"idMap": {str(k): v for k, v in gallery.labels.items()}, "skipped": result.skipped})


@router.post("/face-recognition-index-remove")
def index_remove(body: RemoveRequest, request: Request) -> JSONResponse:
    authorize(get_settings(), limiter, request.headers, None)
    with registry.lock:
        gallery = registry.get(body.indexKey)
        try:
            gallery.remove(body.ids)
        except KeyError as error:
            raise ApiError(404, str(error.args[0])) from error
        registry.save(body.indexKey)
    return envelope({"idMap": {str(k): v for k, v in gallery.labels.items()}})


@router.post("/face-recognition-infer")
def infer(body: InferRequest, request: Request) -> JSONResponse:
    settings = get_settings()
    authorize(settings, limiter, request.headers, None)
    pipeline = service.get_pipeline()
    data = image_bytes(body.image, settings)
    decoded = pipeline.decode(data)
    with registry.lock:  # GalleryIndex is not thread-safe: searches wait for adds and removes
        faces = gallery_service.identify(pipeline, registry.get(body.indexKey), decoded)
    drawn = gallery_service.annotate(decoded.rgb, faces, scale=decoded.scale)
    buffer = io.BytesIO()
    Image.fromarray(drawn).save(buffer, format="JPEG", quality=90)
    return envelope(
        {
            "faces": [
                {
                    "bbox": [round(v, 1) for v in face.bbox],
                    "recResults": [{"label": label, "score": round(score, 4)} for label, score in face.matches[:1]] if face.label != "unknown" else [],
                    "score": round(face.det_score, 4),
                    "qualityScore": round(face.quality, 4),
                    "topK": [{"label": label, "score": round(score, 4)} for label, score in face.matches],
                }
                for face in faces
            ],
            "image": base64.b64encode(buffer.getvalue()).decode("ascii"),
        }
    )


@router.post("/extract")
def extract(request: Request, image: UploadFile = File(...), model_name: str = Form("default")) -> JSONResponse:
    """InsightFace-evaluation style: multipart ``image`` + ``model_name`` → feature and quality."""
    settings = get_settings()
    allowed = [model["name"] for model in service.usable_models()]
    name = resolve_name(model_name)
    if name not in allowed:
        raise ApiError(400, f"model_name {model_name!r} is not available; allowed: {', '.join(allowed)}")
    authorize(settings, limiter, request.headers, name)
    data = image.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, f"image larger than {settings.max_upload_bytes // 2**20} MiB")
    start = time.perf_counter()
    timed = service.extract(data, name=image.filename or "upload", source="api", model=name)
    result = timed.value
    if not result.faces:
        return JSONResponse({"model_name": name, "feature": [], "quality_score": 0.0, "message": "no face found", "faces_found": 0})
    payload = result.to_json()
    return JSONResponse(
        {
            "model_name": name,
            "feature": payload["feature"],
            "quality_score": payload["quality_score"],
            "faces_found": payload["faces_found"],
            "bbox": payload["bbox"],
            "reasons": payload["reasons"],
            "latency_ms": round((time.perf_counter() - start) * 1000, 1),
        }
    )


@router.get("/models")
def models() -> JSONResponse:
    return JSONResponse({"models": service.usable_models()})


def install(app: FastAPI) -> None:
    """Mount the routes and the error handlers (envelope for PaddleX paths, ``detail`` elsewhere)."""
    app.include_router(router)
    faiss.omp_set_num_threads(1)  # batch-1 searches were 15–45× slower with OpenMP threads fighting the models

    def respond(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if request.url.path.startswith(PADDLEX_PREFIX):
            return envelope_error(status, message, headers)
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return respond(request, error.status, str(error), error.headers)

    @app.exception_handler(FroodError)
    async def frood_error(request: Request, error: FroodError) -> JSONResponse:
        return respond(request, error.status, str(error), getattr(error, "headers", None))  # e.g. 503 Retry-After

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return respond(request, 400, "the request body is not valid JSON")
        details = "; ".join(f"{'.'.join(str(p) for p in problem.get('loc', [])[1:]) or 'body'}: {problem.get('msg')}" for problem in problems)
        return respond(request, 422, f"invalid request: {details}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s", request.url.path)
        return respond(request, 500, "internal error: the request could not be processed")
