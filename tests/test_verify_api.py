"""``POST /verify`` as a deepface / CompreFace user would call it (issue 24), against the real app.

Pairs come from the faces/ identities the quality calibration held out (split ``faces``): the match
threshold and the quality score were never fitted on them.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict

import numpy as np
import pytest
import requests
from PIL import Image

from tests.apphelpers import RunningApp


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(tmp_path_factory.mktemp("verify-app")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pairs(faces_dir, held_out_files, identities):
    """(same-person pair, different-person pair) of held-out photos whose faces score above trust."""
    by_person = defaultdict(list)
    for file in held_out_files:
        by_person[identities[file]].append(file)
    people = [files for files in by_person.values() if len(files) >= 2]
    assert len(people) >= 2, "the held-out split needs two people with two photos each"
    same = (people[0][0], people[0][1])
    different = (people[0][0], people[1][0])
    return same, different


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def verify(app, payload=None, **kwargs) -> requests.Response:
    return requests.post(f"{app.base_url}/verify", json=payload, timeout=180, **kwargs)


def test_two_images_of_one_held_out_person_verify_and_of_two_people_do_not(app, faces_dir, pairs):
    (same_a, same_b), (diff_a, diff_b) = pairs
    same = verify(app, {"img1": b64(faces_dir / same_a), "img2": b64(faces_dir / same_b)}).json()
    different = verify(app, {"img1": b64(faces_dir / diff_a), "img2": b64(faces_dir / diff_b)}).json()
    assert same["similarity"] > different["similarity"]
    assert same["similarity"] >= same["threshold"] > different["similarity"]
    assert same["verified"] is (same["decision"] == "match") and different["verified"] is not True
    assert same["distance"] == pytest.approx(1 - same["similarity"], abs=1e-3)
    assert same["img1"]["input"] == "image" and len(same["img1"]["bbox"]) == 4 and same["img1"]["quality_score"] is not None
    assert same["model"] == "faceplugin-r512" and same["message"]["en"] and same["message"]["zh"]


def test_multipart_gives_the_same_answer_as_json(app, faces_dir, pairs):
    (first, second), _ = pairs
    as_json = verify(app, {"img1": b64(faces_dir / first), "img2": b64(faces_dir / second)}).json()
    files = {"img1": (first, (faces_dir / first).read_bytes()), "img2": (second, (faces_dir / second).read_bytes())}
    as_form = requests.post(f"{app.base_url}/verify", files=files, timeout=180).json()
    assert as_form["similarity"] == as_json["similarity"] and as_form["decision"] == as_json["decision"]


def test_an_image_against_an_embedding_and_two_embeddings(app, faces_dir, pairs):
    (first, second), _ = pairs
    extracted = requests.post(f"{app.base_url}/extract", files={"image": (second, (faces_dir / second).read_bytes())}, timeout=180).json()
    embedding = extracted["feature"]
    mixed = verify(app, {"img1": b64(faces_dir / first), "embedding2": embedding}).json()
    images = verify(app, {"img1": b64(faces_dir / first), "img2": b64(faces_dir / second)}).json()
    assert mixed["similarity"] == pytest.approx(images["similarity"], abs=1e-3)
    assert mixed["img2"] == {"input": "embedding", "bbox": None, "quality_score": None, "reasons": [], "faces_found": None}
    other = np.roll(np.asarray(embedding), 7)
    both = verify(app, {"embedding1": embedding, "embedding2": other.tolist()}).json()
    expected = float(np.dot(embedding, other) / np.linalg.norm(embedding) / np.linalg.norm(other))
    assert both["similarity"] == pytest.approx(expected, abs=1e-3)


def test_a_per_call_threshold_changes_the_verdict(app, faces_dir, pairs):
    (first, second), _ = pairs
    default = verify(app, {"img1": b64(faces_dir / first), "img2": b64(faces_dir / second)}).json()
    strict = verify(app, {"img1": b64(faces_dir / first), "img2": b64(faces_dir / second), "threshold": 0.999}).json()
    assert strict["threshold"] == 0.999 and strict["similarity"] == default["similarity"]
    assert strict["verified"] is not True and strict["decision"] != "match"


def test_an_image_without_a_face_is_not_a_verdict(app, faces_dir, pairs):
    (first, _), _ = pairs
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, format="PNG")
    answer = verify(app, {"img1": b64(faces_dir / first), "img2": base64.b64encode(blank.getvalue()).decode()}).json()
    assert answer["verified"] is None and answer["decision"] == "retake_b" and answer["similarity"] is None
    assert [reason["code"] for reason in answer["img2"]["reasons"]] == ["no_face"] and answer["img2"]["faces_found"] == 0


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"embedding1": [0.1] * 128, "embedding2": [0.1] * 512}, 422),  # wrong dimension
        ({"embedding1": [0.1] * 512, "embedding2": [0.1] * 512, "threshold": 1.5}, 422),
        ({"embedding1": [0.1] * 512, "embedding2": [0.1] * 512, "threshold": -1.01}, 422),
        ({"embedding1": [0.0] * 512, "embedding2": [0.1] * 512}, 422),  # no direction
        ({"img1": "aGk=", "embedding1": [0.1] * 512, "embedding2": [0.1] * 512}, 422),  # two first sides
        ({"embedding2": [0.1] * 512}, 422),  # no first side
        ({"embedding1": [0.1] * 512, "embedding2": [0.1] * 512, "model_name": "nope"}, 400),
        ({"embedding1": [0.1] * 512, "embedding2": [0.1] * 512, "colour": "red"}, 422),
        ({"img1": "not base64!", "embedding2": [0.1] * 512}, 400),
    ],
)
def test_bad_requests_are_told_what_to_change(app, payload, status):
    answer = verify(app, payload)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_bad_json_is_400_and_a_missing_file_is_422(app, faces_dir):
    assert requests.post(f"{app.base_url}/verify", data=b"{nope", headers={"Content-Type": "application/json"}, timeout=30).status_code == 400
    one = requests.post(f"{app.base_url}/verify", files={"img1": ("a.jpg", (faces_dir / "img1.jpg").read_bytes())}, timeout=30)
    assert one.status_code == 422 and "img2" in one.json()["detail"]
