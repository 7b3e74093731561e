"""The quality score means something on photos it was not fitted on (held-out in-the-wild identities):
clean > degraded, noise and non-faces are rejected, clean frontal faces are trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.degrade import DEGRADATIONS, STRONG_DEGRADATIONS
from evaluation.heldout import heldout_photos

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = 24


@pytest.fixture(scope="module")
def clean_results(pipeline):
    """A seeded sample of held-out in-the-wild photos whose clean face is trusted (≥ 0.6): the question
    is whether damage takes that trust away."""
    if not (DATA_ROOT / "wild" / "identities.csv").is_file():
        pytest.skip(f"needs the shared data set {DATA_ROOT / 'wild'} (present in CI, absent in a user's fresh clone)")
    photos = heldout_photos(DATA_ROOT, pipeline.scorer.params, "wild", per_identity=1, sample_seed=1)
    results = {}
    for photo in photos:
        result = pipeline.analyze(photo.path)
        if result.faces and result.face.quality >= 0.6:
            results[photo.path] = result
        if len(results) == SAMPLE:
            break
    assert len(results) == SAMPLE
    return results


@pytest.fixture(scope="module")
def degraded_faces(pipeline, clean_results):
    """(file, degradation) → (quality, reasons) of the main face, or (0.0, None) when the degradation lost the face."""
    faces = {}
    for file, result in clean_results.items():
        decoded = pipeline.decode(file)
        box = np.asarray(result.face.bbox) * decoded.scale
        for index, name in enumerate(STRONG_DEGRADATIONS):
            degraded = pipeline.analyze(DEGRADATIONS[name](decoded.rgb, box, index))
            faces[(file, name)] = (degraded.faces[0].quality, degraded.faces[0].reasons) if degraded.faces else (0.0, None)
    return faces


@pytest.mark.parametrize("degradation", STRONG_DEGRADATIONS)
def test_clean_face_scores_higher_than_its_degraded_copy(degradation, clean_results, degraded_faces):
    wins = [clean_results[file].face.quality > degraded_faces[(file, degradation)][0] for file in clean_results]
    assert np.mean(wins) >= 0.95, f"{degradation}: clean scored higher for only {np.mean(wins):.0%} of photos"


def test_clean_frontal_faces_are_trusted(pipeline, faces_dir):
    """The shared faces/ photos of held-out identities (clean, well-lit portraits): frontal ones are trusted."""
    photos = heldout_photos(faces_dir.parent, pipeline.scorer.params, "faces")
    faces = [pipeline.analyze(photo.path).face for photo in photos]
    frontal = [face for face in faces if abs(face.pose["yaw"]) < 20 and abs(face.pose["pitch"]) < 20]
    assert len(frontal) >= 8
    trusted = [face.quality >= 0.6 for face in frontal]
    assert np.mean(trusted) >= 0.9, f"only {np.mean(trusted):.0%} of clean frontal faces scored ≥ 0.6"


@pytest.mark.parametrize(("degradation", "code"), [("blur_strong", "blurred"), ("occlusion_lower", "face_occluded")])
def test_a_degraded_copy_that_loses_trust_names_the_damage(degradation, code, degraded_faces):
    """Held-out trusted faces, strongly blurred or with the lower half covered: where the copy is no longer
    trusted, the reason given names what was done to it (not just any reason: a low score always gets one).
    Seen on this sample: blur 14 of 15 untrusted copies say blurred (9 of 24 blurred copies stay trusted);
    lower occlusion 18 of 22. (Very dark and tiny copies: the test below, which also requires the loss of trust.)"""
    copies = {file.name: face for (file, name), face in degraded_faces.items() if name == degradation}
    untrusted = {file: reasons for file, (quality, reasons) in copies.items() if reasons is not None and quality < 0.6}
    assert len(untrusted) >= 10, f"{degradation}: only {len(untrusted)} copies lost trust"
    named = [code in reasons for reasons in untrusted.values()]
    assert np.mean(named) >= 0.8, untrusted


def test_random_noise_images_are_no_face_or_rejected(pipeline):
    rng = np.random.default_rng(0)
    for seed in range(5):
        noise = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        result = pipeline.analyze(noise)
        assert not result.faces or all(face.quality < 0.4 for face in result.faces), f"noise image {seed}"


def test_non_face_images_are_no_face_or_rejected(pipeline):
    x = np.linspace(0, 1, 640)[None, :, None]
    y = np.linspace(0, 1, 480)[:, None, None]
    images = [
        np.full((480, 640, 3), 200, np.uint8),
        (255 * np.concatenate([x.repeat(480, 0), y.repeat(640, 1), (x * y)], axis=2)).astype(np.uint8),
        ((np.indices((480, 640)).sum(axis=0) // 40 % 2) * 255).astype(np.uint8),
    ]
    for image in images:
        result = pipeline.analyze(image)
        assert not result.faces or all(face.quality < 0.4 for face in result.faces)


@pytest.mark.parametrize(("degradation", "code"), [("very_dark", "too_dark"), ("downscale_24", "face_too_small")])
def test_dark_and_tiny_copies_of_trusted_faces_lose_trust_and_say_why(pipeline, clean_results, degradation, code):
    """A very dark copy (brightness ≈ 15) and a copy with the face shrunk to 24 px of every trusted
    held-out face: each face still found is no longer trusted and names the cause."""
    said = {}
    for index, (file, result) in enumerate(clean_results.items()):
        decoded = pipeline.decode(file)
        box = np.asarray(result.face.bbox) * decoded.scale
        degraded = pipeline.analyze(DEGRADATIONS[degradation](decoded.rgb, box, index))
        if degraded.faces:
            said[file.name] = (round(degraded.face.quality, 3), degraded.face.reasons)
    assert len(said) >= SAMPLE // 2, f"{degradation}: the face was lost in {SAMPLE - len(said)} of {SAMPLE} copies"
    kept = [quality < 0.6 and code in reasons for quality, reasons in said.values()]
    assert np.mean(kept) >= 0.9, said


def test_thorough_mode_adds_stability(pipeline, faces_dir):
    result = pipeline.analyze(faces_dir / "img1.jpg", thorough=True)
    assert 0.5 < result.face.signals.stability <= 1.0
    assert 0.0 <= result.face.quality <= 1.0


def test_quality_heatmap_marks_the_face_and_is_an_image(pipeline, clean_results):
    from engine.quality.heatmap import GRID, quality_heatmap

    face = next(iter(clean_results.values())).face
    drop, image = quality_heatmap(pipeline, face)
    assert drop.shape == (GRID, GRID) and (drop >= 0).all()
    assert image.shape == face.aligned.shape and image.dtype == np.uint8
    centre, border = drop[2:5, 2:5].mean(), np.concatenate([drop[0], drop[-1]]).mean()
    assert centre >= border, "covering the middle of the face should cost more quality than covering its edge"
