"""PaddleX-compatible gallery API and InsightFace-style /extract over real HTTP, real photos."""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
import time

import numpy as np
import pytest
import requests
from PIL import Image

from logs import LOG_LINE_MAX
from tests.apphelpers import RunningApp, WebhookReceiver

FULL = {"X-API-Key": "full-key"}
API_KEYS = json.dumps(
    {"full-key": {"models": [], "rpm": 10000}, "limited-key": {"models": ["facenet-vggface2"], "rpm": 2}, "slow-key": {"models": [], "rpm": 2}}
)


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("api-app")


@pytest.fixture(scope="module")
def hook():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(data_dir, faces_dir, hook):
    running = RunningApp(data_dir, API_KEYS=API_KEYS, MAX_REQUEST_BYTES=str(24 * 1024 * 1024), WEBHOOK_URL=hook.url).start()
    yield running
    running.stop()


def stats_rows(data_dir, source: str) -> list[tuple[str, float]]:
    """(operation, quality) of every stats row stored with this source."""
    with sqlite3.connect(data_dir / "stats.sqlite3") as connection:
        return connection.execute("SELECT operation, quality FROM events WHERE source = ? ORDER BY id", (source,)).fetchall()


@pytest.fixture(scope="module")
def photos_by_identity(faces_dir) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    with open(faces_dir / "identities.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault(row["identity"], []).append(row["file"])
    return {identity: sorted(files, key=lambda f: int(f[3:].split("_")[0].split(".")[0])) for identity, files in groups.items()}


def post(app, route: str, payload, headers=FULL) -> requests.Response:
    return requests.post(f"{app.base_url}/{route}", json=payload, headers=headers, timeout=300)


def result(response: requests.Response) -> dict:
    body = response.json()
    assert response.status_code == 200 and body["errorCode"] == 0 and body["errorMsg"] == "Success", body
    assert body["logId"]
    return body["result"]


def best_label(app, key: str, image_path) -> str | None:
    faces = result(post(app, "face-recognition-infer", {"image": b64(image_path), "indexKey": key}))["faces"]
    return faces[0]["recResults"][0]["label"] if faces and faces[0]["recResults"] else None


def test_identify_every_other_photo_rank1_and_unknown_stranger(app, faces_dir, photos_by_identity):
    identities = sorted(photos_by_identity)
    assert len(identities) == 13
    pairs = [{"image": b64(faces_dir / photos_by_identity[name][0]), "label": name} for name in identities]
    built = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs}))
    assert sorted(built["idMap"].values()) == identities and not built["skipped"]
    key = built["indexKey"]

    answers = {(name, file): best_label(app, key, faces_dir / file) for name in identities for file in photos_by_identity[name][1:]}
    correct = sum(label == name for (name, _), label in answers.items())
    assert len(answers) >= 45
    assert correct / len(answers) >= 0.95, f"rank-1 accuracy {correct}/{len(answers)}: {answers}"

    # A person who is not enrolled comes back unknown: remove one identity, ask again with their photos.
    stranger = identities[-1]
    stranger_id = next(int(i) for i, label in built["idMap"].items() if label == stranger)
    result(post(app, "face-recognition-index-remove", {"ids": [stranger_id], "indexKey": key}))
    for file in photos_by_identity[stranger]:
        assert best_label(app, key, faces_dir / file) is None, f"{file} of a non-enrolled person was not reported unknown"


def test_infer_returns_an_annotated_jpeg(app, faces_dir, photos_by_identity):
    name = sorted(photos_by_identity)[0]
    pairs = [{"image": b64(faces_dir / photos_by_identity[name][0]), "label": name}]
    key = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs}))["indexKey"]
    inferred = result(post(app, "face-recognition-infer", {"image": b64(faces_dir / "couple.jpg"), "indexKey": key}))
    assert len(inferred["faces"]) >= 2
    for face in inferred["faces"]:
        assert len(face["bbox"]) == 4 and 0 < face["score"] <= 1
    with Image.open(io.BytesIO(base64.b64decode(inferred["image"]))) as drawn:
        assert drawn.format == "JPEG"


def test_enrolment_is_quality_gated(app, faces_dir, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    built = result(post(app, "face-recognition-index-build", {"imageLabelPairs": [
        {"image": b64(faces_dir / "img1.jpg"), "label": "a"}, {"image": b64(blank), "label": "b"}]}))
    assert list(built["idMap"].values()) == ["a"]
    assert built["skipped"][0]["label"] == "b" and "no face" in built["skipped"][0]["reason"]


def test_add_remove_restart_same_answers_for_every_index_type(app, data_dir, faces_dir, photos_by_identity):
    names = sorted(photos_by_identity)[:4]
    queries = [photos_by_identity[name][1] for name in names]
    answers_before = {}
    for index_type in ("Flat", "IVF", "HNSW32"):
        first = [{"image": b64(faces_dir / photos_by_identity[n][0]), "label": n} for n in names[:2]]
        built = result(post(app, "face-recognition-index-build", {"imageLabelPairs": first, "indexType": index_type}))
        key = built["indexKey"]
        more = [{"image": b64(faces_dir / photos_by_identity[n][0]), "label": n} for n in names[2:]]
        added = result(post(app, "face-recognition-index-add", {"imageLabelPairs": more, "indexKey": key}))
        assert sorted(added["idMap"].values()) == sorted(names)
        removed_id = next(int(i) for i, label in added["idMap"].items() if label == names[0])
        kept = result(post(app, "face-recognition-index-remove", {"ids": [removed_id], "indexKey": key}))
        assert names[0] not in kept["idMap"].values() and len(kept["idMap"]) == 3
        answers_before[key] = [
            [r["label"] for r in result(post(app, "face-recognition-infer", {"image": b64(faces_dir / q), "indexKey": key}))["faces"][0]["recResults"]]
            for q in queries
        ]
        assert answers_before[key][0] == []  # the removed person is no longer found
        assert answers_before[key][1:] == [[n] for n in names[1:]]

    app.stop()
    app.start()
    for key, before in answers_before.items():
        after = [
            [r["label"] for r in result(post(app, "face-recognition-infer", {"image": b64(faces_dir / q), "indexKey": key}))["faces"][0]["recResults"]]
            for q in queries
        ]
        assert after == before


def test_extract_tight_png_crop_matches_full_photo(app, faces_dir):
    full = requests.post(f"{app.base_url}/extract", files={"image": open(faces_dir / "img1.jpg", "rb")}, data={"model_name": "default"},
                         headers=FULL, timeout=120).json()
    x1, y1, x2, y2 = full["bbox"]
    width, height = x2 - x1, y2 - y1
    with Image.open(faces_dir / "img1.jpg") as photo:
        crop = photo.convert("RGB").crop((int(x1 - 0.1 * width), int(y1 - 0.1 * height), int(x2 + 0.1 * width), int(y2 + 0.1 * height)))
        crop.thumbnail((256, 256))
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    cropped = requests.post(f"{app.base_url}/extract", files={"image": ("crop.png", buffer.getvalue(), "image/png")},
                            data={"model_name": "default"}, headers=FULL, timeout=120).json()
    assert cropped["model_name"] == full["model_name"] == "faceplugin-r512"
    cosine = float(np.dot(full["feature"], cropped["feature"]))
    assert cosine >= 0.95, cosine
    assert 0.0 <= cropped["quality_score"] <= 1.0


def test_extract_without_a_face_is_200_with_empty_feature(app, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (160, 160), (30, 30, 30)).save(blank)
    response = requests.post(f"{app.base_url}/extract", files={"image": open(blank, "rb")}, data={"model_name": "default"}, headers=FULL, timeout=60)
    assert response.status_code == 200
    assert response.json()["feature"] == [] and response.json()["message"] == "no face found"


def test_models_lists_names_and_dimensions(app):
    models = requests.get(f"{app.base_url}/models", timeout=30).json()["models"]
    assert {"name": "faceplugin-r512", "feature_dim": 512, "default": True} in models


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("face-recognition-infer", "{not json", 400, "not valid JSON"),
        ("face-recognition-infer", {"image": "aGVsbG8="}, 422, "indexKey"),
        ("face-recognition-infer", {"image": "%%%not-base64%%%", "indexKey": "x"}, 400, "base64"),
        ("face-recognition-infer", {"image": "aGVsbG8=", "indexKey": "0123456789abcdef"}, 400, "not an image"),
        ("face-recognition-infer", {"image": "http://127.0.0.1:9/face.jpg", "indexKey": "x"}, 400, "private"),
        ("face-recognition-infer", {"image": "http://169.254.169.254/latest", "indexKey": "x"}, 400, "private"),
        ("face-recognition-index-remove", {"ids": [1], "indexKey": "0123456789abcdef"}, 404, "unknown indexKey"),
        ("face-recognition-index-build", {"imageLabelPairs": []}, 422, "imageLabelPairs"),
    ],
)
def test_bad_requests_get_their_status_and_message(app, route, body, status, message):
    if isinstance(body, str):
        response = requests.post(f"{app.base_url}/{route}", data=body, headers={**FULL, "Content-Type": "application/json"}, timeout=60)
    else:
        response = post(app, route, body)
    payload = response.json()
    assert response.status_code == status == payload["errorCode"], payload
    assert message in payload["errorMsg"]
    assert requests.get(f"{app.base_url}/health", timeout=10).status_code == 200


def test_unknown_index_key_with_a_real_image_is_404(app, faces_dir):
    response = post(app, "face-recognition-infer", {"image": b64(faces_dir / "img1.jpg"), "indexKey": "0123456789abcdef"})
    assert response.status_code == 404 and "unknown indexKey" in response.json()["errorMsg"]


def test_unknown_model_and_non_image_on_extract(app, tmp_path):
    text_file = {"image": ("x.jpg", b"hello", "image/jpeg")}
    response = requests.post(f"{app.base_url}/extract", files=text_file, data={"model_name": "nope"}, headers=FULL, timeout=60)
    assert response.status_code == 400 and "faceplugin-r512" in response.json()["detail"]
    response = requests.post(f"{app.base_url}/extract", files=text_file, data={"model_name": "default"}, headers=FULL, timeout=60)
    assert response.status_code == 400 and "not an image" in response.json()["detail"]


def test_oversized_body_is_413_and_the_app_keeps_serving(app):
    response = requests.post(f"{app.base_url}/face-recognition-infer", data=b"x" * (25 * 1024 * 1024),
                             headers={**FULL, "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert requests.get(f"{app.base_url}/health", timeout=10).status_code == 200


def test_api_keys_401_403_429(app, faces_dir):
    assert post(app, "face-recognition-infer", {"image": "aGk=", "indexKey": "x"}, headers={}).status_code == 401
    assert post(app, "face-recognition-infer", {"image": "aGk=", "indexKey": "x"}, headers={"X-API-Key": "wrong"}).status_code == 401
    response = requests.post(f"{app.base_url}/extract", files={"image": open(faces_dir / "img1.jpg", "rb")}, data={"model_name": "default"},
                             headers={"X-API-Key": "limited-key"}, timeout=60)
    assert response.status_code == 403 and "facenet-vggface2" in response.json()["detail"]
    # The gallery routes run the served model, which this key may not use (issue 20: it used to get through).
    limited = post(app, "face-recognition-index-remove", {"ids": [1], "indexKey": "0123456789abcdef"}, headers={"Authorization": "Bearer limited-key"})
    assert limited.status_code == 403 and limited.json()["errorCode"] == 403
    slow = {"Authorization": "Bearer slow-key"}
    statuses = [post(app, "face-recognition-index-remove", {"ids": [1], "indexKey": "0123456789abcdef"}, headers=slow) for _ in range(3)]
    assert [r.status_code for r in statuses[:1]] == [404]
    assert statuses[-1].status_code == 429 and int(statuses[-1].headers["Retry-After"]) >= 1


def test_gallery_routes_count_every_image_and_send_rejects_to_the_webhook_with_the_source(app, data_dir, hook, faces_dir, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    pairs = [{"image": b64(faces_dir / "img1.jpg"), "label": "a"}, {"image": b64(blank), "label": "b"}]
    key = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs, "source": "gate-3"}))["indexKey"]
    result(post(app, "face-recognition-index-add", {"imageLabelPairs": [{"image": b64(faces_dir / "img2.jpg"), "label": "c"}],
                                                     "indexKey": key, "source": "gate-3"}))
    result(post(app, "face-recognition-infer", {"image": b64(blank), "indexKey": key, "source": "gate-3"}))
    rows = stats_rows(data_dir, "gate-3")
    assert [operation for operation, _ in rows] == ["index_build", "index_build", "index_add", "infer"]
    assert rows[0][1] > 0.5 and rows[1][1] == 0.0 and rows[3][1] == 0.0
    deadline = time.time() + 30
    while len([r for r in hook.requests if b"gate-3" in r[1]]) < 2 and time.time() < deadline:
        time.sleep(0.1)
    sent = [json.loads(body) for _, body in hook.requests if b"gate-3" in body]
    assert sorted(event["operation"] for event in sent) == ["index_build", "infer"]
    assert all(event["source"] == "gate-3" and event["channel"] == "api" and event["quality_score"] < 0.5 for event in sent)


def test_a_retried_request_id_enrols_once(app, faces_dir):
    pairs = [{"image": b64(faces_dir / "img1.jpg"), "label": "a"}]
    first = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs, "requestId": "build-7f3a"}))
    again = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs, "requestId": "build-7f3a"}))
    assert again["indexKey"] == first["indexKey"] and again["idMap"] == first["idMap"] == {"0": "a"} and again["replayed"]
    key = first["indexKey"]
    add = {"imageLabelPairs": [{"image": b64(faces_dir / "img2.jpg"), "label": "b"}], "indexKey": key, "requestId": "add-1"}
    assert result(post(app, "face-recognition-index-add", add))["idMap"] == {"0": "a", "1": "b"}
    replay = result(post(app, "face-recognition-index-add", add))
    assert replay["idMap"] == {"0": "a", "1": "b"} and replay["replayed"]
    remove = {"ids": [1], "indexKey": key, "requestId": "rm-1"}
    assert result(post(app, "face-recognition-index-remove", remove))["idMap"] == {"0": "a"}
    assert result(post(app, "face-recognition-index-remove", remove))["idMap"] == {"0": "a"}  # a retry, not a 404
    assert result(post(app, "face-recognition-index-add", {**add, "requestId": "add-2"}))["idMap"] == {"0": "a", "2": "b"}


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("face-recognition-infer", {"image": "aGk=", "indexKey": "k" * 5000}, "indexKey"),
        ("face-recognition-index-add", {"imageLabelPairs": [{"image": "aGk=", "label": "a"}], "indexKey": "k" * 5000}, "indexKey"),
        ("face-recognition-index-remove", {"ids": [1], "indexKey": "../../etc"}, "indexKey"),
        ("face-recognition-index-remove", {"ids": [1], "indexKey": "键"}, "indexKey"),
        ("face-recognition-infer", {"image": "aGk=", "indexKey": "abc", "source": "cam 1; DROP"}, "source"),
        ("face-recognition-index-build", {"imageLabelPairs": [{"image": "aGk=", "label": "x" * 5000}]}, "label"),
        ("face-recognition-index-build", {"imageLabelPairs": [{"image": "aGk=", "label": "a\nb"}]}, "label"),
        ("face-recognition-index-build", {"imageLabelPairs": [{"image": "aGk=", "label": "a"}], "requestId": "r" * 65}, "requestId"),
        ("face-recognition-index-remove", {"ids": [2**70], "indexKey": "abc"}, "ids"),
    ],
)
def test_bad_identifiers_are_400_before_the_disk_and_never_flood_the_log(app, route, body, field):
    response = post(app, route, body)
    payload = response.json()
    assert response.status_code == 400 == payload["errorCode"], payload
    assert field in payload["errorMsg"] and len(payload["errorMsg"]) < 300
    assert max(map(len, app.output().splitlines())) <= LOG_LINE_MAX
    assert "k" * 200 not in app.output()


def test_extract_source_and_model_name_are_validated(app, faces_dir, data_dir):
    image = {"image": open(faces_dir / "img1.jpg", "rb")}
    response = requests.post(f"{app.base_url}/extract", files=image, data={"model_name": "m" * 5000}, headers=FULL, timeout=60)
    assert response.status_code == 400 and "model_name" in response.json()["detail"] and len(response.json()["detail"]) < 300
    response = requests.post(f"{app.base_url}/extract", files=image, data={"source": "no spaces allowed"}, headers=FULL, timeout=60)
    assert response.status_code == 400 and "source" in response.json()["detail"]
    image = {"image": open(faces_dir / "img1.jpg", "rb")}
    response = requests.post(f"{app.base_url}/extract", files=image, data={"source": "kiosk-12"}, headers=FULL, timeout=60)
    assert response.status_code == 200 and [op for op, _ in stats_rows(data_dir, "kiosk-12")] == ["extract"]


def test_a_request_id_reused_for_another_body_is_409_and_changes_nothing(app, faces_dir):
    """Issue 22: an idempotency key reused for a different request is a conflict, never a silent 'replayed'."""
    pairs = [{"image": b64(faces_dir / "img1.jpg"), "label": "a"}]
    first = result(post(app, "face-recognition-index-build", {"imageLabelPairs": pairs, "requestId": "build-409"}))
    other = post(app, "face-recognition-index-build", {"imageLabelPairs": [{**pairs[0], "label": "z"}], "requestId": "build-409"})
    assert other.status_code == 409 == other.json()["errorCode"] and "requestId 'build-409'" in other.json()["errorMsg"]
    key = first["indexKey"]
    add = {"imageLabelPairs": [{"image": b64(faces_dir / "img2.jpg"), "label": "b"}], "indexKey": key, "requestId": "add-409"}
    assert result(post(app, "face-recognition-index-add", add))["idMap"] == {"0": "a", "1": "b"}
    conflict = post(app, "face-recognition-index-add", {**add, "imageLabelPairs": [{"image": b64(faces_dir / "img3.jpg"), "label": "c"}]})
    assert conflict.status_code == 409 and "different request" in conflict.json()["errorMsg"]
    assert result(post(app, "face-recognition-index-add", add))["replayed"]  # the same body is still a retry
    remove = {"ids": [1], "indexKey": key, "requestId": "rm-409"}
    assert result(post(app, "face-recognition-index-remove", remove))["idMap"] == {"0": "a"}
    assert post(app, "face-recognition-index-remove", {**remove, "ids": [0]}).status_code == 409
    inferred = result(post(app, "face-recognition-infer", {"image": b64(faces_dir / "img1.jpg"), "indexKey": key}))
    assert inferred["faces"][0]["recResults"][0]["label"] == "a"  # nothing of the conflicting requests was applied


def test_a_build_where_every_image_is_skipped_creates_nothing_and_says_why(app, data_dir, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    before = set((data_dir / "indexes").iterdir()) if (data_dir / "indexes").is_dir() else set()
    response = post(app, "face-recognition-index-build", {"imageLabelPairs": [
        {"image": b64(blank), "label": "b"}, {"image": base64.b64encode(b"not an image").decode(), "label": "c"}], "requestId": "empty-1"})
    body = response.json()
    assert response.status_code == 422 == body["errorCode"], body
    assert "no image could be enrolled" in body["errorMsg"] and "no face found" in body["errorMsg"] and "not an image" in body["errorMsg"]
    after = set((data_dir / "indexes").iterdir()) if (data_dir / "indexes").is_dir() else set()
    assert after == before  # no folder for an empty gallery
