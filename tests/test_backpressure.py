"""Issue 22, one bad request never hurts another, against the real app (``python app.py`` on loopback):

- back-pressure: past BATCH_MAX_QUEUE_WAIT_S of expected wait, /extract answers 503 + Retry-After at once, and the
  requests it accepts keep a bounded latency; /health answers fast under that load and reports the queue depth;
- every body over MAX_REQUEST_BYTES, chunked or not, is 413 on every route (JSON, multipart, the UI's uploads);
- an error answer leaves the client's connection usable (or says ``Connection: close``);
- a client's bad input is one [WARNING] line in the log, never a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import uvicorn
from fastapi import FastAPI, Request
from PIL import Image

from api import routes as api_routes
from tests.apphelpers import RunningApp, free_port

MAX_REQUEST_BYTES = 2 * 1024 * 1024
# Low enough that 24 clients' queue exceeds it on an idle machine too (a 160-px face costs tens of ms): the test
# must see back-pressure engage whatever the CPUs are doing, not only when they are overloaded.
MAX_QUEUE_WAIT_S = 0.25


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(
        tmp_path_factory.mktemp("backpressure-app"), MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES), BATCH_MAX_QUEUE_WAIT_S=str(MAX_QUEUE_WAIT_S)
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def face_jpeg(faces_dir) -> bytes:
    with Image.open(faces_dir / "img1.jpg") as photo:
        photo = photo.convert("RGB")
        photo.thumbnail((160, 160))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def extract(session: requests.Session, base_url: str, data: bytes) -> requests.Response:
    return session.post(f"{base_url}/extract", files={"image": ("face.jpg", data, "image/jpeg")}, data={"model_name": "default"}, timeout=120)


def test_back_pressure_503_with_retry_after_bounded_latency_and_a_fast_health(app, face_jpeg):
    for _ in range(3):  # the first batch warms the models up, the next ones measure the service time
        warm = extract(requests.Session(), app.base_url, face_jpeg)
    assert warm.status_code == 200 and len(warm.json()["feature"]) == 512
    reference = np.array(warm.json()["feature"])
    clients = 24
    health_ms: list[float] = []
    depths: list[int] = []
    done = threading.Event()

    def poll_health() -> None:
        session = requests.Session()
        while not done.is_set():
            start = time.perf_counter()
            answer = session.get(f"{app.base_url}/health", timeout=30)
            health_ms.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200
            depths.append(answer.json()["queue"]["faceplugin-r512"])
            time.sleep(0.05)

    def client(_: int) -> list[tuple[int, float, requests.Response]]:
        """Until one answer is served, honouring Retry-After as a well-behaved client does (bounded)."""
        session, out = requests.Session(), []
        for _ in range(20):
            start = time.perf_counter()
            response = extract(session, app.base_url, face_jpeg)
            out.append((response.status_code, time.perf_counter() - start, response))
            if response.status_code != 503:
                break
            time.sleep(min(float(response.headers["Retry-After"]), 2.0))
        return out

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with ThreadPoolExecutor(max_workers=clients) as pool:
            answers = [item for batch in pool.map(client, range(clients)) for item in batch]
    finally:
        done.set()
        poller.join(60)
    statuses = [status for status, _, _ in answers]
    served = [(seconds, response) for status, seconds, response in answers if status == 200]
    refused = [response for status, _, response in answers if status == 503]
    latencies = sorted(seconds for seconds, _ in served)
    print({"served": len(served), "refused": len(refused), "served_s": [round(x, 1) for x in latencies],
           "health_ms_p99": round(float(np.percentile(health_ms, 99))), "depth_max": max(depths)})
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert refused, "back-pressure never engaged"
    assert all(int(response.headers["Retry-After"]) >= 1 and "busy" in response.json()["detail"] for response in refused)
    # refusing is for the excess, not for everyone (how many get through in 20 tries depends on the shared CPUs' load)
    assert len(served) >= 3
    for _, response in served:  # every accepted request got its own, right answer
        assert float(np.dot(reference, np.array(response.json()["feature"]))) > 0.999
    # accepted requests waited about MAX_QUEUE_WAIT_S at most for the models (slack: decoding, recording and 2 shared,
    # often overloaded CPU cores; without back-pressure the wait grows with the number of clients instead)
    assert float(np.median(latencies)) < MAX_QUEUE_WAIT_S + 4, latencies
    assert max(depths) >= 1
    assert float(np.percentile(health_ms, 99)) < 1000, sorted(health_ms)[-5:]  # the load benchmark's goal is 200 ms
    assert requests.get(f"{app.base_url}/health", timeout=10).json()["queue"] == {"faceplugin-r512": 0}


def _chunks(total: int, head: bytes = b"", tail: bytes = b""):
    yield head
    sent = 0
    while sent < total:
        yield b"x" * 65536
        sent += 65536
    yield tail


MULTIPART_HEAD = b'--zz\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
ROUTES = [
    ("/face-recognition-index-build", "application/json"),
    ("/face-recognition-index-add", "application/json"),
    ("/face-recognition-index-remove", "application/json"),
    ("/face-recognition-infer", "application/json"),
    ("/human-keypoint-detection", "application/json"),
    ("/extract", "multipart/form-data; boundary=zz"),
    ("/gradio_api/upload", "multipart/form-data; boundary=zz"),
    ("/login", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("route", "content_type"), ROUTES)
@pytest.mark.parametrize("chunked", [True, False])
def test_every_oversized_body_is_413_on_every_route(app, route, content_type, chunked):
    size = MAX_REQUEST_BYTES + 200_000
    head, tail = (MULTIPART_HEAD, b"\r\n--zz--\r\n") if content_type.startswith("multipart") else (b"", b"")
    body = _chunks(size, head, tail) if chunked else b"".join(_chunks(size, head, tail))
    session = requests.Session()
    response = session.post(f"{app.base_url}{route}", data=body, headers={"Content-Type": content_type}, timeout=60)
    assert response.status_code == 413, (route, response.status_code, response.text[:200])
    assert "too large" in response.text
    assert response.headers.get("connection", "").lower() == "close"  # the rest of the body was never read: said so
    assert session.get(f"{app.base_url}/health", timeout=10).status_code == 200  # the client's next request works


def test_a_chunked_body_within_the_limit_is_served(app, face_jpeg):
    body = base64.b64encode(face_jpeg).decode()
    payload = f'{{"imageLabelPairs": [{{"image": "{body}", "label": "alice"}}]}}'.encode()
    session = requests.Session()
    pieces = (payload[i : i + 4096] for i in range(0, len(payload), 4096))  # a generator: sent chunked
    response = session.post(f"{app.base_url}/face-recognition-index-build", data=pieces, headers={"Content-Type": "application/json"}, timeout=120)
    assert response.status_code == 200 and list(response.json()["result"]["idMap"].values()) == ["alice"]
    assert session.get(f"{app.base_url}/health", timeout=10).status_code == 200


def test_the_request_after_a_failed_one_on_the_same_connection_is_answered(app, face_jpeg):
    """Before: a chunked oversized upload to the UI's route was a 500 whose connection was then reset under the
    client's next request. Now every error answer either keeps the connection or says Connection: close."""
    session = requests.Session()
    failed = session.post(f"{app.base_url}/gradio_api/upload", data=_chunks(MAX_REQUEST_BYTES + 100_000, MULTIPART_HEAD, b"\r\n--zz--\r\n"),
                          headers={"Content-Type": "multipart/form-data; boundary=zz"}, timeout=60)
    assert failed.status_code < 500
    for bad in ({"image": "%%%", "indexKey": "abc"}, {"image": "aGk=", "indexKey": "0123456789abcdef"}, "{not json"):
        kwargs = {"data": bad, "headers": {"Content-Type": "application/json"}} if isinstance(bad, str) else {"json": bad}
        assert 400 <= session.post(f"{app.base_url}/face-recognition-infer", timeout=60, **kwargs).status_code < 500
        good = extract(session, app.base_url, face_jpeg)  # the same session: its kept-alive connection
        assert good.status_code == 200 and len(good.json()["feature"]) == 512


def test_a_clients_bad_input_is_one_warning_line_never_a_traceback(app, face_jpeg):
    before = len(app.output().splitlines())
    session = requests.Session()
    tiny = io.BytesIO()
    Image.new("RGB", (10, 300), (128, 128, 128)).save(tiny, format="PNG")  # below 20 px, 30:1
    bad_inputs = [b"not an image", face_jpeg[: len(face_jpeg) // 3] + b"\x00" * 10, tiny.getvalue(), b"GIF89a" + b"\xff" * 40]
    for data in bad_inputs:
        assert extract(session, app.base_url, data).status_code in (400, 413)
    time.sleep(0.5)
    new = app.output().splitlines()[before:]
    assert "Traceback" not in "\n".join(new)
    warnings = [line for line in new if line.startswith("[WARNING] POST /extract -> 4")]
    assert len(warnings) == len(bad_inputs), new
    assert not [line for line in new if line.startswith("[ERROR]")]


def test_a_500_keeps_the_connection_usable():
    """A fault of ours (an unexpected exception) answers 500 in the route's format, logged once, and the client's next
    request on the same kept-alive connection is served: before, uvicorn closed it without ``Connection: close``.
    The failing route exists only in this test's own app (the product has none): the routes' error handling
    (``api.routes.install``) is the product's, served by uvicorn as ``app.py`` serves it."""
    app = FastAPI()

    @app.get("/face-recognition-test-fault")
    def fault() -> None:
        raise RuntimeError("a bug of ours")

    @app.get("/port")
    def port(request: Request) -> dict:
        return {"port": request.client.port}

    api_routes.install(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="critical"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        session = requests.Session()
        first = session.get(f"{base}/port", timeout=10).json()["port"]
        failed = session.get(f"{base}/face-recognition-test-fault", timeout=10)
        assert failed.status_code == 500 and failed.json()["errorCode"] == 500  # the PaddleX envelope on its paths
        assert "internal error" in failed.json()["errorMsg"] and "a bug of ours" not in failed.text
        assert session.get(f"{base}/port", timeout=10).json()["port"] == first  # the same connection, still open
    finally:
        server.should_exit = True
        thread.join(10)
