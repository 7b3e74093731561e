"""The running app over HTTP, as an integrator or the browser sees it (real models, real photos)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from gradio_client import Client, handle_file
from PIL import Image

from service.webhook import SIGNATURE_HEADER, verify_signature
from tests.apphelpers import RunningApp, WebhookReceiver

SECRET = "test-secret"


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def app_tmp(tmp_path_factory) -> Path:
    """The app's own temp folder (TMPDIR), so what its requests leave behind can be counted."""
    return tmp_path_factory.mktemp("app-tmp")


@pytest.fixture(scope="module")
def app(tmp_path_factory, receiver, faces_dir, app_tmp):
    launched = time.time()
    running = RunningApp(tmp_path_factory.mktemp("app"), WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=SECRET, TMPDIR=str(app_tmp)).start()
    running.launched = launched  # for the uptime check
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.base_url + "/", verbose=False)


def test_health_reports_model_device_version_uptime(app):
    before = time.time()
    health = requests.get(f"{app.base_url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == "faceplugin-r512" and health["device"] == "cpu"
    assert health["version"]
    # Uptime counts from the app's start: at most the time since this module launched the process, and it
    # advances with the clock (uptime_s is rounded to 0.1 s).
    assert 0 <= health["uptime_s"] <= time.time() - app.launched + 0.1, health["uptime_s"]
    time.sleep(1.0)
    later = requests.get(f"{app.base_url}/health", timeout=10).json()["uptime_s"]
    assert 0.8 <= later - health["uptime_s"] <= time.time() - before + 0.2, (health["uptime_s"], later)


CJK = re.compile(r"[\u4e00-\u9fff]")


def test_compare_returns_decision_similarity_and_crops(client, faces_dir):
    text, crops = client.predict(handle_file(str(faces_dir / "img1.jpg")), handle_file(str(faces_dir / "img2.jpg")), False, "", api_name="/compare")
    assert "High-confidence match" in text and "Similarity" in text and " ms" in text
    assert not CJK.search(text), f"English request answered with Chinese text: {text}"
    # the two aligned crops at their native 112 px, and each photo with the face used boxed (issue 25)
    assert crops.count('width="112" height="112"') == 2 and crops.count("overview-tile") == 2


def test_compare_answers_in_chinese_when_the_browser_asks_for_it(app, faces_dir):
    chinese = Client(app.base_url + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    text, crops = chinese.predict(handle_file(str(faces_dir / "img1.jpg")), handle_file(str(faces_dir / "img2.jpg")), False, "", api_name="/compare")
    assert "高置信度匹配" in text and "相似度" in text
    shown = re.sub(r"<[^>]+>", "", text).replace(" ms", "")  # the words a person reads, not the HTML around them
    assert not re.search(r"[A-Za-z]{4,}", shown), f"Chinese request answered with English words: {text}"


def test_extract_returns_the_documented_json(client, faces_dir):
    text, payload, files, heatmap, *_ = client.predict(handle_file(str(faces_dir / "img3.jpg")), False, "", api_name="/extract")
    for key in ("feature", "quality_score", "resolution", "detected_face_area_ratio", "bbox", "faces_found", "reasons", "model"):
        assert key in payload
    assert len(payload["feature"]) == 512 and abs(np.linalg.norm(payload["feature"]) - 1) < 1e-3
    assert payload["resolution"] == "112x112" and payload["faces_found"] == 1
    assert {p.rsplit(".", 1)[-1] for p in [f if isinstance(f, str) else f["path"] for f in files]} == {"json", "npy"}
    assert heatmap is not None


def test_monitor_counts_grow_by_exactly_the_calls_made(app, client, faces_dir):
    before = app.stats()["count"]
    for name in ("img5.jpg", "img6.jpg", "img7.jpg"):
        client.predict(handle_file(str(faces_dir / name)), False, api_name="/extract")  # clients written before `source` still work
    client.predict(handle_file(str(faces_dir / "img8.jpg")), handle_file(str(faces_dir / "img9.jpg")), False, "", api_name="/compare")
    assert app.stats()["count"] == before + 5  # three extracts, two images compared
    summary = client.predict("24h", "", api_name="/monitor")[0]
    assert f"{before + 5}" in summary
    assert "quality < 0.40, reject threshold" in summary and "quality < 0.50, AUTO_REJECT_THRESHOLD" in summary


def test_source_is_stored_and_filters_the_monitor(app, client, faces_dir):
    client.predict(handle_file(str(faces_dir / "img10.jpg")), False, "gate-7", api_name="/extract")
    client.predict(handle_file(str(faces_dir / "img11.jpg")), handle_file(str(faces_dir / "img12.jpg")), False, "gate-7", api_name="/compare")
    gate = requests.get(f"{app.base_url}/stats", params={"source": "gate-7"}, timeout=10).json()
    assert gate["count"] == 3 and gate["source"] == "gate-7"
    assert app.stats()["count"] > 3
    summary, _, _, table, *_ = client.predict("24h", "gate-7", api_name="/monitor")
    assert "**Processed**: 3" in summary
    from ui.i18n import tr

    source_column, count_column = table["headers"].index(tr("en", "source")), table["headers"].index(tr("en", "count"))
    assert any(row[source_column] == "gate-7" and int(row[count_column]) == 3 for row in table["data"]), table
    assert requests.get(f"{app.base_url}/stats", params={"source": "x" * 65}, timeout=10).status_code == 400
    text = client.predict(handle_file(str(faces_dir / "img10.jpg")), False, "bad source/..", api_name="/extract")[0]
    assert "source must be at most 64" in text


def test_extract_leaves_no_temporary_folder_per_request(app, client, faces_dir, app_tmp):
    client.predict(handle_file(str(faces_dir / "img3.jpg")), False, "", api_name="/extract")
    before = sorted(path.name for path in app_tmp.iterdir())
    for name in ("img4.jpg", "img5.jpg", "img6.jpg"):
        files = client.predict(handle_file(str(faces_dir / name)), False, "", api_name="/extract")[2]
        assert len(files) == 2
    after = sorted(path.name for path in app_tmp.iterdir())
    assert after == before, f"new entries in the app's temp folder: {set(after) - set(before)}"
    assert not [name for name in after if name.startswith("frood-") and name != "frood-ui-downloads"]


def test_rejected_image_sends_one_signed_webhook(app, client, receiver, tmp_path):
    before = len(receiver.requests)
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(noise)
    client.predict(handle_file(str(noise)), False, "", api_name="/extract")
    import time

    deadline = time.time() + 30
    while len(receiver.requests) == before and time.time() < deadline:
        time.sleep(0.1)
    assert len(receiver.requests) == before + 1
    headers, body = receiver.requests[-1]
    assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["quality_score"] < 0.5 and payload["reasons"] and payload["image"] and payload["event_id"]
    assert payload["source"] == "ui" and payload["model"] == "faceplugin-r512"


def test_bad_inputs_give_a_readable_message_and_the_app_keeps_serving(app, client, tmp_path, faces_dir):
    empty_crop = tmp_path / "plain.png"
    Image.new("RGB", (200, 200), (200, 200, 200)).save(empty_crop)
    text, payload, files, heatmap, *_ = client.predict(handle_file(str(empty_crop)), False, "", api_name="/extract")
    assert "No face found" in text and "Traceback" not in text
    text, _ = client.predict(handle_file(str(empty_crop)), handle_file(str(faces_dir / "img1.jpg")), False, "", api_name="/compare")
    assert "No face found in image A" in text and "Traceback" not in text
    assert requests.get(f"{app.base_url}/health", timeout=10).status_code == 200
