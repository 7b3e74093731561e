"""Pure logic: the similarity alignment and the compare decision table."""

from __future__ import annotations

import numpy as np
import pytest

from engine.face.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from engine.face.pipeline import decide


def test_template_maps_to_itself():
    matrix = similarity_transform(ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-4)


def test_rotated_scaled_shifted_landmarks_are_undone():
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ rotation.T * 2.5 + np.array([300.0, 120.0])
    matrix = similarity_transform(landmarks)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE, atol=1e-3)


def test_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)))


def test_align_face_output_size():
    image = np.random.default_rng(0).integers(0, 255, (400, 300, 3), dtype=np.uint8)
    assert align_face(image, ARCFACE_TEMPLATE + 50).shape == (112, 112, 3)
    assert align_face(image, ARCFACE_TEMPLATE + 50, size=160).shape == (160, 160, 3)


@pytest.mark.parametrize(
    ("similarity", "quality_a", "quality_b", "expected"),
    [
        (0.8, 0.9, 0.7, "match"),
        (0.1, 0.9, 0.7, "non_match"),
        (0.8, 0.5, 0.9, "review"),
        (0.1, 0.59, 0.61, "review"),
        (0.8, 0.3, 0.9, "retake_a"),
        (0.8, 0.9, 0.2, "retake_b"),
        (0.8, 0.1, 0.2, "unreliable"),
        (0.35, 0.6, 0.6, "match"),
    ],
)
def test_decision_table(similarity, quality_a, quality_b, expected):
    assert decide(similarity, quality_a, quality_b, match_threshold=0.35, reject=0.4, trust=0.6) == expected
