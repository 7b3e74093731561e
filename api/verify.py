"""``POST /verify``: 1:1 verification for integrators, JSON (base64 / URL / embeddings) or multipart (two files)."""

from __future__ import annotations

import json

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

from api.routes import flag
from api.security import image_bytes
from errors import ApiError
from schemas.verify import VerifyJSON, VerifyRequest, verify_json
from service import models as model_service
from service.access import door
from service.validation import check_identifier, shorten
from service.verification import check_threshold, verify
from settings import get_settings

PATH = "/verify"
router = APIRouter()
ROUTE_SCOPES = {PATH: "compare"}
MODEL_CHOSEN_BY_CALLER = {PATH}
_MULTIPART = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["img1", "img2"],
            "properties": {
                "img1": {"type": "string", "format": "binary"},
                "img2": {"type": "string", "format": "binary"},
                "threshold": {"type": "number"},
                "model_name": {"type": "string"},
                "source": {"type": "string"},
                "components": {"type": "boolean"},
            },
        }
    }
}
_JSON = {"application/json": {"schema": VerifyRequest.model_json_schema()}}
_BOOL = TypeAdapter(bool)  # a form field's "true" / "1" / "on" read as FastAPI reads /extract's form flags


async def _read_request(request: Request) -> VerifyRequest | tuple[bytes, bytes, dict]:
    settings = get_settings()
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        files = []
        for name in ("img1", "img2"):
            upload = form.get(name)
            if not isinstance(upload, UploadFile):
                raise ApiError(422, f"multipart /verify needs two files, img1 and img2 ({name} is missing)")
            data = await upload.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise ApiError(413, f"{name} is larger than {settings.max_upload_bytes // 2**20} MiB")
            files.append(data)
        names = ("threshold", "model_name", "source", "components")
        fields = {key: form.get(key) for key in names if isinstance(form.get(key), str) and form.get(key) != ""}
        if "threshold" in fields:
            try:
                fields["threshold"] = float(fields["threshold"])
            except ValueError as error:
                raise ApiError(422, f"threshold must be a number, got {shorten(fields['threshold'])}") from error
        if "components" in fields:
            try:
                fields["components"] = _BOOL.validate_python(fields["components"])
            except ValidationError as error:
                raise ApiError(422, f"components must be true or false, got {shorten(fields['components'])}") from error
        return files[0], files[1], fields
    try:
        return VerifyRequest.model_validate(json.loads(await request.body()))
    except ValueError as error:
        if isinstance(error, ValidationError):
            details = "; ".join(f"{'.'.join(str(p) for p in problem['loc']) or 'body'}: {problem['msg']}" for problem in error.errors())
            raise ApiError(422, f"invalid request: {details}") from error
        raise ApiError(400, "the request body is not valid JSON") from error


def _side(image: str | None, embedding: list[float] | None, number: int) -> bytes | list[float]:
    if (image is None) == (embedding is None):
        raise ApiError(422, f"give exactly one of img{number} and embedding{number}")
    return embedding if embedding is not None else image_bytes(image, get_settings())


@router.post(PATH, response_model=VerifyJSON, openapi_extra={"requestBody": {"required": True, "content": {**_JSON, **_MULTIPART}}})
async def verify_route(request: Request, components_query: bool | None = Query(None, alias="components")) -> JSONResponse:
    """Two images, an image and an embedding, or two embeddings -> ``verified``, similarity, the decision, both faces.
    ``components`` (body or form field, or query; the body wins, as on /extract) adds each image side's components."""
    parsed = await _read_request(request)
    if isinstance(parsed, VerifyRequest):
        fields = {"threshold": parsed.threshold, "model_name": parsed.model_name, "source": parsed.source, "components": parsed.components}
        first = await run_in_threadpool(_side, parsed.img1, parsed.embedding1, 1)
        second = await run_in_threadpool(_side, parsed.img2, parsed.embedding2, 2)
    else:
        first, second, fields = parsed
    check_threshold(fields.get("threshold"))
    model_name = check_identifier(fields.get("model_name") or "default", "model_name")
    source = fields.get("source")
    if source is not None:
        check_identifier(source, "source")
    name = model_service.resolve_name(model_name)
    allowed = [model.name for model in model_service.usable_models()]
    if name not in allowed:
        raise ApiError(400, f"model_name {shorten(model_name)} is not available; allowed: {', '.join(allowed)}")
    door().check(getattr(request.state, "frood_principal", None), "compare", name, count=False)
    components = flag(fields.get("components"), components_query, False)
    result = await run_in_threadpool(verify, first, second, fields.get("threshold"), name, source, components)
    return JSONResponse(verify_json(result, components=components))


def install(app: FastAPI) -> None:
    app.include_router(router)
