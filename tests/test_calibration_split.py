"""The calibration's split and threshold arithmetic (no models): what the tests rely on to be honest."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.calibrate import empirical_threshold, grouped_fmr_ci
from evaluation.calibdata import is_deep_shadow, split_identities, yale_angles


def test_split_is_seeded_disjoint_and_a_third():
    identities = [f"wild:{i}" for i in range(150)]
    held = split_identities(identities, "wild", seed=8)
    assert held == split_identities(identities, "wild", seed=8)
    assert held != split_identities(identities, "wild", seed=9)
    assert len(held) == 50 and held <= set(identities)


def test_sets_are_split_independently():
    a = split_identities([f"x{i}" for i in range(30)], "spoof", seed=8)
    b = split_identities([f"x{i}" for i in range(30)], "dark", seed=8)
    assert a != b


def test_empirical_threshold_reaches_its_false_match_rate():
    scores = np.random.default_rng(0).normal(0.0, 0.1, 100_000)
    threshold = empirical_threshold(scores, 1e-3)
    assert (scores >= threshold).mean() <= 1e-3
    assert (scores >= threshold - 1e-3).mean() > 5e-4
    with pytest.raises(ValueError):
        empirical_threshold(scores[:500], 1e-3)


def test_grouped_fmr_counts_only_impostor_pairs_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(40), 5)
    features = rng.normal(size=(200, 64))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    result = grouped_fmr_ci(features, labels, threshold=0.3, n_boot=200)
    similarity = features @ features.T
    upper = np.triu_indices(200, 1)
    impostor = labels[upper[0]] != labels[upper[1]]
    assert result["impostor_pairs"] == impostor.sum()
    assert result["fmr"] == pytest.approx((similarity[upper][impostor] >= 0.3).mean())
    assert result["ci95"][0] <= result["fmr"] <= result["ci95"][1]


def test_yale_names_and_deep_shadow_rule():
    assert yale_angles("yaleB01_P00A-110E+15.png") == (-110, 15)
    assert is_deep_shadow(-110, 15) and is_deep_shadow(0, 45) and not is_deep_shadow(20, 10)
