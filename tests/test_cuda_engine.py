"""The engine on a CUDA device: batch == single, reduced precision close to the CPU's fp32, and a CPU and
a CUDA pipeline side by side in one process.

CI has no GPU, so these skip there with their reason; they are run on a lent GPU (see docs/gpu.md) with
the shared in-the-wild photos. The CPU tests of the same code paths (letterboxed detection, batch ==
single) are in tests/test_letterbox_detect.py and tests/test_batch_engine.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from errors import FroodError

WILD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wild"

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none; run on a GPU machine)")


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    paths = sorted(WILD.glob("*.jpg"))[:48]
    if len(paths) < 16:
        pytest.skip(f"needs the shared in-the-wild photos at {WILD}")
    return paths


@pytest.fixture(scope="module")
def cuda_pipeline():
    from service.models import create_pipeline

    return create_pipeline(device="cuda")


def _main_faces(results) -> dict[int, object]:
    return {index: result.face for index, result in enumerate(results) if not isinstance(result, FroodError) and result.faces}


def test_cuda_batch_equals_single(cuda_pipeline, photos):
    """On CUDA, cuDNN picks its convolution kernels per shape, so a batch and a single photo may differ by
    float rounding, which MTCNN's cascade can amplify. With cuDNN's TF32 convolutions on (its default)
    15 % of photos fell below cosine 0.9999 on an H100 (one to 0.946) and this test failed; the detector
    now turns TF32 off and it passes. Most photos must agree to 1e-4, none may drift far."""
    batch = _main_faces(cuda_pipeline.analyze_batch(photos))
    single = _main_faces([cuda_pipeline.analyze(path) for path in photos])
    assert batch.keys() == single.keys()
    cosines = np.array([float(np.dot(face.feature, single[index].feature)) for index, face in batch.items()])
    qualities = np.array([abs(face.quality - single[index].quality) for index, face in batch.items()])
    summary = f"cosines min {cosines.min():.5f}, share >= 0.9999: {np.mean(cosines >= 0.9999):.2f}; max |dq| {qualities.max():.4f}"
    assert np.mean(cosines >= 0.9999) >= 0.9, summary
    assert cosines.min() >= 0.95, summary
    assert np.median(qualities) <= 1e-3, summary


def test_cuda_reduced_precision_stays_close_to_cpu_fp32(cuda_pipeline, pipeline, photos):
    assert cuda_pipeline.embedder.precision == "fp16"  # the CUDA default ("auto")
    cpu = _main_faces(pipeline.analyze_batch(photos))
    gpu = _main_faces(cuda_pipeline.analyze_batch(photos))
    shared = sorted(cpu.keys() & gpu.keys())
    assert len(shared) >= 0.95 * len(cpu)
    crops = np.stack([cpu[index].aligned for index in shared])
    recognizer_only = np.einsum("nd,nd->n", cuda_pipeline.embedder.embed(crops).features, pipeline.embedder.embed(crops).features)
    assert recognizer_only.min() >= 0.999
    whole = np.array([float(np.dot(cpu[index].feature, gpu[index].feature)) for index in shared])
    assert np.median(whole) >= 0.9999
    assert np.median([abs(cpu[index].quality - gpu[index].quality) for index in shared]) <= 1e-3


def test_cpu_and_cuda_pipelines_keep_their_own_modules(cuda_pipeline, pipeline, photos):
    before = pipeline.analyze(photos[0]).face.feature.copy()
    cuda_pipeline.analyze(photos[0])
    for owner, device in ((pipeline, "cpu"), (cuda_pipeline, "cuda")):
        detector = getattr(owner.detector, "_mtcnn", None) or owner.detector.refiner.onet  # MTCNN, or YuNet's O-Net (the default)
        for module in (owner.embedder.module, owner.signals.pose, owner.signals.liveness, detector):
            module = getattr(module, "module", module)  # a CPU helper net is wrapped (traced per input shape)
            assert all(parameter.device.type == device for parameter in module.parameters())
    assert np.array_equal(pipeline.analyze(photos[0]).face.feature, before)
