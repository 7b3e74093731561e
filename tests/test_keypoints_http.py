"""POST /human-keypoint-detection over the real app (PaddleX envelope, statuses for bad input) and
`frood keypoints` as a user types it."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.apphelpers import RunningApp

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "keypoints" / "ochuman" / "000817.jpg"  # three people walking
ROUTE = "human-keypoint-detection"


def photo() -> Path:
    if not PHOTO.is_file():
        pytest.skip(f"needs the shared keypoint set ({PHOTO}; present in CI, absent in a user's fresh clone)")
    return PHOTO


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(tmp_path_factory.mktemp("keypoints-app")).start()
    yield running
    running.stop()


def post(app, body) -> requests.Response:
    if isinstance(body, str):
        return requests.post(f"{app.base_url}/{ROUTE}", data=body, headers={"Content-Type": "application/json"}, timeout=300)
    return requests.post(f"{app.base_url}/{ROUTE}", json=body, timeout=300)


def test_envelope_persons_and_drawn_image(app):
    image = base64.b64encode(photo().read_bytes()).decode()
    response = post(app, {"image": image, "detThreshold": None})
    body = response.json()
    assert response.status_code == 200 and body["errorCode"] == 0 and body["errorMsg"] == "Success" and body["logId"], body
    persons = body["result"]["persons"]
    assert len(persons) >= 2, persons
    for person in persons:
        assert set(person) == {"bbox", "kpts", "detScore", "kptScore"}
        x1, y1, x2, y2 = person["bbox"]
        assert 0 <= x1 < x2 <= 665 and 0 <= y1 < y2 <= 1000
        kpts = np.array(person["kpts"])
        assert kpts.shape == (17, 3)
        assert person["detScore"] >= 0.5  # the default detThreshold
        assert person["kptScore"] == pytest.approx(kpts[:, 2].mean(), abs=1e-3)
        assert (x1 - 30 <= kpts[:, 0]).all() and (kpts[:, 0] <= x2 + 30).all()  # joints lie on their person
    with Image.open(io.BytesIO(base64.b64decode(body["result"]["image"]))) as drawn:
        assert drawn.format == "JPEG" and drawn.size == (665, 1000)


def test_each_keypoint_request_is_counted_by_the_monitor(app):
    """The keypoint routes record their traffic like every other use case (unscored: no face quality)."""
    before = app.stats()
    image = base64.b64encode(photo().read_bytes()).decode()
    assert post(app, {"image": image}).status_code == 200
    after = app.stats()
    assert after["count"] == before["count"] + 1
    assert after["mean_quality"] == before["mean_quality"]  # an unscored row moves no quality number


def test_det_threshold_filters_people(app):
    image = base64.b64encode(photo().read_bytes()).decode()
    loose = post(app, {"image": image, "detThreshold": 0.05}).json()["result"]["persons"]
    strict = post(app, {"image": image, "detThreshold": 0.99}).json()["result"]["persons"]
    assert strict == [] and len(loose) >= 2
    assert all(person["detScore"] >= 0.05 for person in loose)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("{not json", 400, "not valid JSON"),
        ({"detThreshold": 0.5}, 422, "image"),
        ({"image": "%%%not-base64%%%"}, 400, "base64"),
        ({"image": "aGVsbG8="}, 400, "not an image"),
        ({"image": "aGVsbG8=", "detThreshold": 2}, 422, "detThreshold"),
        ({"image": "http://127.0.0.1:9/people.jpg"}, 400, "private"),
    ],
)
def test_bad_requests_get_their_status_in_the_envelope(app, body, status, message):
    response = post(app, body)
    payload = response.json()
    assert response.status_code == status == payload["errorCode"], payload
    assert message in payload["errorMsg"] and "Traceback" not in payload["errorMsg"]
    assert requests.get(f"{app.base_url}/health", timeout=10).status_code == 200


def frood(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.frood", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_cli_prints_json_and_draws_the_skeletons(tmp_path):
    drawn = tmp_path / "out.jpg"
    result = frood("keypoints", str(photo()), "--json", "--output-image", str(drawn))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert (payload["width"], payload["height"]) == (665, 1000) and len(payload["persons"]) >= 2
    assert all(len(person["kpts"]) == 17 for person in payload["persons"])
    with Image.open(drawn) as image:
        assert image.size == (665, 1000)
        original = np.asarray(Image.open(photo()).convert("RGB"), dtype=np.int16)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=np.int16) - original).mean() > 1  # something was drawn


def test_cli_refuses_a_file_that_is_not_an_image(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    result = frood("keypoints", str(text))
    assert result.returncode == 2 and "not an image" in result.stderr


def test_pose_tab_handler_returns_drawing_and_table(app):
    from gradio_client import Client, handle_file

    client = Client(app.base_url + "/", verbose=False)
    status, drawn, table = client.predict(handle_file(str(photo())), 0.25, api_name="/pose")
    assert "person(s) found" in status and "检测到" not in status  # one language: English without Accept-Language
    rows = table["data"]
    assert len(rows) >= 2 and table["headers"][:3] == ["#", "Person score", "Keypoint score"]  # words, not the API's names
    assert all(row[1] >= 0.25 for row in rows)
    assert Path(drawn).is_file()


def test_pose_tab_in_a_browser_in_chinese(app, tmp_path):
    """Chinese labels come from the tab's own strings, the result text is Chinese only; the drawn photo and
    the table appear."""
    from playwright.sync_api import expect, sync_playwright

    from tests.uidriver import CHROMIUM, launch, open_page

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required for the browser test (apt-get install chromium); .ci/run installs it")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_page(browser, app.base_url, "zh")
        page.get_by_role("tab", name="姿态").click()
        expect(page.get_by_role("button", name="检测关键点")).to_be_visible(timeout=30_000)
        page.locator("#image-pose input[type=file]").set_input_files(str(photo()))
        page.locator("#image-pose img").first.wait_for(timeout=30_000)
        page.locator("#pose-button").click()
        result = page.locator("#pose-result")
        expect(result).to_contain_text("检测到", timeout=120_000)
        expect(result).not_to_contain_text("found")
        expect(page.locator("#pose-drawn img")).to_be_visible(timeout=30_000)
        expect(page.locator("#pose-table")).to_contain_text("关键点 ≥ 0.3")
        page.screenshot(path=str(tmp_path / "pose.png"), full_page=True)
        browser.close()


def _extract(app, **flags) -> dict:
    data, params = {"model_name": "default"}, {}
    if "form" in flags:
        data["person_box"] = flags["form"]
    if "query" in flags:
        params["person_box"] = flags["query"]
    response = requests.post(
        f"{app.base_url}/extract", files={"image": ("walkers.jpg", photo().read_bytes(), "image/jpeg")}, data=data, params=params, timeout=300
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_extract_links_the_face_to_its_person_only_when_asked(app):
    """Three people walk side by side in the photo: the largest face must get the box of the person it
    belongs to (its centre inside, the box no wider than one person), and nothing changes by default."""
    plain = _extract(app)
    assert "person_box" not in plain and plain["faces_found"] >= 1  # FACE_PERSON_BOX is off by default
    linked = _extract(app, form="true")
    assert linked["feature"] == plain["feature"] and linked["bbox"] == plain["bbox"]
    x1, y1, x2, y2 = linked["person_box"]
    fx1, fy1, fx2, fy2 = linked["bbox"]
    assert x1 <= (fx1 + fx2) / 2 <= x2 and y1 <= (fy1 + fy2) / 2 <= y2
    assert y1 <= fy1 and y2 > fy2 + 3 * (fy2 - fy1)  # a whole person below the face, not a face-sized box
    assert (x2 - x1) < 0.5 * Image.open(photo()).width  # one of the three walkers, not the group
    assert _extract(app, query="true")["person_box"] == linked["person_box"]
    assert "person_box" not in _extract(app, form="false", query="true")  # the form field wins when both are given


def test_faces_are_matched_one_to_one_to_the_nearest_head():
    from engine.keypoints.engine import Person
    from service.keypoints import match_faces_to_persons

    def person(box, head_x, head_y, score=0.9):
        keypoints = np.zeros((17, 3), np.float32)
        keypoints[:5] = [head_x, head_y, 0.8]
        return Person(box, keypoints, score)

    front = person((100, 100, 300, 600), 150, 150)  # two overlapping people; heads at x 150 and 250
    behind = person((120, 90, 320, 600), 250, 140, score=0.6)
    faces = [[230, 120, 270, 160], [130, 130, 170, 170], [900, 900, 950, 950]]
    assert match_faces_to_persons(faces, [front, behind], kpt_threshold=0.3) == [behind, front, None]
