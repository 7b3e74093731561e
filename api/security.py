"""API keys, per-key rate limits, request-size limits and safe fetching of image URLs.

Without configured keys the API is open (meant for local use; the README says so).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import deque

from errors import ApiError
from service.models import resolve_name
from service.url_fetch import fetch_image_url
from settings import Settings

_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


class RateLimiter:
    """Sliding 60-second window per key."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, per_minute: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - 60.0:
                hits.popleft()
            if len(hits) >= per_minute:
                retry_after = max(1, int(hits[0] + 60.0 - now) + 1)
                raise ApiError(429, f"rate limit of {per_minute} requests per minute exceeded", {"Retry-After": str(retry_after)})
            hits.append(now)


def presented_key(headers) -> str | None:
    """``X-API-Key: KEY`` or ``Authorization: Bearer KEY``."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def authorize(settings: Settings, limiter: RateLimiter, headers, model: str | None) -> None:
    """401 without a valid key, 403 for a model the key may not use, 429 over its rate (keys configured only)."""
    if not settings.api_keys:
        return
    key = presented_key(headers)
    if not key or key not in settings.api_keys:
        raise ApiError(401, "missing or unknown API key (send X-API-Key or Authorization: Bearer)")
    spec = settings.api_keys[key]
    if model is not None and spec.models and resolve_name(model) not in {resolve_name(name) for name in spec.models}:
        raise ApiError(403, f"this API key may not use model {model!r}; allowed: {', '.join(spec.models)}")
    limiter.check(key, spec.rpm)


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
