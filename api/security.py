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
    """ASGI middleware: every request body over ``limit`` bytes is answered 413, on every route (JSON, multipart,
    the UI's uploads), whether it declares its size (``Content-Length``) or streams it (chunked).

    A declared size over the limit is refused before a byte is read. A streamed body is counted as it arrives: past
    the limit the app is told the client left (it stops reading), whatever it then answers is dropped, and the 413 is
    sent instead. Either way the rest of the body is never read, so the 413 carries ``Connection: close`` and the
    server closes the connection cleanly after it.
    """

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        streamed = declared is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        received = 0
        too_large = False
        body_done = False  # the last body message said more_body=False
        started = False

        async def limited_receive():
            nonlocal received, too_large, body_done
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.limit:
                    too_large = True
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is replaced below
            elif message["type"] == "http.disconnect":
                body_done = True
            return message

        async def guarded_send(message):
            nonlocal started
            if message["type"] == "http.response.start" and streamed and not too_large and not body_done:
                # a streamed body the app answered without reading it all: read the rest (at most the limit) first,
                # so an oversized one is a 413 on every route, and a fine one leaves the connection reusable
                while not too_large and not body_done:
                    await limited_receive()
            if too_large and not started:
                return  # the app's answer to a body it never got whole: the 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not too_large or started:
                raise
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = b'{"detail":"request body too large","errorCode":413,"errorMsg":"request body too large"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
