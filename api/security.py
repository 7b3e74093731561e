"""Request-size limits and images given by reference (base64 or an http(s) URL fetched as checked).

Who may call what is decided at the door (api/door.py, service/access.py).
"""

from __future__ import annotations

import base64
import binascii
import re

from errors import ApiError
from service.url_fetch import fetch_image_url
from settings import Settings

_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def presented_key(headers) -> str | None:
    """``X-API-Key: KEY`` or ``Authorization: Bearer KEY``."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def image_bytes(value: str, settings: Settings) -> bytes:
    """An image given as base64 (optionally a ``data:`` URL) or as an http(s) URL, fetched as checked."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "image must be a non-empty string: base64 data or an http(s) URL")
    if _URL_LIKE.match(value) and not value.startswith("data:"):  # base64 has no ':', so this is a URL
        return fetch_image_url(value, max_bytes=settings.max_upload_bytes, timeout_s=settings.url_fetch_timeout_s, allow_private=settings.allow_private_urls)
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ApiError(400, "image is neither valid base64 nor an http(s) URL") from error


class BodySizeLimit:
    """ASGI middleware: refuses request bodies over ``limit`` bytes with 413 (Content-Length or streamed)."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise ApiError(413, "request body too large")
            return message

        return await self.app(scope, limited_receive, send)

    async def _refuse(self, send) -> None:
        body = b'{"detail":"request body too large","errorCode":413,"errorMsg":"request body too large"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
