"""Who is asking, and may they: API keys with scopes and models, signed browser sessions, uploads owned by
their uploader.

One door for every way in: the HTTP API (``X-API-Key`` / ``Authorization: Bearer``), the Gradio API and the
UI (a session cookie set by signing in with a key). The shells ask this module; none of them decides access
on its own. Without ``API_KEYS`` the server is open, and says so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import ApiError
from service.models import resolve_name
from settings import SCOPES, ApiKeySpec, Settings, get_settings

SESSION_COOKIE = "frood_session"
SCOPE_ATTRIBUTE = "frood_scope"
MODEL_SCOPES = {"extract", "compare", "gallery:read", "gallery:write"}  # scopes whose calls run the face model
KEYPOINT_MODEL = "human-keypoints"  # the name a key's ``models`` list uses for the keypoint engine
OPEN = "open"  # a route anyone may call (health, sign-in, static assets)
SIGNED_IN = "signed-in"  # any valid key, no particular scope (model list, API docs, the UI page itself)
_UPLOADS_KEEP_S = 3600
ANONYMOUS = "anonymous"


def requires(scope: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a UI event handler with the scope a caller needs (the door reads it before the handler runs)."""
    if scope not in SCOPES and scope not in (OPEN, SIGNED_IN):
        raise ValueError(f"unknown scope {scope!r}")

    def mark(function: Callable[..., Any]) -> Callable[..., Any]:
        setattr(function, SCOPE_ATTRIBUTE, scope)
        return function

    return mark


def scope_of(function: Any) -> str:
    """The scope a handler declared; a handler that declared none needs ``admin`` (the door fails closed)."""
    return getattr(function, SCOPE_ATTRIBUTE, "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id (a hash prefix, never the key) and its spec; anonymous when the server is open."""

    key_id: str
    spec: ApiKeySpec | None  # None: no keys configured, everything is allowed

    @property
    def name(self) -> str:
        if self.spec is None:
            return ""
        return self.spec.name or f"key {self.key_id[:8]}"

    def allows(self, scope: str) -> bool:
        return self.spec is None or scope in (OPEN, SIGNED_IN) or self.spec.allows(scope)

    def allows_model(self, model: str) -> bool:
        if self.spec is None or not self.spec.models:
            return True
        if model == KEYPOINT_MODEL:
            return KEYPOINT_MODEL in self.spec.models
        return resolve_name(model) in {resolve_name(name) for name in self.spec.models}


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


class Door:
    """Access decisions for one server: keys, sessions, rate limits, and whose uploads are whose."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._by_id = {key_id(key): (key, spec) for key, spec in self.settings.api_keys.items()}
        secret = self.settings.session_secret or secrets.token_hex(32)  # random: sessions end with the process
        self._secret = secret.encode("utf-8")
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._uploads: dict[str, dict[str, float]] = {}  # principal -> upload path -> expiry

    @property
    def open(self) -> bool:
        return not self.settings.api_keys

    # -- keys and sessions ---------------------------------------------------------------------------------------

    def principal_for_key(self, key: str | None) -> Principal | None:
        if self.open:
            return Principal(ANONYMOUS, None)
        if not key:
            return None
        identity = key_id(key)
        found = self._by_id.get(identity)
        if found is None or not hmac.compare_digest(found[0].encode("utf-8"), key.encode("utf-8")):
            return None
        return Principal(identity, found[1])

    def session_token(self, principal: Principal, now: float | None = None) -> str:
        """``payload.signature``: the key's id and an expiry, HMAC-SHA256-signed (the key itself never leaves)."""
        expires = int((now or time.time()) + self.settings.session_hours * 3600)
        payload = base64.urlsafe_b64encode(json.dumps({"k": principal.key_id, "e": expires}).encode()).decode().rstrip("=")
        return f"{payload}.{self._sign(payload)}"

    def principal_for_session(self, token: str | None, now: float | None = None) -> Principal | None:
        if self.open:
            return Principal(ANONYMOUS, None)
        if not token or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            identity, expires = str(data["k"]), float(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        found = self._by_id.get(identity)
        if found is None or expires < (now or time.time()):
            return None
        return Principal(identity, found[1])

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).hexdigest()

    # -- decisions ----------------------------------------------------------------------------------------------

    def check(self, principal: Principal | None, scope: str, model: str | None = None, count: bool = True) -> Principal:
        """401 without a valid key or session, 403 for a scope or model the key lacks, 429 over its rate."""
        if scope == OPEN:
            return principal or Principal(ANONYMOUS, None)
        if principal is None:
            raise ApiError(401, "sign in first: send an API key (X-API-Key or Authorization: Bearer), or sign in at /login")
        if not principal.allows(scope):
            raise ApiError(403, f"this API key may not {scope_words(scope)} (scope {scope!r}); ask for a key that has it")
        if model is not None and not principal.allows_model(model):
            allowed = ", ".join(principal.spec.models) if principal.spec else ""
            raise ApiError(403, f"this API key may not use model {model!r}; allowed: {allowed}")
        if count and principal.spec is not None:
            self._count(principal)
        return principal

    def _count(self, principal: Principal, now: float | None = None) -> None:
        if principal.spec is None:  # an open server counts nobody
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(principal.key_id, deque())
            while hits and now - hits[0] >= 60:
                hits.popleft()
            if len(hits) >= principal.spec.rpm:
                retry = max(1, int(60 - (now - hits[0])) + 1)
                raise ApiError(429, f"rate limit of {principal.spec.rpm} requests per minute reached; retry in {retry} s", {"Retry-After": str(retry)})
            hits.append(now)

    # -- uploads --------------------------------------------------------------------------------------------------

    def remember_uploads(self, principal: Principal, paths: list[str], now: float | None = None) -> None:
        """Files the UI's upload route wrote for this caller: the only server files a later call may name."""
        now = time.time() if now is None else now
        with self._lock:
            owned = self._uploads.setdefault(principal.key_id, {})
            for expired in [path for path, until in owned.items() if until < now]:
                del owned[expired]
            for path in paths:
                owned[str(Path(path).resolve())] = now + _UPLOADS_KEEP_S

    def owns_upload(self, principal: Principal, path: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        try:
            resolved = str(Path(path).resolve())
        except (OSError, RuntimeError, ValueError):
            return False
        with self._lock:
            return self._uploads.get(principal.key_id, {}).get(resolved, 0.0) >= now


SCOPE_WORDS = {
    "extract": "extract features",
    "compare": "compare images",
    "gallery:read": "read galleries",
    "gallery:write": "change galleries",
    "monitor": "read the monitoring data",
    "keypoints": "detect keypoints",
    "admin": "administer this server",
}


def scope_words(scope: str) -> str:
    return SCOPE_WORDS.get(scope, scope)


_door: Door | None = None
_door_lock = threading.Lock()


def door() -> Door:
    """The process-wide door, built from the settings on first use."""
    global _door
    with _door_lock:
        if _door is None:
            _door = Door()
        return _door
