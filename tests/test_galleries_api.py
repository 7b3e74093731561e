"""Galleries and identities by name over real HTTP (``/galleries``), real photos, the default FAISS + SQLite setup.

One app process for the module; each test makes its own gallery. Bad input is checked route by route: an unknown
name is 404, a duplicate name 409, a wrong embedding dimension 422, a threshold outside [-1, 1] 422.
"""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from tests.apphelpers import RunningApp

FULL = {"X-API-Key": "full-key"}
READER = {"X-API-Key": "reader-key"}
API_KEYS = json.dumps({
    "full-key": {"scopes": ["admin"], "rpm": 100000},
    "reader-key": {"scopes": ["gallery:read"], "rpm": 100000},
})


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    running = RunningApp(tmp_path_factory.mktemp("galleries-app"), API_KEYS=API_KEYS).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def photos(faces_dir) -> dict[str, list[bytes]]:
    groups: dict[str, list[str]] = {}
    with open(faces_dir / "identities.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            groups.setdefault(row["identity"], []).append(row["file"])
    return {identity: [(faces_dir / name).read_bytes() for name in sorted(files)] for identity, files in groups.items()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def call(app, method: str, path: str, headers=FULL, **kwargs) -> requests.Response:
    return requests.request(method, app.base_url + path, headers=headers, timeout=300, **kwargs)


def ok(response: requests.Response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    return response.json()


def error(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert words in response.json()["detail"], response.json()


def test_create_list_rename_delete_a_gallery(app):
    created = ok(call(app, "POST", "/galleries", json={"name": "staff", "indexType": "HNSW32", "metric": "L2"}))
    assert created["name"] == "staff" and created["size"] == 0 and created["identities"] == 0
    assert (created["indexType"], created["metric"], created["backend"], created["featureDim"]) == ("HNSW32", "L2", "faiss", 512)
    error(call(app, "POST", "/galleries", json={"name": "staff"}), 409, "already exists")
    error(call(app, "POST", "/galleries", json={"name": "no spaces"}), 400, "not valid")
    assert call(app, "POST", "/galleries", json={"name": "x", "indexType": "Annoy"}).status_code == 422
    listed = {row["name"]: row for row in ok(call(app, "GET", "/galleries"))["galleries"]}
    assert listed["staff"]["indexKey"] == created["indexKey"] and listed["staff"]["model"] == created["model"]

    ok(call(app, "POST", "/galleries", json={"name": "other"}))
    renamed = ok(call(app, "PATCH", "/galleries/staff", json={"newName": "team"}))
    assert renamed["name"] == "team" and renamed["indexKey"] == created["indexKey"]
    error(call(app, "PATCH", "/galleries/team", json={"newName": "other"}), 409, "already exists")
    error(call(app, "PATCH", "/galleries/staff", json={"newName": "x"}), 404, "no gallery named")
    assert ok(call(app, "DELETE", "/galleries/team")) == {"name": "team", "indexKey": created["indexKey"], "deleted": True}
    error(call(app, "DELETE", "/galleries/team"), 404, "no gallery named")
    assert "team" not in {row["name"] for row in ok(call(app, "GET", "/galleries"))["galleries"]}
    error(call(app, "GET", "/galleries/team/identities"), 404, "no gallery named")
    # the deleted gallery's key is gone from the PaddleX routes too
    gone = call(app, "POST", "/face-recognition-infer", json={"image": b64(noise_png()), "indexKey": created["indexKey"]})
    assert gone.status_code == 404


def test_photos_identities_and_identify(app, photos):
    ok(call(app, "POST", "/galleries", json={"name": "people"}))
    jolie, katy = photos["angelina_jolie"], photos["katy_perry"]
    added = ok(call(app, "POST", "/galleries/people/identities/angelina_jolie/photos", json={"images": [b64(jolie[0]), b64(jolie[1]), b64(noise_png())]}))
    assert len(added["added"]) == 2 and added["photos"] == 2 and added["label"] == "angelina_jolie"
    assert [item["image"] for item in added["skipped"]] == ["images[2]"] and added["skipped"][0]["reason"]
    files = [("files", ("k0.jpg", katy[0], "image/jpeg")), ("files", ("k1.jpg", katy[1], "image/jpeg"))]
    multipart = ok(call(app, "POST", "/galleries/people/identities/Katy Perry/photos", files=files))
    assert len(multipart["added"]) == 2 and multipart["skipped"] == [] and multipart["label"] == "Katy Perry"

    page1 = ok(call(app, "GET", "/galleries/people/identities", params={"page": 1, "pageSize": 1}))
    page2 = ok(call(app, "GET", "/galleries/people/identities", params={"page": 2, "pageSize": 1}))
    assert page1["total"] == page2["total"] == 2
    assert page1["identities"] == [{"label": "Katy Perry", "photos": 2, "ids": multipart["added"]}]
    assert page2["identities"] == [{"label": "angelina_jolie", "photos": 2, "ids": added["added"]}]
    assert ok(call(app, "GET", "/galleries/people/identities", params={"page": 3}))["identities"] == []
    assert call(app, "GET", "/galleries/people/identities", params={"pageSize": 0}).status_code == 422
    summary = next(row for row in ok(call(app, "GET", "/galleries"))["galleries"] if row["name"] == "people")
    assert (summary["size"], summary["identities"]) == (4, 2)

    # identify: an unseen photo of each, JSON and multipart; topK bounds the list, threshold decides "unknown"
    found = ok(call(app, "POST", "/galleries/people/identify", json={"image": b64(jolie[-1]), "topK": 3}))
    face = found["faces"][0]
    assert face["label"] == "angelina_jolie" and len(face["matches"]) == 3 and face["matches"][0]["id"] in added["added"]
    assert found["topK"] == 3 and -1 <= found["threshold"] <= 1 and face["bbox"] and face["quality"] > 0
    by_file = ok(call(app, "POST", "/galleries/people/identify", files={"image": ("k.jpg", katy[-1])}, data={"topK": "1", "threshold": "0.2"}))
    assert by_file["faces"][0]["label"] == "Katy Perry" and len(by_file["faces"][0]["matches"]) == 1 and by_file["threshold"] == 0.2
    strict = ok(call(app, "POST", "/galleries/people/identify", json={"image": b64(jolie[-1]), "threshold": 1.0}))
    assert strict["faces"][0]["label"] == "unknown" and strict["faces"][0]["matches"]
    for bad in ({"topK": 0}, {"topK": 101}, {"threshold": 1.5}, {"threshold": -1.01}):
        assert call(app, "POST", "/galleries/people/identify", json={"image": b64(jolie[-1]), **bad}).status_code == 422, bad
    assert call(app, "POST", "/galleries/people/identify", files={"image": ("k.jpg", katy[-1])}, data={"threshold": "2"}).status_code == 422
    error(call(app, "POST", "/galleries/nobody/identify", json={"image": b64(jolie[-1])}), 404, "no gallery named")
    error(call(app, "POST", "/galleries/people/identify", json={}), 422, "exactly one of image and embedding")

    # embeddings: the caller's own feature (from /extract) identifies; a wrong dimension is 422 on both routes
    feature = ok(call(app, "POST", "/extract", files={"image": ("j.jpg", jolie[-1])}))["feature"]
    by_embedding = ok(call(app, "POST", "/galleries/people/identify", json={"embedding": feature, "topK": 2}))
    assert by_embedding["faces"][0]["label"] == "angelina_jolie" and by_embedding["faces"][0]["bbox"] is None
    assert by_embedding["faces"][0]["score"] == pytest.approx(face["score"], abs=2e-3)
    error(call(app, "POST", "/galleries/people/identify", json={"embedding": feature[:100]}), 422, "list of 512 numbers")
    error(call(app, "POST", "/galleries/people/identities/x/photos", json={"embeddings": [[0.1] * 128]}), 422, "list of 512 numbers")
    enrolled = ok(call(app, "POST", "/galleries/people/identities/vector only/photos", json={"embeddings": [feature]}))
    assert len(enrolled["added"]) == 1 and enrolled["photos"] == 1

    # rename, remove one photo, remove an identity
    renamed = ok(call(app, "PATCH", "/galleries/people/identities/angelina_jolie", json={"newLabel": "Angelina Jolie"}))
    assert renamed == {"gallery": "people", "label": "Angelina Jolie", "photos": 2, "ids": added["added"]}
    error(call(app, "PATCH", "/galleries/people/identities/Angelina Jolie", json={"newLabel": "Katy Perry"}), 409, "already exists")
    error(call(app, "PATCH", "/galleries/people/identities/nobody", json={"newLabel": "x"}), 404, "no identity")
    error(call(app, "PATCH", "/galleries/nobody/identities/x", json={"newLabel": "y"}), 404, "no gallery named")
    removed = ok(call(app, "DELETE", f"/galleries/people/photos/{added['added'][0]}"))
    assert removed == {"gallery": "people", "label": "Angelina Jolie", "removed": [added["added"][0]]}
    error(call(app, "DELETE", f"/galleries/people/photos/{added['added'][0]}"), 404, "no photo")
    gone = ok(call(app, "DELETE", "/galleries/people/identities/vector only"))
    assert gone["removed"] == enrolled["added"]
    error(call(app, "DELETE", "/galleries/people/identities/vector only"), 404, "no identity")
    relabelled = ok(call(app, "POST", "/galleries/people/identify", json={"image": b64(jolie[-1]), "topK": 1}))
    assert relabelled["faces"][0]["label"] == "Angelina Jolie"  # the enrolled embedding was this very photo: gone now
    labels = {row["label"]: row["photos"] for row in ok(call(app, "GET", "/galleries/people/identities"))["identities"]}
    assert labels == {"Angelina Jolie": 1, "Katy Perry": 2}
    error(call(app, "POST", "/galleries/nobody/identities/x/photos", json={"images": [b64(jolie[0])]}), 404, "no gallery named")
    error(call(app, "POST", "/galleries/people/identities/x/photos", json={}), 422, "at least one image")


def test_a_retried_request_id_adds_once_and_another_body_with_it_is_409(app, photos):
    ok(call(app, "POST", "/galleries", json={"name": "retries"}))
    body = {"images": [b64(photos["matt_damon"][0])], "requestId": "enrol-1"}
    first = ok(call(app, "POST", "/galleries/retries/identities/matt/photos", json=body))
    again = ok(call(app, "POST", "/galleries/retries/identities/matt/photos", json=body))
    assert again["replayed"] is True and again["added"] == first["added"] and again["photos"] == 1
    other = {"images": [b64(photos["matt_damon"][1])], "requestId": "enrol-1"}
    error(call(app, "POST", "/galleries/retries/identities/matt/photos", json=other), 409, "already used for a different request")
    assert ok(call(app, "GET", "/galleries/retries/identities"))["identities"][0]["photos"] == 1


def test_paddlex_galleries_are_listed_by_key_and_infer_takes_top_k_and_threshold(app, photos):
    pairs = [{"image": b64(photos["george_clooney"][0]), "label": "george"}, {"image": b64(photos["elon_musk"][0]), "label": "elon"}]
    built = call(app, "POST", "/face-recognition-index-build", json={"imageLabelPairs": pairs}).json()["result"]
    key = built["indexKey"]
    listed = {row["name"]: row for row in ok(call(app, "GET", "/galleries"))["galleries"]}
    assert listed[key]["indexKey"] == key and listed[key]["size"] == 2  # named by its key until renamed
    ok(call(app, "PATCH", f"/galleries/{key}", json={"newName": "paddlex"}))
    probe = b64(photos["george_clooney"][-1])
    one = call(app, "POST", "/face-recognition-infer", json={"image": probe, "indexKey": key, "topK": 1}).json()["result"]
    assert one["faces"][0]["recResults"][0]["label"] == "george" and len(one["faces"][0]["topK"]) == 1
    both = call(app, "POST", "/face-recognition-infer", json={"image": probe, "indexKey": key}).json()["result"]
    assert len(both["faces"][0]["topK"]) == 2  # the default is unchanged
    strict = call(app, "POST", "/face-recognition-infer", json={"image": probe, "indexKey": key, "threshold": 1.0}).json()["result"]
    assert strict["faces"][0]["recResults"] == []  # unknown
    bad = call(app, "POST", "/face-recognition-infer", json={"image": probe, "indexKey": key, "threshold": 1.5})
    assert bad.status_code == 422 and bad.json()["errorCode"] == 422
    assert call(app, "POST", "/face-recognition-infer", json={"image": probe, "indexKey": key, "topK": 0}).status_code == 422
    found = ok(call(app, "POST", "/galleries/paddlex/identify", json={"image": probe, "topK": 1}))
    assert found["faces"][0]["label"] == "george"


def test_scopes_read_key_reads_and_identifies_but_cannot_change(app, photos):
    ok(call(app, "POST", "/galleries", json={"name": "scoped"}))
    ok(call(app, "POST", "/galleries/scoped/identities/m/photos", json={"images": [b64(photos["mark_zuckerberg"][0])]}))
    assert ok(call(app, "GET", "/galleries", headers=READER))["galleries"]
    assert ok(call(app, "GET", "/galleries/scoped/identities", headers=READER))["total"] == 1
    found = ok(call(app, "POST", "/galleries/scoped/identify", headers=READER, json={"image": b64(photos["mark_zuckerberg"][-1])}))
    assert found["faces"][0]["label"] == "m"
    for method, path, body in (
        ("POST", "/galleries", {"name": "nope"}),
        ("PATCH", "/galleries/scoped", {"newName": "nope"}),
        ("DELETE", "/galleries/scoped", None),
        ("POST", "/galleries/scoped/identities/m/photos", {"images": [b64(photos["mark_zuckerberg"][1])]}),
        ("PATCH", "/galleries/scoped/identities/m", {"newLabel": "n"}),
        ("DELETE", "/galleries/scoped/identities/m", None),
        ("DELETE", "/galleries/scoped/photos/0", None),
    ):
        response = call(app, method, path, headers=READER, json=body)
        assert response.status_code == 403 and "gallery:write" in response.json()["detail"], (method, path, response.text)
        assert call(app, method, path, headers={}, json=body).status_code == 401
    assert ok(call(app, "GET", "/galleries/scoped/identities"))["identities"][0]["photos"] == 1  # nothing changed


def test_frood_index_has_the_same_verbs_by_name(tmp_path, faces_dir):
    """``frood index`` on the named galleries of a DATA_DIR (as a server with that DATA_DIR has them): same JSON."""
    import os
    import subprocess
    import sys

    from tests.apphelpers import ROOT

    env = {**os.environ, "DATA_DIR": str(tmp_path), "LOG_DIR": str(tmp_path / "logs")}

    def frood(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.frood", "index", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    with open(faces_dir / "identities.csv", newline="") as handle:
        files = sorted(row["file"] for row in csv.DictReader(handle) if row["identity"] == "jennifer_aniston")
    assert frood("create", "--name", "desk").returncode == 0
    enrolled = frood("enrol", "--name", "desk", "--label", "jen", "--images", *(str(faces_dir / name) for name in files[:2]))
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["photos"] == 2
    found = json.loads(frood("identify", "--name", "desk", "--top-k", "1", "--images", str(faces_dir / files[-1])).stdout)
    assert found["faces"][0]["label"] == "jen" and len(found["faces"][0]["matches"]) == 1
    renamed = frood("rename-identity", "--name", "desk", "--label", "jen", "--new-label", "Jennifer")
    assert json.loads(renamed.stdout)["label"] == "Jennifer"
    missing = frood("identities", "--name", "nope")
    assert missing.returncode == 2 and "no gallery named 'nope'" in missing.stderr
    listed = json.loads(frood("galleries").stdout)["galleries"]
    assert [(row["name"], row["size"], row["identities"]) for row in listed] == [("desk", 2, 1)]
