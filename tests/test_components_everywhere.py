"""The ISO/IEC 29794-5 components wherever a face's quality appears (issue 26): ``/verify``, the PaddleX infer
answer and ``frood embed`` carry each face's ``components`` only when asked, and then the very report ``/extract``
gives for the same photo and model (same measures, same values), against the real app and the real models."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from schemas.components import ComponentsJSON
from tests.apphelpers import RunningApp

ROOT = Path(__file__).resolve().parents[1]
PHOTO = "img3.jpg"  # one face, well lit: most measures are computable
OTHER = "img1.jpg"
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(tmp_path_factory.mktemp("components-app")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference(app, faces_dir) -> dict:
    """``/extract?components=true`` of PHOTO: the report every other place must repeat (and its feature)."""
    response = requests.post(f"{app.base_url}/extract", files={"image": (PHOTO, (faces_dir / PHOTO).read_bytes())}, data={"components": "true"}, timeout=180)
    assert response.status_code == 200, response.text
    return response.json()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def assert_same_report(report: dict, expected: dict) -> None:
    """The same measures with the same native values (within TOLERANCE), qualities, verdicts, units and words."""
    ComponentsJSON.model_validate(report)
    assert report["unified_quality"] == expected["unified_quality"]
    assert list(report["components"]) == list(expected["components"])
    for name, measure in expected["components"].items():
        got = report["components"][name]
        assert got["value"] == pytest.approx(measure["value"], abs=TOLERANCE), name
        assert {k: v for k, v in got.items() if k != "value"} == {k: v for k, v in measure.items() if k != "value"}, name


def without_components(payload: dict) -> dict:
    return {key: value for key, value in payload.items() if key != "components"}


def test_the_reference_report_is_a_real_one(reference):
    report = reference["components"]
    assert {"HeadPoseYaw", "HeadPoseRoll", "InterEyeDistance", "Sharpness"} <= set(report["components"])
    assert -90 < report["components"]["HeadPoseYaw"]["value"] < 90


# --- /verify ---------------------------------------------------------------------------------------------------


def verify(app, **kwargs) -> dict:
    response = requests.post(f"{app.base_url}/verify", timeout=180, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_verify_reports_components_only_when_asked(app, faces_dir, reference):
    sides = {"img1": b64(faces_dir / PHOTO), "img2": b64(faces_dir / OTHER)}
    plain = verify(app, json=sides)
    asked = verify(app, json={**sides, "components": True})
    assert "components" not in plain["img1"] and "components" not in plain["img2"]
    assert_same_report(asked["img1"]["components"], reference["components"])
    ComponentsJSON.model_validate(asked["img2"]["components"])
    assert asked["img2"]["components"]["components"]["HeadPoseYaw"]["value"] != reference["components"]["components"]["HeadPoseYaw"]["value"]
    for side in ("img1", "img2"):  # the flag adds the reports and changes nothing else
        assert without_components(asked[side]) == plain[side]
    assert {k: v for k, v in asked.items() if k not in ("img1", "img2", "latency_ms")} == {
        k: v for k, v in plain.items() if k not in ("img1", "img2", "latency_ms")
    }


def test_verify_flag_as_query_or_form_field_the_form_winning_as_on_extract(app, faces_dir, reference):
    files = {"img1": (PHOTO, (faces_dir / PHOTO).read_bytes()), "img2": (OTHER, (faces_dir / OTHER).read_bytes())}
    by_query = verify(app, files=files, params={"components": "true"})
    assert_same_report(by_query["img1"]["components"], reference["components"])
    form_says_no = verify(app, files=files, data={"components": "false"}, params={"components": "true"})
    assert "components" not in form_says_no["img1"] and "components" not in form_says_no["img2"]
    bad = requests.post(f"{app.base_url}/verify", files=files, data={"components": "maybe"}, timeout=180)
    assert bad.status_code == 422 and "components" in bad.json()["detail"]


def test_verify_an_embedding_side_has_no_face_to_report(app, faces_dir, reference):
    asked = verify(app, json={"img1": b64(faces_dir / PHOTO), "embedding2": reference["feature"]}, params={"components": "1"})
    assert_same_report(asked["img1"]["components"], reference["components"])
    assert asked["img2"]["input"] == "embedding" and asked["img2"]["components"] is None


# --- PaddleX /face-recognition-infer ---------------------------------------------------------------------------


def paddlex(app, route: str, payload: dict, **kwargs) -> dict:
    response = requests.post(f"{app.base_url}/{route}", json=payload, timeout=300, **kwargs)
    body = response.json()
    assert response.status_code == 200 and body["errorCode"] == 0, body
    return body["result"]


@pytest.fixture(scope="module")
def index_key(app, faces_dir) -> str:
    return paddlex(app, "face-recognition-index-build", {"imageLabelPairs": [{"image": b64(faces_dir / PHOTO), "label": "person"}]})["indexKey"]


def test_infer_faces_carry_components_only_when_asked(app, faces_dir, reference, index_key):
    request = {"image": b64(faces_dir / PHOTO), "indexKey": index_key}
    plain = paddlex(app, "face-recognition-infer", request)
    asked = paddlex(app, "face-recognition-infer", {**request, "components": True})
    assert plain["faces"] and all("components" not in face for face in plain["faces"])
    assert set(plain["faces"][0]) == {"bbox", "recResults", "score", "qualityScore", "topK"}  # PaddleX's face, plus ours
    assert_same_report(asked["faces"][0]["components"], reference["components"])
    assert [without_components(face) for face in asked["faces"]] == plain["faces"] and asked["image"] == plain["image"]


def test_infer_flag_as_query_reports_every_face_of_a_group_photo(app, faces_dir, index_key):
    request = {"image": b64(faces_dir / "couple.jpg"), "indexKey": index_key}
    by_query = paddlex(app, "face-recognition-infer", request, params={"components": "true"})
    assert len(by_query["faces"]) >= 2
    for face in by_query["faces"]:
        ComponentsJSON.model_validate(face["components"])
        assert face["components"]["components"]["SingleFacePresent"]["quality"] < 100  # each report sees the other faces
    body_says_no = paddlex(app, "face-recognition-infer", {**request, "components": False}, params={"components": "true"})
    assert all("components" not in face for face in body_says_no["faces"])


# --- /galleries/{name}/identify ---------------------------------------------------------------------------------


def test_identify_by_name_carries_components_only_when_asked_as_json_form_or_query(app, faces_dir, reference):
    def identify(**kwargs) -> dict:
        response = requests.post(f"{app.base_url}/galleries/named-components/identify", timeout=300, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    created = requests.post(f"{app.base_url}/galleries", json={"name": "named-components"}, timeout=60)
    assert created.status_code == 200, created.text
    enrolled = requests.post(
        f"{app.base_url}/galleries/named-components/identities/person/photos", json={"images": [b64(faces_dir / PHOTO)]}, timeout=300
    )
    assert enrolled.status_code == 200, enrolled.text
    plain = identify(json={"image": b64(faces_dir / PHOTO)})
    asked = identify(json={"image": b64(faces_dir / PHOTO), "components": True})
    assert plain["faces"] and all("components" not in face for face in plain["faces"])
    assert_same_report(asked["faces"][0]["components"], reference["components"])
    assert [without_components(face) for face in asked["faces"]] == plain["faces"]
    by_form = identify(files={"image": (PHOTO, (faces_dir / PHOTO).read_bytes())}, data={"components": "true"})
    assert_same_report(by_form["faces"][0]["components"], reference["components"])
    by_query = identify(json={"image": b64(faces_dir / PHOTO)}, params={"components": "true"})
    assert_same_report(by_query["faces"][0]["components"], reference["components"])
    body_says_no = identify(json={"image": b64(faces_dir / PHOTO), "components": False}, params={"components": "true"})
    assert all("components" not in face for face in body_says_no["faces"])
    embedding = identify(json={"embedding": reference["feature"], "components": True})
    assert embedding["faces"][0]["components"] is None and embedding["faces"][0]["label"] == "person"  # no face to report
    bad = requests.post(f"{app.base_url}/galleries/named-components/identify", files={"image": (PHOTO, b"x")}, data={"components": "maybe"}, timeout=60)
    assert bad.status_code == 422 and "components" in bad.json()["detail"]


# --- frood embed -----------------------------------------------------------------------------------------------


def embed(tmp_path: Path, photo: Path, *flags: str) -> dict:
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{photo}\n")
    output = tmp_path / f"out{''.join(flags)}.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "cli.frood", "embed", "--input", str(listing), "--output", str(output), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(text) for text in output.read_text().splitlines()]
    return line


def test_embed_lines_carry_components_only_with_the_flag(faces_dir, reference, tmp_path):
    plain = embed(tmp_path, faces_dir / PHOTO)
    asked = embed(tmp_path, faces_dir / PHOTO, "--components")
    assert plain["faces"] and all("components" not in face for face in plain["faces"])
    assert_same_report(asked["faces"][0]["components"], reference["components"])
    assert [without_components(face) for face in asked["faces"]] == plain["faces"] and asked["error"] is None
