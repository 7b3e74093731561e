"""Fuzz every route with >= 1,000 generated malformed inputs (fixed seed) against one real app process.

Each class of input has its documented status (docs/robustness.md); none may get a 5xx, the app must stay
healthy, and no log line may exceed the bound.
"""

from __future__ import annotations

import base64
import io
import json
import random
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from PIL import Image

from logs import LOG_LINE_MAX
from tests.apphelpers import RunningApp

SEED = 20261123
PADDLEX = ["face-recognition-index-build", "face-recognition-index-add", "face-recognition-index-remove", "face-recognition-infer"]
MAX_REQUEST_BYTES = 2 * 1024 * 1024

# class → the statuses a client may get for it (docs/robustness.md)
EXPECTED = {
    "not_json": {400},
    "truncated_json": {400},
    "wrong_shape": {422},
    "bad_identifier": {400},
    "bad_base64": {400},
    "not_an_image": {400, 413},  # 413: random bytes after a GIF/PNG signature can claim more than MAX_IMAGE_PIXELS
    "mutated_image": {200, 400, 413},  # 413: a mutated header claims more pixels than MAX_IMAGE_PIXELS
    "unknown_key": {404},
    "extract_bad_form": {400, 422},
    "extract_mutated": {200, 400, 413},
    "oversized_header": {200, 400, 431, None},  # refused by the HTTP parser (None: connection closed) or served normally
    "oversized_body": {413},
}


@pytest.fixture(scope="module")
def face_jpeg(faces_dir) -> bytes:
    with Image.open(faces_dir / "img1.jpg") as photo:
        photo = photo.convert("RGB")
        photo.thumbnail((140, 140))
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory, faces_dir):
    # A small pixel limit: a mutated header claiming 7000×5000 would otherwise be decoded (allowed by the default limit),
    # which is correct but slow for a thousand requests.
    running = RunningApp(tmp_path_factory.mktemp("fuzz-app"), MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES), MAX_IMAGE_PIXELS="1000000").start()
    yield running
    running.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, truncate, splice or duplicate bytes of a valid image."""
    data = bytearray(data)
    kind = rng.choice(["flip", "truncate", "splice", "header"])
    if kind == "flip":
        for _ in range(rng.randint(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == "truncate":
        data = data[: rng.randrange(1, len(data))]
    elif kind == "splice":
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randint(1, 500))
    else:
        data[rng.randrange(2, 40)] = rng.randrange(256)  # inside the header: dimensions, markers
    return bytes(data)


def bad_identifier(rng: random.Random) -> object:
    return rng.choice([
        "k" * rng.randint(65, 6000), "", "../../etc/passwd", "a/b", "键" * rng.randint(1, 30), "a b", "a\nb", "\x00", "-leading",
        "x" * 64 + "y", "%2e%2e", "a;rm -rf", "<script>", "\u202e", "a\tb",
    ])


def cases(rng: random.Random, key: str, face: bytes) -> list[tuple[str, str, dict]]:
    """(class, route, request kwargs) for requests.post."""
    out: list[tuple[str, str, dict]] = []
    valid = {"image": b64(face), "indexKey": key}
    for _ in range(150):
        out.append(("not_json", rng.choice(PADDLEX), {"data": rng.randbytes(rng.randint(1, 3000)), "headers": {"Content-Type": "application/json"}}))
    for _ in range(100):
        text = json.dumps({**valid, "imageLabelPairs": [{"image": "aGk=", "label": "a"}]})
        out.append(("truncated_json", rng.choice(PADDLEX), {"data": text[: rng.randrange(1, len(text) - 1)], "headers": {"Content-Type": "application/json"}}))
    shapes = [[], 1, "x", None, {}, {"image": 5, "indexKey": key}, {"image": ["a"], "indexKey": key}, {"ids": "1", "indexKey": key},
              {"ids": [1.5], "indexKey": key}, {"ids": [], "indexKey": key}, {"imageLabelPairs": "x"}, {"imageLabelPairs": [{"image": "aGk="}]},
              {"imageLabelPairs": [{"label": "a"}]}, {"imageLabelPairs": [], "indexKey": key}, {"imageLabelPairs": [{"image": "aGk=", "label": ""}]},
              {"image": "aGk=", "indexKey": None}, {"image": "aGk=", "indexKey": key, "source": 7},
              {"indexType": "Nope", "imageLabelPairs": [{"image": "aGk=", "label": "a"}]}]
    for _ in range(190):
        route = rng.choice(PADDLEX)
        shape = rng.choice(shapes)
        if route == "face-recognition-index-build" and isinstance(shape, dict) and "imageLabelPairs" not in shape:
            shape = {**shape, "imageLabelPairs": []}
        out.append(("wrong_shape", route, {"json": shape}))
    for _ in range(300):
        bad = bad_identifier(rng)
        choice = rng.randrange(7)
        if choice == 0:
            out.append(("bad_identifier", "face-recognition-infer", {"json": {"image": b64(face), "indexKey": bad}}))
        elif choice == 1:
            out.append(("bad_identifier", "face-recognition-index-add", {"json": {"imageLabelPairs": [{"image": b64(face), "label": "a"}], "indexKey": bad}}))
        elif choice == 2:
            out.append(("bad_identifier", "face-recognition-index-remove", {"json": {"ids": [rng.choice([-1, 2**63, 2**80])], "indexKey": key}}))
        elif choice == 3:
            out.append(("bad_identifier", "face-recognition-infer", {"json": {**valid, "source": bad}}))
        elif choice == 4:
            out.append(("bad_identifier", "face-recognition-index-build", {"json": {"imageLabelPairs": [{"image": "aGk=", "label": "a"}], "requestId": bad}}))
        elif choice == 5:
            label = rng.choice(["x" * rng.randint(129, 9000), "a\nb", "\x07bell", "   ", "a\u0000b", "a\u2028b"])
            out.append(("bad_identifier", "face-recognition-index-build", {"json": {"imageLabelPairs": [{"image": "aGk=", "label": label}]}}))
        else:
            model_name = bad if isinstance(bad, str) and bad else "m" * 70
            out.append(("bad_identifier", "extract", {"files": {"image": ("a.jpg", face)}, "data": {"model_name": model_name}}))
    for _ in range(80):
        garbage = rng.choice(["%%%", "aGk", "not base64!", "data:image/png;base64,@@@", "====", "a" * 4097 + "!"])
        out.append(("bad_base64", "face-recognition-infer", {"json": {"image": garbage, "indexKey": key}}))
    for _ in range(80):
        blob = rng.choice([rng.randbytes(rng.randint(1, 4000)), b"", b"GIF89a" + rng.randbytes(50), b"\x89PNG\r\n\x1a\n" + rng.randbytes(100)])
        route = rng.choice(["face-recognition-infer", "face-recognition-index-add"])
        body = {"image": b64(blob), "indexKey": key} if route.endswith("infer") else {"imageLabelPairs": [{"image": b64(blob), "label": "a"}], "indexKey": key}
        out.append(("not_an_image" if route.endswith("infer") else "mutated_image", route, {"json": body}))
    for _ in range(45):
        out.append(("mutated_image", "face-recognition-infer", {"json": {"image": b64(mutate(rng, face)), "indexKey": key}}))
    for _ in range(40):
        unknown = "".join(rng.choice("0123456789abcdef") for _ in range(32))
        out.append(("unknown_key", "face-recognition-infer", {"json": {"image": b64(face), "indexKey": unknown}}))
    for _ in range(40):
        kind = rng.randrange(4)
        if kind == 0:
            kwargs = {"data": rng.randbytes(200), "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}
        elif kind == 1:
            kwargs = {"data": {"model_name": "default"}}
        elif kind == 2:
            kwargs = {"files": {"image": ("a.jpg", face)}, "data": {"source": bad_identifier(rng) or "a b"}}
        else:
            kwargs = {"files": {"image": ("a.jpg", rng.randbytes(rng.randint(0, 3000)))}}
        out.append(("extract_bad_form", "extract", kwargs))
    for _ in range(25):
        out.append(("extract_mutated", "extract", {"files": {"image": ("m.jpg", mutate(rng, face))}}))
    for _ in range(20):
        headers = rng.choice([{"X-Junk": "a" * rng.randint(70_000, 300_000)}, {f"X-H{i}": "v" * 200 for i in range(rng.randint(300, 800))}])
        out.append(("oversized_header", "face-recognition-infer", {"json": {"image": "aGk=", "indexKey": key}, "headers": headers}))
    for _ in range(6):
        body = b"x" * (MAX_REQUEST_BYTES + 1 + rng.randrange(1000))
        out.append(("oversized_body", rng.choice(PADDLEX), {"data": body, "headers": {"Content-Type": "application/json"}}))
    rng.shuffle(out)
    return out


def test_fuzz_every_route_no_5xx_documented_status_and_bounded_logs(app, face_jpeg):
    session = requests.Session()
    built = session.post(f"{app.base_url}/face-recognition-index-build", json={"imageLabelPairs": [{"image": b64(face_jpeg), "label": "alice"}]}, timeout=120)
    key = built.json()["result"]["indexKey"]
    generated = cases(random.Random(SEED), key, face_jpeg)
    assert len(generated) >= 1000
    seen: Counter = Counter()
    seconds: Counter = Counter()
    wrong = []
    for kind, route, kwargs in generated:
        start = time.perf_counter()
        try:
            status = session.post(f"{app.base_url}/{route}", timeout=120, **kwargs).status_code
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            # the server closed the connection: refused before (ConnectionError) or while the answer was read
            status = None
            session = requests.Session()
        seconds[kind] += time.perf_counter() - start
        seen[(kind, status)] += 1
        if status not in EXPECTED[kind]:
            wrong.append((kind, route, status, str(kwargs)[:200]))
    print("fuzz:", len(generated), "requests;", sorted(seen.items(), key=str), {kind: round(t, 1) for kind, t in seconds.items()})
    assert not wrong, (len(wrong), wrong[:10], sorted(seen.items(), key=str))
    assert not any(status is not None and status >= 500 for _, status in seen)
    assert sum(count for (kind, _), count in seen.items() if kind in ("mutated_image", "extract_mutated")) >= 100

    assert requests.get(f"{app.base_url}/health", timeout=10).status_code == 200
    answer = session.post(f"{app.base_url}/face-recognition-infer", json={"image": b64(face_jpeg), "indexKey": key}, timeout=120).json()
    assert answer["result"]["faces"][0]["recResults"][0]["label"] == "alice"
    logs = app.output() + "".join(path.read_text(errors="replace") for path in Path(app.env["LOG_DIR"]).glob("*.log"))
    assert max(map(len, logs.splitlines())) <= LOG_LINE_MAX
    assert "Traceback" not in logs and "k" * 300 not in logs
