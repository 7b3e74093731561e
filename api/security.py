"""API keys, per-key rate limits, request-size limits and safe fetching of image URLs.

Without configured keys the API is open (meant for local use; the README says so).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
import threading
import time
from collections import deque
from urllib.parse import urlparse

import requests

from errors import ApiError
from service.models import resolve_name
from settings import Settings


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


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified)


def fetch_url(url: str, settings: Settings) -> bytes:
    """GET an image over http(s) with size and time limits; never from loopback, link-local or private
    addresses unless ``ALLOW_PRIVATE_URLS`` (the host is resolved and every address checked; redirects
    are not followed, so a public host cannot bounce the request inward)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ApiError(400, "image URLs must be http:// or https:// with a host")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))}
    except socket.gaierror as error:
        raise ApiError(400, f"cannot resolve the image URL's host {parsed.hostname!r}") from error
    if not settings.allow_private_urls and not all(_is_public(address) for address in addresses):
        raise ApiError(400, "image URLs pointing to loopback, link-local or private addresses are not allowed")
    try:
        with requests.get(url, stream=True, timeout=settings.url_fetch_timeout_s, allow_redirects=False) as response:
            if response.status_code != 200:
                raise ApiError(400, f"fetching the image URL answered HTTP {response.status_code}")
            data = bytearray()
            deadline = time.monotonic() + settings.url_fetch_timeout_s * 2
            for chunk in response.iter_content(64 * 1024):
                data.extend(chunk)
                if len(data) > settings.max_upload_bytes:
                    raise ApiError(413, f"the image at the URL is larger than {settings.max_upload_bytes // 2**20} MiB")
                if time.monotonic() > deadline:
                    raise ApiError(400, "fetching the image URL took too long")
            return bytes(data)
    except requests.RequestException as error:
        raise ApiError(400, f"could not fetch the image URL: {type(error).__name__}") from error


def image_bytes(value: str, settings: Settings) -> bytes:
    """An image given as base64 (optionally a ``data:`` URL) or as an http(s) URL."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, "image must be a non-empty string: base64 data or an http(s) URL")
    if value.startswith(("http://", "https://")):
        return fetch_url(value, settings)
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
