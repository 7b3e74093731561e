"""The batch-first engine: a batch gives what single images give, bad inputs fail alone, modules are owned.

Real models and the shared photos (skipped with a reason when the photos are absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.decode import decode_image
from errors import FroodError, ImageDecodeError, ImageTooLargeError
from tests.test_decode_bad_inputs import png_header


def _all_photos(faces_dir: Path) -> list[Path]:
    return sorted(faces_dir.glob("*.jpg"))


def test_batch_path_equals_single_path_on_every_shared_photo(pipeline, faces_dir, clean_results):
    """Features (cosine ≥ 0.9999) and qualities (±1e-4) of ``analyze_batch`` equal ``analyze``'s, photo by photo."""
    photos = _all_photos(faces_dir)
    singles = {path.name: clean_results.get(path.name) or pipeline.analyze(path) for path in photos}
    batched = pipeline.analyze_many(photos, batch_size=16)
    assert len(batched) == len(photos)
    compared = 0
    for path, result in zip(photos, batched):
        single = singles[path.name]
        assert not isinstance(result, FroodError), f"{path.name}: {result}"
        assert result.batch_size == 16
        assert len(result.faces) == len(single.faces), path.name
        for face_batch, face_single in zip(result.faces, single.faces):
            assert float(np.dot(face_batch.feature, face_single.feature)) >= 0.9999, path.name
            assert face_batch.quality == pytest.approx(face_single.quality, abs=1e-4), path.name
            assert face_batch.bbox == pytest.approx(face_single.bbox, abs=0.05), path.name
            compared += 1
    assert compared >= 62  # every photo has at least its one face


def test_bad_inputs_in_a_batch_get_their_typed_errors_and_the_rest_their_results(pipeline, faces_dir, tmp_path):
    good = faces_dir / "img1.jpg"
    text_file = tmp_path / "notes.jpg"
    text_file.write_text("not an image")
    truncated = good.read_bytes()[:2000]
    batch = [
        good,
        b"",  # empty upload
        png_header(40_000, 40_000),  # declares 1.6 GP: refused before decoding
        good.read_bytes(),
        b"\x00garbage\xff" * 10,
        text_file,
        tmp_path / "missing.jpg",
        truncated,
        decode_image(good).rgb[:, ::-1].copy(),  # a mirrored array: a real, different input
        np.zeros((0, 5, 3), np.uint8),  # empty array
    ]
    results = pipeline.analyze_batch(batch)
    assert len(results) == len(batch)
    expected_errors = {1: ImageDecodeError, 2: ImageTooLargeError, 4: ImageDecodeError, 5: ImageDecodeError, 6: ImageDecodeError, 9: ImageDecodeError}
    for index, kind in expected_errors.items():
        assert isinstance(results[index], kind), (index, results[index])
        assert str(results[index])  # a message a person can read
    # The truncated JPEG either decodes partially or is refused, but with a typed error, never a crash.
    assert isinstance(results[7], (FroodError, type(results[0])))
    single = pipeline.analyze(good)
    for index in (0, 3):
        assert float(np.dot(results[index].face.feature, single.face.feature)) >= 0.9999
        assert results[index].face.quality == pytest.approx(single.face.quality, abs=1e-4)
    mirrored = results[8].face
    assert 0.5 < float(np.dot(mirrored.feature, single.face.feature)) < 0.9999  # same person, not the same pixels


def test_single_analyze_raises_the_typed_error(pipeline):
    with pytest.raises(ImageDecodeError, match="empty"):
        pipeline.analyze(b"")


def test_compare_is_one_batch_of_two(pipeline, faces_dir):
    result = pipeline.compare(faces_dir / "img1.jpg", faces_dir / "img2.jpg")
    a, b = pipeline.analyze(faces_dir / "img1.jpg"), pipeline.analyze(faces_dir / "img2.jpg")
    assert result.a.batch_size == 2
    assert result.similarity == pytest.approx(float(np.dot(a.face.feature, b.face.feature)), abs=1e-4)
    with pytest.raises(ImageDecodeError):
        pipeline.compare(faces_dir / "img1.jpg", b"")


def test_detector_matches_facenet_pytorch_mtcnn(mtcnn_detector, faces_dir):
    """The vectorised R-Net/O-Net crops give facenet-pytorch's own boxes, scores and landmarks."""
    detector = mtcnn_detector
    for name in ("img1.jpg", "img41.jpg", "couple.jpg"):
        small, _ = detector.downscale(decode_image(faces_dir / name).rgb)
        with torch.inference_mode():
            boxes, probs, points = detector._mtcnn.detect(small, landmarks=True)
        reference = [(box, prob, marks) for box, prob, marks in zip(boxes, probs, points) if prob >= detector.min_score]
        ours = detector._raw_batch([small])[0]
        assert len(ours) == len(reference) >= 1, name
        for (box, prob, landmarks), (ref_box, ref_prob, ref_landmarks) in zip(ours, reference):
            assert np.abs(box - ref_box).max() < 0.01, name
            assert prob == pytest.approx(ref_prob, abs=1e-5), name
            assert np.abs(landmarks - ref_landmarks).max() < 0.01, name


def test_each_pipeline_owns_its_modules(pipeline):
    """Two pipelines never share a module: moving one's weights (as a CUDA pipeline would) leaves the other's alone."""
    from service.models import create_pipeline

    other = create_pipeline("default", device="cpu", with_quality=False)
    assert other.embedder.module is not pipeline.embedder.module
    assert other.signals.pose is not pipeline.signals.pose
    def eager(net):  # on CPU the helper nets are wrapped in engine.quality.signals.FrozenPerShape
        return getattr(net, "module", net)

    other.embedder.module.to(torch.float64)
    eager(other.signals.eye).to(torch.float64)
    assert next(pipeline.embedder.module.parameters()).dtype == torch.float32
    assert next(eager(pipeline.signals.eye).parameters()).dtype == torch.float32


def test_reduced_precision_path_keeps_the_feature(pipeline, clean_results):
    """The autocast path CUDA uses (fp16 there), run here on CPU in bf16: cosine ≥ 0.999 to fp32."""
    from engine.face.models.registry import FacepluginEmbedder

    crops = np.stack([result.face.aligned for result in list(clean_results.values())[:8]])
    reduced = FacepluginEmbedder(pipeline.embedder.module, "cpu", precision="bf16")
    assert reduced.precision == "bf16"
    full = pipeline.embedder.embed(crops).features
    half = reduced.embed(crops).features
    assert half.dtype == np.float32
    cosines = (full * half).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert FacepluginEmbedder(pipeline.embedder.module, "cpu", precision="auto").precision == "fp32"


def test_converted_models_are_cached_on_disk_by_hash(tmp_path):
    from engine import weights
    from settings import get_settings

    source = weights.faceplugin_dir(get_settings().models_dir) / "fr_eye.onnx"
    if not source.is_file():
        pytest.skip(f"needs the packaged weights at {source} (`make weights`)")
    probe = torch.rand(3, 1, 24, 24)
    first = weights.onnx_to_torch(source, tmp_path)
    cached = weights.cache_path_for(source, tmp_path)
    assert cached.is_file() and weights.file_sha256(source)[:24] in cached.name
    weights._load_cached.cache_clear()  # a new process: nothing in memory
    second = weights.onnx_to_torch(source, tmp_path)
    with torch.inference_mode():
        assert torch.allclose(first(probe), second(probe))
    cached.write_bytes(b"damaged")
    weights._load_cached.cache_clear()
    with torch.inference_mode():
        assert torch.allclose(weights.onnx_to_torch(source, tmp_path)(probe), first(probe))  # rebuilt, not fatal


def test_equal_size_images_detected_together_match_one_by_one(mtcnn_detector):
    """The grouped MTCNN pass (the CUDA default) run on CPU: same faces as image by image."""
    from engine.face.detect import MTCNNDetector

    wild = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wild"
    if not wild.is_dir():
        pytest.skip(f"needs the shared wild photos at {wild}")
    images = [decode_image(path).rgb for path in sorted(wild.glob("*.jpg"))[:40]]
    shape = max({image.shape for image in images}, key=lambda s: sum(image.shape == s for image in images))
    same = [image for image in images if image.shape == shape][:6]
    assert len(same) >= 3
    grouped = MTCNNDetector(group_sizes=True)
    grouped._mtcnn = mtcnn_detector._mtcnn
    together = grouped.detect_batch(same)
    alone = [mtcnn_detector.detect(image) for image in same]
    for faces_together, faces_alone in zip(together, alone):
        assert len(faces_together) == len(faces_alone)
        for a, b in zip(faces_together, faces_alone):
            assert np.abs(a.bbox - b.bbox).max() < 0.05
            assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_pyramid_resampling_equals_torch_area_interpolation_bit_for_bit(layout):
    """MTCNN's image pyramid is read from the summed-area table: the same float32 values and memory layout
    as ``interpolate(mode="area")``, so P-Net sees exactly what it saw before (detections bit-identical)."""
    from torch.nn.functional import interpolate

    from engine.face.detect import _summed_area, area_resize

    generator = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (2, 331, 517, 3), dtype=torch.uint8, generator=generator)
    images = pixels.permute(0, 3, 1, 2).float()
    if layout == "contiguous":
        images = images.contiguous()
    table = _summed_area(images)
    channels_last = layout == "channels_last"
    for scale in (0.6, 0.6 * 0.709, 0.6 * 0.709**4, 0.05, 1.3):
        size = (int(331 * scale + 1), int(517 * scale + 1))
        expected = interpolate(images, size=size, mode="area")
        resized = area_resize(table, 331, 517, *size, channels_last=channels_last)
        assert torch.equal(resized, expected), (scale, (resized - expected).abs().max())
        assert resized.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(memory_format=torch.channels_last)
