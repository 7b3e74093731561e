"""Every door locked (issue 20), tried as an attacker would against the real app started with ``API_KEYS``.

Routes are enumerated, not listed: every FastAPI route, every route Gradio mounts, and every Gradio function of
the UI, so a new route or a new UI function is covered by itself. Network: loopback only (the app, and a
listener on 127.0.0.1 that must receive nothing).
"""

from __future__ import annotations

import base64
import json
import re
import socketserver
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.apphelpers import RunningApp, WebhookReceiver

ADMIN, VIEWER, NARROW, EXTRACTOR = "admin-key-0123456789", "viewer-key-0123456789", "narrow-key-0123456789", "extract-key-0123456789"
KEYS = {
    ADMIN: {"scopes": ["admin"], "name": "Ada Admin", "rpm": 100000},
    VIEWER: {"scopes": ["monitor"], "name": "Vic Viewer", "rpm": 100000},
    NARROW: {"scopes": ["admin"], "models": ["facenet-vggface2"], "name": "Narrow", "rpm": 100000},  # every scope, but not the served model
    EXTRACTOR: {"scopes": ["extract", "compare"], "rpm": 600},
}
OPEN_PATHS = {"/health", "/login", "/logout", "/favicon.ico", "/theme.css", "/robots.txt", "/manifest.json"}
OPEN_PREFIXES = ("/assets/", "/static/", "/svelte/", "/docs-assets", "/pwa_icon")
PARAMS = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def all_routes(routes, prefix: str = "") -> list[tuple[str, str]]:
    """(path, method) of every route, through FastAPI's included routers and Starlette mounts (Gradio's too)."""
    found = []
    for route in routes:
        context = getattr(route, "include_context", None)
        if context is not None:
            found += all_routes(context.included_router.routes, prefix + context.prefix)
        elif hasattr(route, "endpoint") and getattr(route, "methods", None):
            found += [(prefix + route.path, method) for method in sorted(route.methods) if method != "HEAD"]
        elif getattr(route, "routes", None):
            found += all_routes(route.routes, prefix + (getattr(route, "path", "") or ""))
        elif getattr(route, "path", None):  # a mounted app without routes of its own (static files)
            found.append((prefix + route.path, "GET"))
    return sorted(set(found))


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def concrete(path: str) -> str:
    """A path template with every parameter filled in."""
    return PARAMS.sub(lambda match: {"path_or_url": "etc/passwd", "api_name": "extract", "size": "192"}.get(match.group(1), "x1"), path)


@pytest.fixture(scope="module")
def built():
    """The app object as the server builds it (for its routes and the UI's functions; nothing is served from it)."""
    import app as app_module

    blocks = {}
    from ui import app as ui_app

    real_build = ui_app.build_ui

    def keep(*args, **kwargs):
        blocks["demo"] = real_build(*args, **kwargs)
        return blocks["demo"]

    app_module.build_ui = keep
    try:
        asgi = app_module.create_app()
    finally:
        app_module.build_ui = real_build
    return asgi, blocks["demo"]


@pytest.fixture(scope="module")
def receiver():
    hook = WebhookReceiver()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, receiver):
    data_dir = tmp_path_factory.mktemp("keyed-app")
    running = RunningApp(
        data_dir,
        API_KEYS=json.dumps(KEYS),
        STORE_THUMBNAILS="false",
        STORE_API_THUMBNAILS="false",
        UI_TEMP_KEEP_S="2",
        WEBHOOK_URL=receiver.url,
        AUTO_REJECT_THRESHOLD="1.0",  # every image goes to the webhook: where would its picture be kept?
    ).start()
    yield running
    running.stop()


def call(app, method: str, path: str, key: str | None = None, headers: dict | None = None, **kwargs) -> requests.Response:
    headers = {**({"X-API-Key": key} if key else {}), **(headers or {})}
    return requests.request(method, app.base_url + path, headers=headers, timeout=60, allow_redirects=False, **kwargs)


def body_for(path: str) -> dict:
    return {"data": [], "fn_index": 0, "session_hash": "s"} if path.endswith("queue/join") else {"data": []}


# -- 1. one door: every route, every UI function ----------------------------------------------------------------


def test_every_route_the_app_serves_needs_a_key(keyed, built):
    from api.app import ROUTE_SCOPES
    from service.access import OPEN

    described = {path for path, scope in ROUTE_SCOPES.items() if scope == OPEN}
    assert described <= {"/health", "/docs", "/openapi.json", "/models"}  # opening anything else is a decision for this test
    routes = [(path, method) for path, method in all_routes(built[0].routes) if not is_open(path) and path not in described]
    assert len(routes) > 60, routes  # Gradio's routes are enumerated too
    answers = {f"{method} {path}": call(keyed, method, concrete(path), json=body_for(path)).status_code for path, method in routes}
    assert {route: status for route, status in answers.items() if status != 401} == {}


def test_a_browser_without_a_session_is_sent_to_sign_in(keyed):
    page = call(keyed, "GET", "/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert "password" in call(keyed, "GET", "/login").text


def test_every_fastapi_route_declares_its_scope(built):
    from api.app import ROUTE_SCOPES

    ours = {path for path, _ in all_routes(built[0].routes) if not path.startswith(("/gradio_api", "/assets", "/static", "/svelte"))}
    gradio_pages = {"/", "/config", "/config/", "/monitoring", "/monitoring/summary", "/monitoring/{key}", "/login/", "/pwa_icon/{size}"}
    undeclared = sorted(path for path in ours - gradio_pages if path not in ROUTE_SCOPES and not is_open(path))
    assert undeclared == []


def test_every_ui_function_declares_its_scope(built):
    from service.access import SCOPE_ATTRIBUTE

    demo = built[1]
    assert len(demo.fns) >= 15
    undeclared = [getattr(fn.fn, "__name__", str(fn)) for fn in demo.fns.values() if not hasattr(fn.fn, SCOPE_ATTRIBUTE)]
    assert undeclared == []


def test_a_key_without_the_scope_gets_403_on_every_route_and_ui_function(keyed, built):
    from api.app import ROUTE_SCOPES
    from service.access import OPEN, SIGNED_IN, scope_of

    fastapi_routes = [(path, method) for path, method in all_routes(built[0].routes) if ROUTE_SCOPES.get(path) not in (None, OPEN, SIGNED_IN, "monitor")]
    assert len(fastapi_routes) >= 6
    wrong = {}
    for path, method in fastapi_routes:
        status = call(keyed, method, path, VIEWER, json={}).status_code
        if status != 403:
            wrong[f"{method} {path}"] = status
    for index, fn in built[1].fns.items():
        needed = scope_of(fn.fn)
        status = call(keyed, "POST", "/gradio_api/queue/join", VIEWER, json={"data": [], "fn_index": index, "session_hash": "s"}).status_code
        if needed in ("monitor", SIGNED_IN):
            continue
        if status != 403:
            wrong[f"fn {index} {fn.fn.__name__} ({needed})"] = status
    assert wrong == {}
    assert call(keyed, "GET", "/stats", VIEWER).status_code == 200  # the viewer's own scope works


def test_a_viewer_cannot_remove_an_identity_enrolled_over_the_api(keyed, faces_dir):
    photo = base64.b64encode((faces_dir / "img1.jpg").read_bytes()).decode()
    built_index = call(keyed, "POST", "/face-recognition-index-build", ADMIN, json={"imageLabelPairs": [{"image": photo, "label": "jolie"}]})
    assert built_index.status_code == 200, built_index.text
    key = built_index.json()["result"]["indexKey"]
    for api_name in ("gallery_remove", "gallery_list", "gallery_create", "gallery_enrol"):
        assert call(keyed, "POST", f"/gradio_api/call/{api_name}", VIEWER, json={"data": [key, "jolie"]}).status_code == 403
    assert call(keyed, "POST", "/face-recognition-index-remove", VIEWER, json={"ids": [0], "indexKey": key}).status_code == 403
    infer = call(keyed, "POST", "/face-recognition-infer", ADMIN, json={"image": photo, "indexKey": key})
    assert infer.json()["result"]["faces"][0]["recResults"][0]["label"] == "jolie"


def test_unknown_ui_functions_are_404_not_500(keyed):
    assert call(keyed, "POST", "/gradio_api/call/nonexistent", ADMIN, json={"data": []}).status_code == 404
    assert call(keyed, "POST", "/gradio_api/queue/join", ADMIN, json={"data": [], "fn_index": 9999, "session_hash": "s"}).status_code == 404
    assert call(keyed, "POST", "/gradio_api/queue/join", ADMIN, data=b"{not json", headers={"Content-Type": "application/json"}).status_code in (400, 401)


def test_health_is_open_and_says_nothing_secret(keyed):
    health = requests.get(keyed.base_url + "/health", timeout=10).json()
    assert set(health) == {"status", "model", "device", "version", "uptime_s", "queue"}  # queue: images per model (issue 22)
    assert not any(key in json.dumps(health) for key in KEYS)


def test_rate_limits_hold_on_the_ui_side_too(tmp_path_factory):
    """The key's per-minute budget counts Gradio calls as well as API calls."""
    data_dir = tmp_path_factory.mktemp("rate-app")
    running = RunningApp(data_dir, API_KEYS=json.dumps({"tight": {"scopes": ["monitor"], "rpm": 3}})).start()
    try:
        statuses = [call(running, "POST", "/gradio_api/call/monitor", "tight", json={"data": ["24h", ""]}).status_code for _ in range(3)]
        limited = call(running, "GET", "/stats", "tight")
        assert statuses == [200, 200, 200] and limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "API_KEYS" not in running.output()  # keys set: no open-server warning
    finally:
        running.stop()


# -- 4. a key limited to one model runs no other ----------------------------------------------------------------


def test_a_key_limited_to_another_model_runs_none_of_the_served_ones(keyed, faces_dir):
    photo = base64.b64encode((faces_dir / "img1.jpg").read_bytes()).decode()
    answers = {
        "index-build": call(keyed, "POST", "/face-recognition-index-build", NARROW, json={"imageLabelPairs": [{"image": photo, "label": "a"}]}),
        "index-add": call(keyed, "POST", "/face-recognition-index-add", NARROW, json={"imageLabelPairs": [{"image": photo, "label": "a"}], "indexKey": "k"}),
        "infer": call(keyed, "POST", "/face-recognition-infer", NARROW, json={"image": photo, "indexKey": "k"}),
        "keypoints": call(keyed, "POST", "/human-keypoint-detection", NARROW, json={"image": photo}),
        "extract": call(keyed, "POST", "/extract", NARROW, files={"image": ("a.jpg", (faces_dir / "img1.jpg").read_bytes())}),
        "ui extract": call(keyed, "POST", "/gradio_api/call/extract", NARROW, json={"data": [None, False, ""]}),
    }
    assert {name: response.status_code for name, response in answers.items()} == dict.fromkeys(answers, 403)
    assert "facenet-vggface2" in answers["infer"].json()["errorMsg"]


# -- 2. no file by path --------------------------------------------------------------------------------------------


@pytest.fixture()
def secret_photo(faces_dir, tmp_path) -> Path:
    """A server-side photo no caller uploaded, with a name that would show wherever it got copied."""
    path = tmp_path / f"secret-{time.time_ns()}.jpg"
    path.write_bytes((faces_dir / "img1.jpg").read_bytes())
    return path


def copies_of(name: str) -> list[Path]:
    return [path for path in Path(tempfile.gettempdir()).rglob(name) if path.is_file()]


def test_file_paths_to_every_ui_function_are_refused_before_anything_reads_them(keyed, built, secret_photo):
    file_data = {"path": str(secret_photo), "meta": {"_type": "gradio.FileData"}}
    wrong = {}
    for index, fn in built[1].fns.items():
        inputs = len(fn.inputs)
        if not inputs:
            continue
        for position in range(inputs):
            data = [None] * inputs
            data[position] = file_data
            for key in (ADMIN, VIEWER):
                status = call(keyed, "POST", "/gradio_api/queue/join", key, json={"data": data, "fn_index": index, "session_hash": "s"}).status_code
                if status not in (400, 403):
                    wrong[f"{fn.fn.__name__}[{position}] {key[:6]}"] = status
    url_data = {"path": "http://127.0.0.1:9/x.jpg", "url": "http://127.0.0.1:9/x.jpg", "meta": {"_type": "gradio.FileData"}}
    assert call(keyed, "POST", "/gradio_api/call/pose", ADMIN, json={"data": [url_data, 0.5]}).status_code == 400
    assert call(keyed, "POST", "/gradio_api/call/pose", ADMIN, json={"data": [{"url": "http://127.0.0.1:9/x.jpg"}, 0.5]}).status_code == 400
    assert wrong == {}
    assert copies_of(secret_photo.name) == [secret_photo]  # nothing copied it into Gradio's cache


def test_an_upload_of_another_caller_is_refused_and_ones_own_works(keyed, faces_dir):
    uploaded = call(keyed, "POST", "/gradio_api/upload", ADMIN, files={"files": ("face.jpg", (faces_dir / "img1.jpg").read_bytes(), "image/jpeg")})
    assert uploaded.status_code == 200
    path = uploaded.json()[0]
    file_data = {"path": path, "meta": {"_type": "gradio.FileData"}}
    assert call(keyed, "POST", "/gradio_api/call/extract", EXTRACTOR, json={"data": [file_data, False, ""]}).status_code == 400
    own = call(keyed, "POST", "/gradio_api/call/extract", ADMIN, json={"data": [file_data, False, ""]})
    assert own.status_code == 200
    result = call(keyed, "GET", f"/gradio_api/call/extract/{own.json()['event_id']}", ADMIN)
    assert "event: complete" in result.text and "faces_found" in result.text


# -- 3. URLs fetched exactly as checked ------------------------------------------------------------------------------


class CountingListener:
    def __init__(self):
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hostile_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}\\@1.1.1.1/face.jpg",
        f"http://127.0.0.1:{port}\\\\@1.1.1.1/face.jpg",
        f"http://1.1.1.1@127.0.0.1:{port}/face.jpg",
        f"http://127.0.0.1:{port}@1.1.1.1/",
        f"http://2130706433:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://127.1:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::1]:{port}/",
        f"http://localhost:{port}/",
        f"http://127.0.0.1:{port}/",
        f"HTTP://127.0.0.1:{port}/",
        f"http://127。0。0。1:{port}/",
        "http://127.0.0.1:abc/",
        "http://127.0.0.1:99999/",
        "http://[/",
        "http://",
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{port}/",
    ]


def test_hostile_and_malformed_urls_are_400_through_every_route_and_reach_nothing(keyed):
    listener = CountingListener()
    try:
        wrong = {}
        for url in hostile_urls(listener.port):
            for route, body in (
                ("/face-recognition-index-build", {"imageLabelPairs": [{"image": url, "label": "x"}]}),
                ("/face-recognition-infer", {"image": url, "indexKey": "k0"}),
                ("/human-keypoint-detection", {"image": url}),
            ):
                status = call(keyed, "POST", route, ADMIN, json=body).status_code
                if status != 400:
                    wrong[f"{route} {url}"] = status
        assert wrong == {}
        assert listener.connections == 0
    finally:
        listener.close()


# -- 5. privacy as written ------------------------------------------------------------------------------------------


def test_a_ui_extract_leaves_no_image_or_feature_file_behind(keyed, faces_dir):
    uploaded = call(keyed, "POST", "/gradio_api/upload", ADMIN, files={"files": ("leave-no-trace.jpg", (faces_dir / "img3.jpg").read_bytes(), "image/jpeg")})
    path = uploaded.json()[0]
    started = call(keyed, "POST", "/gradio_api/call/extract", ADMIN, json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, False, ""]})
    answer = call(keyed, "GET", f"/gradio_api/call/extract/{started.json()['event_id']}", ADMIN).text
    assert "feature.json" in answer and "feature.npy" in answer  # the downloads were made
    made = [Path(match) for match in re.findall(r'"path": ?"([^"]+)"', answer)]
    assert made, answer
    deadline = time.time() + 30
    while time.time() < deadline and any(path.exists() for path in made + [Path(path)]):
        time.sleep(1)
    assert [str(path) for path in made + [Path(path)] if path.exists()] == []
    assert copies_of("leave-no-trace.jpg") == []
    assert not list((keyed.log_path.parent / "thumbnails").rglob("*.jpg"))  # STORE_THUMBNAILS=false


def test_api_images_are_not_kept_in_the_webhook_outbox_without_store_api_thumbnails(keyed, receiver, faces_dir):
    sent = call(keyed, "POST", "/extract", ADMIN, files={"image": ("a.jpg", (faces_dir / "img2.jpg").read_bytes())})
    assert sent.status_code == 200
    deadline = time.time() + 30
    api_events = []
    while time.time() < deadline and not api_events:
        time.sleep(0.5)
        api_events = [json.loads(body) for _, body in receiver.requests if json.loads(body)["channel"] == "api"]
    assert api_events, "the reject webhook was not called for the API image"
    assert all(event["image"] is None for event in api_events)
    # What the operator can act on travels without the picture: the face's ISO/IEC 29794-5 components (issue 26).
    assert all(event["components"]["components"]["UnderExposurePrevention"]["unit"] is not None for event in api_events)
    with sqlite3.connect(keyed.log_path.parent / "webhook-outbox.sqlite3") as outbox:
        bodies = " ".join(str(row) for row in outbox.execute("SELECT * FROM outbox").fetchall())
    assert "iVBOR" not in bodies  # no base64 PNG anywhere in the outbox


# -- 6. offline and quiet ------------------------------------------------------------------------------------------


def test_the_docs_and_the_ui_load_nothing_from_outside(keyed):
    docs = call(keyed, "GET", "/docs", VIEWER).text
    assert "swagger-ui-bundle.js" in docs and not re.search(r"(src|href)=\"https?://", docs)
    assert call(keyed, "GET", "/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert call(keyed, "GET", "/config", VIEWER).json()["analytics_enabled"] is False


def test_an_open_server_says_so(tmp_path_factory):
    from service.access import Door
    from settings import Settings
    from ui.i18n import tr

    assert Door(Settings(api_keys={})).open
    data_dir = tmp_path_factory.mktemp("open-app")
    running = RunningApp(data_dir).start()
    try:
        assert "open to anyone who can reach port" in running.output()
        assert requests.get(running.base_url + "/stats", timeout=10).status_code == 200
    finally:
        running.stop()
    assert "API_KEYS" in tr("en", "open_server") and "API_KEYS" in tr("zh", "open_server")


# -- ways around the door that Gradio's own routes open (each found by trying it) ---------------------------------


def test_a_call_by_name_is_checked_against_the_function_gradio_runs(keyed, built):
    """On /call/<name> Gradio runs the function named in the path and ignores a body's fn_index."""
    monitor_index = next(index for index, fn in built[1].fns.items() if fn.api_name == "monitor")
    sneaky = call(keyed, "POST", "/gradio_api/call/gallery_remove", VIEWER, json={"data": ["k", "x"], "fn_index": monitor_index})
    assert sneaky.status_code == 403


def test_keyword_calls_are_file_checked_too(keyed, secret_photo):
    """/call/v2/<name> takes keyword arguments, not a data list: every value of the body is checked."""
    file_data = {"path": str(secret_photo), "meta": {"_type": "gradio.FileData"}}
    answer = call(keyed, "POST", "/gradio_api/call/v2/pose", ADMIN, json={"image": file_data, "threshold": 0.5})
    assert answer.status_code == 400
    assert copies_of(secret_photo.name) == [secret_photo]


def test_the_file_route_fetches_no_url_and_stream_inputs_are_closed(keyed):
    listener = CountingListener()
    try:
        for path in (f"/gradio_api/file=http://127.0.0.1:{listener.port}/x.jpg", f"/gradio_api/file/http://127.0.0.1:{listener.port}/x.jpg"):
            assert call(keyed, "GET", path, ADMIN).status_code == 400
        assert call(keyed, "POST", "/gradio_api/stream/some-event", ADMIN, json={"data": []}).status_code == 404
        assert listener.connections == 0
    finally:
        listener.close()


def test_a_gradio_session_belongs_to_whoever_opened_it(keyed):
    assert call(keyed, "POST", "/gradio_api/call/monitor", VIEWER, json={"data": ["24h", ""], "session_hash": "viewer-session-2"}).status_code == 200
    assert call(keyed, "GET", "/gradio_api/queue/data?session_hash=viewer-session-2", ADMIN).status_code == 403
    assert call(keyed, "GET", "/gradio_api/heartbeat/viewer-session-2", ADMIN).status_code == 403
