"""The converted MoveNet graphs against their original runtime: TensorFlow.js itself (tfjs-core + converter +
the pure-JS CPU backend, installed by `make setup` into build/tfjs-parity), on a real photo.

Parity here means the same output tensor (person rows / keypoint rows) to 1e-4, for the three graphs we ship
(MultiPose, Thunder, and the CenterNet person detector).
Also checked: the weights' integrity guard and that a batch through the shared trunk equals one by one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.keypoints.weights import FILE_SHA256, load_graph, weights_dir
from engine.weights import WeightsFetchError
from settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
TFJS_MODULES = ROOT / "build" / "tfjs-parity" / "node_modules"
RUNNER = ROOT / "engine" / "keypoints" / "parity" / "run_tfjs.js"
PHOTO = ROOT.parent / "shared" / "data" / "keypoints" / "ochuman" / "000817.jpg"


def _photo(size: int) -> np.ndarray:
    if not PHOTO.is_file():
        pytest.skip(f"needs the shared keypoint set ({PHOTO}; present in CI, absent in a user's fresh clone)")
    return np.asarray(Image.open(PHOTO).convert("RGB").resize((size, size), Image.BILINEAR)).astype(np.int32)


def _tfjs(graph: str, pixels: np.ndarray, tmp_path: Path, dtype: str = "int32", output: str = "") -> np.ndarray:
    if shutil.which("node") is None or not (TFJS_MODULES / "@tensorflow" / "tfjs-converter").is_dir():
        pytest.skip("needs node and the TF.js reference runtime (`make setup` installs it into build/tfjs-parity)")
    raw = tmp_path / "input.bin"
    pixels.astype(np.int32 if dtype == "int32" else np.float32).tofile(raw)
    model_json = weights_dir(get_settings().models_dir) / f"{graph}.json"
    done = subprocess.run(
        ["node", str(RUNNER), str(model_json), str(raw), str(pixels.shape[0]), str(pixels.shape[1]), dtype] + ([output] if output else []),
        capture_output=True, text=True, timeout=300, env={**os.environ, "NODE_PATH": str(TFJS_MODULES)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reply = json.loads(done.stdout)
    return np.array(reply["data"], dtype=np.float32).reshape(reply["shape"])


@pytest.mark.parametrize("graph", ["movenet-multipose", "movenet-thunder"])
def test_converted_graph_matches_tfjs(graph, tmp_path):
    pixels = _photo(256)
    reference = _tfjs(graph, pixels, tmp_path)
    module = load_graph(get_settings().models_dir, graph)
    with torch.inference_mode():
        ours = module(torch.from_numpy(pixels)[None]).numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4, f"max |difference| {np.abs(ours - reference).max():.2e}"
    if graph == "movenet-multipose":  # and the photo's three people are really there (person score column)
        assert (reference[0, :, 55] > 0.3).sum() >= 2


def test_converted_person_detector_matches_tfjs(tmp_path):
    """CenterNet (the person detector): float 0–255 input at its fixed 512 × 512, as Human feeds it. The
    class heatmaps must agree to 1e-4, and the decoded detections (top 100 by score) row by row where the
    score is clear of ties (≥ 0.1): box corners to 1e-2 pixel, score and class exactly enough."""
    pixels = _photo(512).astype(np.float32)
    heatmap = _tfjs("centernet", pixels, tmp_path, dtype="float32", output="tower_0/keypoints")
    detections = _tfjs("centernet", pixels, tmp_path, dtype="float32", output="tower_0/detections")
    module = load_graph(get_settings().models_dir, "centernet")
    with torch.inference_mode():
        _, our_heatmap, our_detections = (tensor.numpy() for tensor in module(torch.from_numpy(pixels)[None]))
    assert our_heatmap.shape == heatmap.shape and np.abs(our_heatmap - heatmap).max() < 1e-4, np.abs(our_heatmap - heatmap).max()
    clear = detections[0, :, 4] >= 0.1
    assert clear.sum() >= 3 and (detections[0, clear, 5] == 0).sum() >= 2  # the photo's people are there, as class 0
    np.testing.assert_allclose(our_detections[0, clear, :4], detections[0, clear, :4], atol=1e-2)
    np.testing.assert_allclose(our_detections[0, clear, 4:], detections[0, clear, 4:], atol=1e-4)


@pytest.mark.parametrize("graph", ["movenet-multipose", "movenet-thunder"])
def test_batched_trunk_equals_one_by_one(graph, monkeypatch):
    """N images give what each gives alone, and the convolutional trunk runs once for all N (Thunder's graph
    unstacks "the" image first: before the round trip was rewired, each crop ran the whole network alone)."""
    module = load_graph(get_settings().models_dir, graph)
    pixels = torch.from_numpy(np.stack([_photo(256), _photo(256)[:, ::-1].copy(), _photo(256)[::-1].copy()]))
    convolutions = []
    real_conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *args, **kwargs: convolutions.append(1) or real_conv2d(*args, **kwargs))
    with torch.inference_mode():
        single = torch.cat([module(pixels[i:i + 1]) for i in range(3)])
        per_image = len(convolutions) // 3
        convolutions.clear()
        batched = module.forward_batched(pixels)
    assert torch.allclose(batched, single, atol=1e-4)
    assert len(convolutions) <= per_image + 2 * 4, f"{len(convolutions)} convolutions for 3 images, {per_image} for one"
    with torch.inference_mode():
        chunked = module.forward_batched(pixels, chunk=2)  # what the CPU engine runs (KEYPOINTS_TRUNK_BATCH auto)
    assert chunked.shape == single.shape and torch.allclose(chunked, single, atol=1e-4)


def test_an_altered_converted_graph_is_refused(tmp_path):
    source = weights_dir(get_settings().models_dir)
    copy = tmp_path / "human-models"
    copy.mkdir()
    for name in ("movenet-thunder.pt", "movenet-thunder.pt.sha256"):
        shutil.copy(source / name, copy / name)
    data = bytearray((copy / "movenet-thunder.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "movenet-thunder.pt").write_bytes(bytes(data))
    with pytest.raises(WeightsFetchError, match="sha256"):
        load_graph(tmp_path, "movenet-thunder")
    assert set(FILE_SHA256) >= {"movenet-multipose.bin", "movenet-thunder.bin"}
