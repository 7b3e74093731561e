"""Feature probes (engine/quality/probes.py) and how the quality params carry them: pure logic, no models."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.quality.probes import FeatureProbe, fit_probe
from engine.quality.scorer import QualityParams, QualityScorer, term_values
from engine.quality.signals import QualitySignals


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def labelled_features(seed: int, count: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Unit features whose label moves them along one direction, as a mask moves a recognizer's feature."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count).astype(float)
    direction = np.zeros(64)
    direction[3] = 1.0
    return unit(rng.normal(size=(count, 64)) * 0.1 + np.outer(labels, direction) * 0.3), labels


def test_probe_separates_unseen_faces_along_the_attribute_direction():
    features, labels = labelled_features(seed=0)
    probe = fit_probe(features, labels)
    test_features, test_labels = labelled_features(seed=1)
    probabilities = probe.probabilities(test_features)
    assert np.mean((probabilities >= 0.5) == (test_labels == 1)) >= 0.9
    assert int(np.argmax(np.abs(probe.weights))) == 3


def test_sample_weights_decide_which_group_counts():
    """A weight of zero removes a sample: labels flipped on zero-weight rows change nothing."""
    features, labels = labelled_features(seed=2)
    weights = np.ones(len(labels))
    weights[:100] = 0.0
    flipped = labels.copy()
    flipped[:100] = 1 - flipped[:100]
    a = fit_probe(features, labels, weights)
    b = fit_probe(features, flipped, weights)
    assert np.allclose(a.weights, b.weights, atol=1e-4) and abs(a.bias - b.bias) < 1e-4


def test_params_file_keeps_the_probe_and_the_scorer_annotates_signals(tmp_path):
    features, labels = labelled_features(seed=3)
    probe = fit_probe(features, labels)
    from engine.quality.scorer import LogitModel

    model = LogitModel(("feature_norm", "mask"), np.zeros(2), np.ones(2), np.array([1.0, -3.0]), 0.0, 1.0)
    params = QualityParams("test-model", "2", 0.36, model, model, {}, probe)
    path = tmp_path / "quality-test-model.json"
    params.save(path)
    loaded = QualityParams.load(path)
    assert isinstance(loaded.mask_probe, FeatureProbe)
    assert np.allclose(loaded.mask_probe.probabilities(features), probe.probabilities(features), atol=1e-5)

    base = QualitySignals(det_score=0.99, face_px=120, feature_norm=3.0, yaw=0, pitch=0, roll=0, sharpness=3.0,
                          brightness=120, contrast=40, overexposed=0, underexposed=0, real_prob=1.0, eyes_open=1.0)
    covered, bare = dataclasses.replace(base), dataclasses.replace(base)
    covered_feature = unit(np.eye(64)[3:4] + 0.01)
    bare_feature = unit(np.eye(64)[10:11] - np.eye(64)[3:4] * 0.5)
    scorer = QualityScorer(loaded)
    scorer.annotate([covered, bare], np.concatenate([covered_feature, bare_feature]))
    assert covered.mask_prob > 0.5 > bare.mask_prob
    assert scorer.score(covered).score < scorer.score(bare).score
    assert "face_occluded" in scorer.score(covered).reasons


def test_without_a_probe_the_mask_term_is_neutral():
    signals = QualitySignals(det_score=0.99, face_px=120, feature_norm=3.0, yaw=0, pitch=0, roll=0, sharpness=3.0,
                             brightness=120, contrast=40, overexposed=0, underexposed=0, real_prob=1.0, eyes_open=1.0)
    assert signals.mask_prob is None
    assert term_values(signals)["mask"] == 0.0
