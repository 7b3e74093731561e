"""Each converted model (ONNX → PyTorch via onnx2torch, with our graph patches) matches onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engine.weights import faceplugin_dir, onnx_to_torch
from settings import get_settings

INPUT_SHAPES = {
    "fr_feature": (3, 112, 112),
    "fr_pose": (3, 224, 224),
    "fr_liveness": (3, 128, 128),
    "fr_eye": (1, 24, 24),
    "fr_landmark": (1, 64, 64),
}


@pytest.mark.parametrize("name", sorted(INPUT_SHAPES))
def test_converted_model_matches_onnxruntime_batched(name):
    path = faceplugin_dir(get_settings().models_dir) / f"{name}.onnx"
    inputs = np.random.default_rng(7).uniform(-1, 1, size=(3, *INPUT_SHAPES[name])).astype(np.float32)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # the unpatched graph, batch 1
    with torch.inference_mode():
        outputs = onnx_to_torch(path)(torch.from_numpy(inputs))
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for index in range(len(inputs)):
        expected = reference.run(None, {"input": inputs[index : index + 1]})
        assert len(expected) == len(outputs)
        for ours, theirs in zip(outputs, expected):
            assert ours.shape[1:] == theirs.shape[1:]
            assert np.abs(ours[index].numpy() - theirs[0]).max() < 1e-4
