"""The letterboxed detector (the CUDA default: images of any sizes in one MTCNN pass) run on the CPU.

CI has no GPU, so this is the CPU test of the same code path: each image must get the faces it gets
alone (same count, landmarks within 1e-3 px), whatever else shares its batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.decode import decode_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_letterboxed_batch_of_mixed_sizes_matches_one_by_one(mtcnn_detector):
    from engine.face.detect import MTCNNDetector

    wild, faces = SHARED / "wild", SHARED / "faces"
    if not wild.is_dir() or not faces.is_dir():
        pytest.skip(f"needs the shared photos under {SHARED}")
    paths = sorted(wild.glob("*.jpg"))[:10] + sorted(faces.glob("img*.jpg"))[:3]
    images = [decode_image(path).rgb for path in paths]
    assert len({image.shape for image in images}) >= 5, "the batch must mix image sizes"
    letterboxed = MTCNNDetector(letterbox=True)
    letterboxed._mtcnn = mtcnn_detector._mtcnn
    together = letterboxed.detect_batch(images)
    alone = [mtcnn_detector.detect(image) for image in images]
    for path, faces_together, faces_alone in zip(paths, together, alone):
        assert len(faces_together) == len(faces_alone), path.name
        for a, b in zip(faces_together, faces_alone):
            assert np.abs(a.landmarks - b.landmarks).max() < 1e-3, path.name
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_padded_pnet_gives_each_image_its_own_outputs(mtcnn_detector):
    """P-Net on a batch padded to the largest image equals P-Net on each image alone (odd sizes included)."""
    import torch

    from engine.face.detect import _pnet_padded

    pnet = mtcnn_detector._mtcnn.pnet
    generator = torch.Generator().manual_seed(3)
    sizes = [(31, 47), (64, 40), (19, 23)]
    levels = [torch.rand(1, 3, height, width, generator=generator) * 2 - 1 for height, width in sizes]
    batch = torch.zeros(len(levels), 3, 64, 47)
    for slot, level in enumerate(levels):
        batch[slot, :, : level.shape[2], : level.shape[3]] = level[0]
    with torch.inference_mode():
        reg, probs = _pnet_padded(pnet, batch, sizes)
        for slot, level in enumerate(levels):
            own_reg, own_probs = pnet(level)
            height, width = own_probs.shape[2:]
            assert torch.allclose(probs[slot, :height, :width], own_probs[0, 1], atol=1e-6)
            assert torch.allclose(reg[slot, :, :height, :width], own_reg[0], atol=1e-5)
            assert not probs[slot, height:, :].any() and not probs[slot, :, width:].any()


def test_one_gather_resamples_images_of_different_sizes_like_interpolate():
    import torch

    from engine.face.detect import _summed_area, resample_many

    generator = torch.Generator().manual_seed(5)
    sizes = [(37, 53), (60, 29), (12, 12)]
    canvas = torch.full((len(sizes), 3, 60, 53), 127.0)
    for slot, (height, width) in enumerate(sizes):
        canvas[slot, :, :height, :width] = torch.randint(0, 256, (3, height, width), generator=generator).float()
    out_sizes = [(23, 31), (35, 18), (7, 9)]
    resampled = resample_many(_summed_area(canvas), torch.arange(3), torch.tensor(sizes), torch.tensor(out_sizes))
    for slot, ((height, width), (out_h, out_w)) in enumerate(zip(sizes, out_sizes)):
        expected = torch.nn.functional.interpolate(canvas[slot : slot + 1, :, :height, :width], size=(out_h, out_w), mode="area")[0]
        assert torch.equal(resampled[slot, :, :out_h, :out_w], expected)
        assert (resampled[slot, :, out_h:, :] == 127.5).all() and (resampled[slot, :, :, out_w:] == 127.5).all()
