"""The one door in front of every route: the HTTP API, the Gradio API, its files and the UI page.

An ASGI middleware, so nothing mounted behind it (Gradio's own routes included) can be reached around it:
1. who is calling: an API key header, or the signed session cookie of a browser that signed in;
2. what the route needs: a scope from the route table (FastAPI routes), the scope the UI handler declared
   (Gradio calls: resolved from the body's ``fn_index`` or the path's api name exactly as Gradio resolves it),
   or just a signed-in caller (the UI page, its config, uploads and files);
3. for Gradio calls, every file argument must be an upload this caller made through this server: a path
   naming any other server file, or a URL, is refused with 400 before Gradio reads anything.
Unauthenticated browsers asking for a page are sent to ``/login``; everyone else gets 401/403/429 JSON.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from api.routes import PADDLEX_PATHS
from errors import ApiError
from schemas.api import detail_json, envelope_error_json
from service.access import KEYPOINT_MODEL, MODEL_SCOPES, SESSION_COOKIE, SIGNED_IN, Door, Principal, scope_of
from service.models import resolve_name
from settings import get_settings

log = logging.getLogger("frood.door")
GRADIO_PREFIX = "/gradio_api"
# Where Gradio runs a function. On queue/join, run/ and api/ a body's ``fn_index`` wins over the path's name
# (gradio.route_utils.get_fn); on call/ and call/v2/ only the path's name counts (the body has no fn_index).
_CALL = re.compile(rf"^{GRADIO_PREFIX}/(?:(?P<join>queue/join)|(?P<indexed>run|api)/(?P<indexed_name>[^/]+)|(?P<named>call/v2|call)/(?P<name>[^/]+))/?$")
_STREAM_INPUT = re.compile(rf"^{GRADIO_PREFIX}/stream/[^/]+/?$")  # replaces a queued call's data after it joined
_FILE_ROUTE = re.compile(rf"^{GRADIO_PREFIX}/file[=/]")
_SESSION_ROUTES = re.compile(rf"^{GRADIO_PREFIX}/(?:queue/data|heartbeat/(?P<session>[^/]+)|cancel)/?$")
_UPLOAD = re.compile(rf"^{GRADIO_PREFIX}/upload/?$")
_OPEN_PREFIXES = ("/assets/", "/static/", "/svelte/", "/docs-assets/", "/pwa_icon")
_OPEN_PATHS = {"/health", "/login", "/logout", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json"}
# Gradio's developer and operator tools: nothing our UI uses, so only an admin key reaches them.
_ADMIN_ONLY = re.compile(
    rf"^(?:/monitoring|/dev/reload|{GRADIO_PREFIX}/(?:component_server|dev/reload|run-history|runs|vibe-|undo-vibe-|process_recording|token|proxy=))"
)
MAX_SESSIONS = 100_000
MAX_CALL_BODY = 1024 * 1024  # a Gradio call carries file references, never file bytes


class ScopeTable(dict):
    """Path → the scope a call needs: a scope, or ``{method: scope}`` with ``"*"`` for the other methods. A key may be a
    path template (``/galleries/{name}``, ``{label:path}``): :meth:`scope_for` of a concrete path finds its template's
    entry (exact keys win). One table, so a route's read and write needs are declared where the door reads them."""

    _PARAM = re.compile(r"\{([^}:]+)(:path)?\}")

    def _patterns(self) -> list[tuple[re.Pattern[str], Any]]:
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0] != len(self):
            patterns = []
            for template, entry in dict.items(self):
                if "{" in template:
                    regex, last = "", 0
                    for match in self._PARAM.finditer(template):
                        regex += re.escape(template[last : match.start()]) + (".+" if match.group(2) else "[^/]+")
                        last = match.end()
                    regex += re.escape(template[last:])
                    patterns.append((re.compile(regex), entry))
            cached = (len(self), patterns)
            self._compiled = cached
        return cached[1]

    def get(self, path: Any, default: Any = None) -> Any:
        """The entry of ``path`` or of the template it fills (a scope, or the per-method mapping)."""
        if dict.__contains__(self, path):
            return dict.__getitem__(self, path)
        if isinstance(path, str):
            for pattern, entry in self._patterns():
                if pattern.fullmatch(path):
                    return entry
        return default

    def scope_for(self, path: str, method: str, default: str) -> str:
        """The scope a ``method`` call on ``path`` needs (``default`` for a path the table does not know)."""
        entry = self.get(path)
        if entry is None:
            return default
        if isinstance(entry, str):
            return entry
        return entry.get(method.upper(), entry["*"])


class AccessDoor:
    """ASGI middleware. ``route_scopes``: FastAPI path -> scope (per method where it differs); ``functions``: () ->
    Gradio's ``{fn_index: fn}``."""

    def __init__(
        self, app: Any, door: Door, route_scopes: ScopeTable, functions: Callable[[], dict[int, Any]], model_chosen_by_caller: set[str] | None = None
    ):
        self.app = app
        self.door = door
        self.route_scopes = route_scopes
        self.functions = functions
        self.model_chosen_by_caller = model_chosen_by_caller or set()
        self._sessions: dict[str, str] = {}  # Gradio session_hash -> the key id that first used it

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        principal = self._principal(headers)
        if scope["type"] == "websocket":  # no route of ours speaks it; none opens without a key either
            if principal is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        try:
            if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES):
                await self.app(scope, receive, send)
                return
            call = _CALL.match(path)
            if call and scope.get("method") == "POST":
                body = await _read_body(receive, MAX_CALL_BODY)
                by_index = call.group("named") is None
                self._check_call(principal, call.group("name") or call.group("indexed_name"), body, by_index)
                scope.setdefault("state", {})["frood_principal"] = principal
                await self.app(scope, _replay(body, receive), send)
                return
            route_scope = self.route_scopes.scope_for(path.rstrip("/") or "/", scope.get("method", "GET"), SIGNED_IN)
            if _ADMIN_ONLY.match(path):
                route_scope = "admin"
            if principal is None and scope.get("method") == "GET" and "text/html" in headers.get("accept", "") and not path.startswith(GRADIO_PREFIX):
                await _redirect(send, "/login")
                return
            model = None if path.rstrip("/") in self.model_chosen_by_caller else _route_model(route_scope)
            # Only calls that do work count against the key's rate: a browser's page, config, heartbeat and
            # event-stream requests would otherwise eat an operator's budget.
            checked = self.door.check(principal, route_scope, model, count=route_scope != SIGNED_IN)
            scope.setdefault("state", {})["frood_principal"] = checked
            if _STREAM_INPUT.match(path) and scope.get("method") == "POST" and not self._has_streaming_inputs():
                raise ApiError(404, "this app has no streaming inputs")
            if _FILE_ROUTE.match(path) and "://" in path:
                raise ApiError(400, "files are served from this server only, not fetched from URLs")
            self._check_session_owner(checked, path, scope)
            if _UPLOAD.match(path) and scope.get("method") == "POST":
                await self.app(scope, receive, self._recording_uploads(checked, send))
                return
        except ApiError as error:
            log.warning("Refused %s %s: %s %s", scope.get("method"), path, error.status, error)
            payload = envelope_error_json(str(uuid.uuid4()), error.status, str(error)) if path.startswith(PADDLEX_PATHS) else detail_json(str(error))
            await _json(send, error.status, payload, error.headers)
            return
        await self.app(scope, receive, send)

    def _principal(self, headers: dict[str, str]) -> Principal | None:
        key = headers.get("x-api-key")
        authorization = headers.get("authorization", "")
        if not key and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if key:
            return self.door.principal_for_key(key)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is no session
            return self.door.principal_for_key(None)
        morsel = cookie.get(SESSION_COOKIE)
        return self.door.principal_for_session(morsel.value if morsel else None) if morsel else self.door.principal_for_key(None)

    def _check_call(self, principal: Principal | None, api_name: str | None, body: bytes, by_index: bool) -> None:
        """The function Gradio will run (resolved as Gradio resolves it on that route), its scope, the model it
        runs, and every file anywhere in the body."""
        if principal is None:
            self.door.check(None, SIGNED_IN)
        try:
            payload = json.loads(body or b"{}")
        except ValueError as error:
            raise ApiError(400, "the request body is not valid JSON") from error
        if not isinstance(payload, dict):
            raise ApiError(400, "the request body must be a JSON object")
        functions = self.functions()
        fn_index = payload.get("fn_index") if by_index else None
        if fn_index is not None:
            if not isinstance(fn_index, int) or fn_index not in functions:
                raise ApiError(404, f"no UI function with fn_index {str(fn_index)[:20]!r}")
            function = functions[fn_index]
        else:
            matches = [fn for fn in functions.values() if api_name is not None and getattr(fn, "api_name", None) == api_name]
            if not matches:
                raise ApiError(404, f"no UI function named {str(api_name)[:64]!r}")
            function = matches[0]
        needed = scope_of(getattr(function, "fn", None))
        self.door.check(principal, needed, _route_model(needed))
        _check_files(payload, principal, self.door)
        session = payload.get("session_hash")
        if isinstance(session, str) and principal is not None:
            self._claim_session(principal, session)

    def _has_streaming_inputs(self) -> bool:
        return any(getattr(fn, "connection", None) == "stream" for fn in self.functions().values())

    def _claim_session(self, principal: Principal, session: str) -> None:
        """A Gradio session belongs to whoever first called with it: nobody else reads its results or cancels it."""
        owner = self._sessions.setdefault(session, principal.key_id)
        if owner != principal.key_id:
            raise ApiError(403, "this session belongs to another caller")
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))

    def _check_session_owner(self, principal: Principal | None, path: str, scope: dict) -> None:
        match = _SESSION_ROUTES.match(path)
        if not match or principal is None:
            return
        session = match.group("session") or parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash", [None])[0]
        owner = self._sessions.get(session) if session else None
        if owner is not None and owner != principal.key_id:
            raise ApiError(403, "this session belongs to another caller")

    def _recording_uploads(self, principal: Principal, send: Callable) -> Callable:
        """Remember the paths Gradio's upload route answers with: the only files this caller may name later."""
        chunks: list[bytes] = []
        status = {"code": 0}

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body") and status["code"] == 200:
                    try:
                        paths = json.loads(b"".join(chunks))
                    except ValueError:
                        paths = []
                    if isinstance(paths, list):
                        self.door.remember_uploads(principal, [path for path in paths if isinstance(path, str)])
            await send(message)

        return recording_send


def _route_model(scope: str) -> str | None:
    """The model a scope's calls run when the caller cannot choose one: the server's face model, or the keypoint engine."""
    if scope in MODEL_SCOPES:
        return resolve_name(get_settings().model)
    if scope == "keypoints":
        return KEYPOINT_MODEL
    return None


def _check_files(data: Any, principal: Principal | None, door: Door, depth: int = 0) -> None:
    """Every file-like value anywhere in a call (a dict with ``path`` or ``url``, or Gradio's FileData marker) must be
    this caller's upload; its ``url``, if any, may only point back at this server's file route."""
    if depth > 20:
        raise ApiError(400, "the request's data is nested too deeply")
    if isinstance(data, list):
        for item in data:
            _check_files(item, principal, door, depth + 1)
        return
    if not isinstance(data, dict):
        return
    marker = isinstance(data.get("meta"), dict) and data["meta"].get("_type") == "gradio.FileData"
    if marker or "path" in data or "url" in data:
        url = data.get("url")
        if url is not None and (not isinstance(url, str) or "://" in url and f"{GRADIO_PREFIX}/file=" not in url):
            raise ApiError(400, "a file's url may only point back to this server's /gradio_api/file= route")
        path = data.get("path")
        if not isinstance(path, str) or not path or "://" in path:
            raise ApiError(400, "files must be uploaded to this server first (POST /gradio_api/upload), not named by URL")
        if principal is None or not door.owns_upload(principal, path):
            raise ApiError(400, "a file argument must be an upload made in this session; server paths are refused")
        return
    for value in data.values():
        _check_files(value, principal, door, depth + 1)


async def _read_body(receive: Callable, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            raise ApiError(413, f"a UI call's body is limited to {limit // 1024} KiB (files go through the upload route)")
        if not message.get("more_body"):
            break
    return bytes(body)


def _replay(body: bytes, receive: Callable) -> Callable:
    """The body the door read, once; then the real channel (so a client's disconnect is still seen)."""
    sent = {"done": False}

    async def replayed() -> dict:
        if sent["done"]:
            return await receive()
        sent["done"] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _json(send: Callable, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode("utf-8")
    extra = [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + extra})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Callable, location: str) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
