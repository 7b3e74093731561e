"""``/extract`` as deepface's ``represent`` users expect it (issue 24): every face on request, one no-face shape,
and the ISO/IEC 29794-5 components on request (issue 26)."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from schemas.api import ExtractJSON, ExtractNoFaceJSON
from tests.apphelpers import RunningApp


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(tmp_path_factory.mktemp("extract-app")).start()
    yield running
    running.stop()


def extract(app, path_or_bytes, name="photo.jpg", **fields) -> requests.Response:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return requests.post(f"{app.base_url}/extract", files={"image": (name, data)}, data={key: str(value).lower() for key, value in fields.items()}, timeout=180)


def test_every_face_of_a_group_photo_on_request(app, faces_dir):
    one = extract(app, faces_dir / "couple.jpg").json()
    every = extract(app, faces_dir / "couple.jpg", all_faces=True).json()
    ExtractJSON.model_validate(every)
    assert "faces" not in one and one["faces_found"] >= 2
    assert len(every["faces"]) == every["faces_found"] == one["faces_found"]
    assert every["faces"][0]["bbox"] == every["bbox"] and every["faces"][0]["feature"] == every["feature"]  # main face first
    assert all(len(face["feature"]) == 512 and len(face["bbox"]) == 4 and "quality_score" in face for face in every["faces"])
    assert len({tuple(face["bbox"]) for face in every["faces"]}) == len(every["faces"])
    assert list(every)[:2] == ["model_name", "quality_score"]  # the quality before 512 numbers


def test_one_no_face_answer_whatever_was_asked(app):
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, format="PNG")
    plain = extract(app, blank.getvalue(), "blank.png").json()
    every = extract(app, blank.getvalue(), "blank.png", all_faces=True, components=True).json()
    ExtractNoFaceJSON.model_validate(plain)
    assert plain["feature"] == [] and plain["faces_found"] == 0 and plain["bbox"] is None
    assert [reason["code"] for reason in plain["reasons"]] == ["no_face"] and plain["latency_ms"] > 0
    assert every["faces"] == [] and {key: value for key, value in every.items() if key not in ("faces", "latency_ms")} == {
        key: value for key, value in plain.items() if key != "latency_ms"
    }


def test_components_on_request_for_the_main_face_or_every_face(app, faces_dir):
    main = extract(app, faces_dir / "img3.jpg", components=True).json()
    report = main["components"]
    assert 0 <= report["unified_quality"] <= 100 and report["unified_quality"] == round(100 * main["quality_score"])
    assert {"HeadPoseYaw", "InterEyeDistance", "UnderExposurePrevention", "Sharpness"} <= set(report["components"])
    yaw = report["components"]["HeadPoseYaw"]
    assert yaw["unit"] and 0 <= yaw["quality"] <= 100 and yaw["en"] and yaw["zh"]
    group = extract(app, faces_dir / "couple.jpg", components=True, all_faces=True).json()
    assert all(face["components"]["components"] for face in group["faces"])
    assert "components" not in extract(app, faces_dir / "img3.jpg").json()  # not paid for unless asked
