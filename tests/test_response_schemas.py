"""Every face route's JSON over real HTTP validates against its response model in ``schemas``, and
FastAPI's ``/openapi.json`` documents those models (so a client generator sees the real shapes)."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from PIL import Image

from schemas import EmbedLineJSON, FaceJSON
from schemas import api as schemas
from tests.apphelpers import RunningApp

KEY = {"X-API-Key": "schema-key"}


@pytest.fixture(scope="module")
def app(tmp_path_factory, faces_dir):
    data_dir = tmp_path_factory.mktemp("schema-app")
    running = RunningApp(data_dir, API_KEYS=json.dumps({"schema-key": {"models": [], "rpm": 10000}})).start()
    yield running
    running.stop()


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def post_json(app, route: str, payload: dict) -> dict:
    response = requests.post(f"{app.base_url}/{route}", json=payload, headers=KEY, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def test_paddlex_routes_answer_in_their_documented_models(app, faces_dir):
    pairs = [{"image": b64(faces_dir / "img1.jpg"), "label": "a"}, {"image": b64(faces_dir / "img3.jpg"), "label": "b"}]
    built = schemas.Envelope[schemas.IndexBuildJSON].model_validate(post_json(app, "face-recognition-index-build", {"imageLabelPairs": pairs}))
    assert built.errorCode == 0 and built.result.idMap and built.result.replayed is None
    key = built.result.indexKey

    added = post_json(app, "face-recognition-index-add", {"imageLabelPairs": pairs[:1], "indexKey": key, "requestId": "add-1"})
    schemas.Envelope[schemas.IndexAddJSON].model_validate(added)
    again = post_json(app, "face-recognition-index-add", {"imageLabelPairs": pairs[:1], "indexKey": key, "requestId": "add-1"})
    assert schemas.Envelope[schemas.IndexAddJSON].model_validate(again).result.replayed is True

    inferred = schemas.Envelope[schemas.InferJSON].model_validate(
        post_json(app, "face-recognition-infer", {"image": b64(faces_dir / "img1.jpg"), "indexKey": key})
    )
    assert inferred.result.faces and inferred.result.faces[0].recResults[0].label == "a"

    removed = post_json(app, "face-recognition-index-remove", {"ids": [int(next(iter(built.result.idMap)))], "indexKey": key})
    schemas.Envelope[schemas.IndexRemoveJSON].model_validate(removed)

    missing = requests.post(f"{app.base_url}/face-recognition-infer", json={"image": b64(faces_dir / "img1.jpg"), "indexKey": "0" * 32},
                            headers=KEY, timeout=60)
    assert missing.status_code == 404
    assert schemas.ErrorEnvelope.model_validate(missing.json()).errorCode == 404


def test_extract_and_models_answer_in_their_documented_models(app, faces_dir, tmp_path):
    with open(faces_dir / "img1.jpg", "rb") as handle:
        face = requests.post(f"{app.base_url}/extract", files={"image": handle}, headers=KEY, timeout=120)
    parsed = schemas.ExtractJSON.model_validate(face.json())
    assert len(parsed.feature) == 512 and parsed.faces_found >= 1

    assert "person_box" not in face.json()  # written only when asked for (issue 10)
    with open(faces_dir / "img1.jpg", "rb") as handle:
        linked = requests.post(f"{app.base_url}/extract", files={"image": handle}, data={"person_box": "true"}, headers=KEY, timeout=300)
    assert "person_box" in linked.json() and schemas.ExtractJSON.model_validate(linked.json()).feature == parsed.feature

    blank = tmp_path / "blank.png"
    Image.new("RGB", (160, 160), (30, 30, 30)).save(blank)
    with open(blank, "rb") as handle:
        empty = requests.post(f"{app.base_url}/extract", files={"image": handle}, headers=KEY, timeout=60)
    assert schemas.ExtractNoFaceJSON.model_validate(empty.json()).faces_found == 0

    bad = requests.post(f"{app.base_url}/extract", files={"image": ("x.txt", b"not an image")}, headers=KEY, timeout=60)
    assert bad.status_code == 400 and schemas.DetailJSON.model_validate(bad.json()).detail

    models = schemas.ModelsJSON.model_validate(requests.get(f"{app.base_url}/models", timeout=30).json())
    assert any(model.default for model in models.models)


def test_openapi_documents_the_response_models(app):
    spec = requests.get(f"{app.base_url}/openapi.json", timeout=30).json()
    components = spec["components"]["schemas"]

    def refs(node) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) else set()
            return found.union(*(refs(value) for value in node.values()))
        return set().union(*(refs(value) for value in node)) if isinstance(node, list) else set()

    def documented(path: str) -> set[str]:
        """Names of every schema a path's 200 answer refers to, through generics and unions."""
        found = refs(spec["paths"][path]["get" if path == "/models" else "post"]["responses"]["200"])
        while new := set().union(*(refs(components[name]) for name in found)) - found:
            found |= new
        return found

    assert {"ExtractJSON", "ExtractNoFaceJSON", "Reason"} <= documented("/extract")
    assert "ModelsJSON" in documented("/models")
    assert {"InferJSON", "InferFaceJSON", "LabelScoreJSON"} <= documented("/face-recognition-infer")
    assert {"IndexBuildJSON", "SkippedJSON"} <= documented("/face-recognition-index-build")
    assert "IndexAddJSON" in documented("/face-recognition-index-add")
    assert "IndexRemoveJSON" in documented("/face-recognition-index-remove")
    infer_errors = spec["paths"]["/face-recognition-infer"]["post"]["responses"]
    assert "ErrorEnvelope" in json.dumps(infer_errors["404"])
    # the face models of the CLI, the UI's JSON download and ``frood embed`` are exported from the same package
    assert {"feature", "quality_score", "bbox"} <= set(FaceJSON.model_fields) and "faces" in EmbedLineJSON.model_fields
