"""Evaluation metrics agree with values worked out by hand on tiny score sets, so reported numbers can be trusted."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    best_threshold_accuracy,
    bootstrap_ci,
    edc_curve,
    edc_partial_auc,
    eer,
    kfold_accuracy,
    ood_auroc,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_fmr,
)


def pairs(genuine: list[float], impostor: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels from explicit genuine and impostor lists."""
    scores = np.array(genuine + impostor, dtype=float)
    labels = np.array([True] * len(genuine) + [False] * len(impostor))
    return scores, labels


SEPARATED = pairs([0.7, 0.8, 0.9], [0.1, 0.2, 0.3])
# Hand-worked EER: FNMR - FMR is -1/6 at t=0.5 and +1/12 at t=0.7, so they cross 2/3 of the way: t = 0.5 + 0.2 * 2/3,
# where FNMR stays 1/3 and FMR falls from 1/2 to 1/3.
CROSSING = pairs([0.4, 0.7, 0.9], [0.1, 0.2, 0.5, 0.8])


def test_perfect_separation_gives_auc_one_eer_zero_accuracy_one():
    assert roc_auc(*SEPARATED) == 1.0
    value, threshold = eer(*SEPARATED)
    assert value == 0.0 and 0.3 < threshold <= 0.7
    accuracy, threshold = best_threshold_accuracy(*SEPARATED)
    assert accuracy == 1.0 and threshold == pytest.approx(0.5)


def test_roc_curve_points_by_hand_with_a_tie():
    fpr, tpr, thresholds = roc_curve([0.9, 0.8, 0.8, 0.1], [True, True, False, False])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.1])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 1.0])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc([0.9, 0.8, 0.8, 0.1], [True, True, False, False]))


def test_auc_counts_ties_as_half():
    assert roc_auc([0.5] * 6, [True, False] * 3) == 0.5
    # genuine {1, 2} vs impostor {2, 0}: wins 1>0, 2>0, tie 2=2, loss 1<2 → 2.5 / 4
    assert roc_auc(*pairs([1.0, 2.0], [2.0, 0.0])) == 0.625
    assert roc_auc([0, 1, 0, 1], [1, 1, 0, 0]) == 0.5  # 0/1 labels accepted


def test_eer_interpolates_at_the_hand_worked_crossing():
    value, threshold = eer(*CROSSING)
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.5 + 0.2 * 2 / 3)


def test_eer_exact_crossing_on_a_score():
    # At t=0.6: FNMR = 1/4 (0.3 rejected), FMR = 1/4 (0.65 accepted).
    value, threshold = eer(*pairs([0.3, 0.6, 0.7, 0.9], [0.1, 0.2, 0.4, 0.65]))
    assert value == pytest.approx(0.25) and threshold == 0.6


def test_threshold_at_fmr_is_just_above_the_allowed_impostor():
    impostors = np.round(np.arange(1, 11) / 10, 1)  # 0.1 ... 1.0
    threshold = threshold_at_fmr(impostors, 0.1)  # one false match allowed → must pass 0.9, not 1.0
    assert threshold == np.nextafter(0.9, np.inf)
    assert np.mean(impostors >= threshold) == 0.1
    assert threshold_at_fmr(impostors, 0.05) == np.nextafter(1.0, np.inf)  # none allowed
    assert threshold_at_fmr(impostors, 0.29) == np.nextafter(0.8, np.inf)  # floor(0.29 * 10) = 2 despite rounding


def test_tar_at_far_by_hand():
    impostors = [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6]
    scores, labels = pairs([0.3, 0.5, 0.55, 0.7, 0.9], impostors)
    tar, threshold = tar_at_far(scores, labels, 0.1)  # above 0.5: the genuine 0.5 tied with an impostor is rejected
    assert tar == pytest.approx(3 / 5) and 0.5 < threshold < 0.55
    tar, _ = tar_at_far(scores, labels, 0.2)  # above 0.45
    assert tar == pytest.approx(4 / 5)
    tar, threshold = tar_at_far(scores, labels, 0.05)  # 10 impostors < 1 / 0.05
    assert np.isnan(tar) and np.isnan(threshold)


def test_kfold_accuracy_on_separable_data():
    rng = np.random.default_rng(3)
    scores, labels = pairs(list(rng.uniform(0.6, 1.0, 100)), list(rng.uniform(0.0, 0.4, 100)))
    mean, std, thresholds = kfold_accuracy(scores, labels, folds=10, seed=0)
    assert mean == 1.0 and std == 0.0
    assert thresholds.shape == (10,) and np.all((thresholds > 0.4) & (thresholds < 0.6))
    assert np.array_equal(kfold_accuracy(scores, labels, seed=0)[2], thresholds)


def test_kfold_accuracy_estimates_overlapping_classes():
    rng = np.random.default_rng(4)
    scores, labels = pairs(list(rng.normal(2.0, 1.0, 500)), list(rng.normal(0.0, 1.0, 500)))
    mean, std, _ = kfold_accuracy(scores, labels)
    assert mean == pytest.approx(0.841, abs=0.03)  # Φ(1): optimal accuracy at d' = 2
    assert 0.0 < std < 0.1


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(5)
    scores, labels = pairs(list(rng.normal(1.0, 1.0, 100)), list(rng.normal(0.0, 1.0, 100)))
    low, high = bootstrap_ci(roc_auc, scores, labels, n_boot=200, seed=7)
    assert low < roc_auc(scores, labels) < high and high - low < 0.25
    assert bootstrap_ci(roc_auc, scores, labels, n_boot=200, seed=7) == (low, high)
    assert bootstrap_ci(roc_auc, scores, labels, n_boot=200, seed=8) != (low, high)
    eer_low, eer_high = bootstrap_ci(eer, scores, labels, n_boot=100, seed=7)  # tuple-returning metric
    assert eer_low <= eer(scores, labels)[0] <= eer_high


def test_edc_discarding_the_low_quality_pair_removes_the_false_non_match():
    # Threshold at FMR 1/4 on all 4 impostors: just above 0.3. The genuine 0.2 is the only false non-match
    # and also the lowest-quality genuine pair; impostor qualities are lower still but do not count.
    scores, labels = pairs([0.2, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.4])
    quality = np.array([0.1, 0.9, 0.8, 0.7, 0.01, 0.02, 0.03, 0.04])
    curve = edc_curve(scores, labels, quality, fmr=0.25)
    assert curve["threshold"] == threshold_at_fmr([0.1, 0.2, 0.3, 0.4], 0.25) == np.nextafter(0.3, np.inf)
    discard, fnmr = curve["discard"], curve["fnmr"]
    assert discard.shape == fnmr.shape == (51,)
    np.testing.assert_allclose(fnmr[discard < 0.25 - 1e-12], 0.25)
    np.testing.assert_array_equal(fnmr[discard >= 0.25 - 1e-12], 0.0)
    assert edc_partial_auc(curve) == pytest.approx(0.25 * 0.2)  # flat 1/4 over [0, 0.2], raw area
    assert edc_partial_auc(curve, max_discard=0.245) == pytest.approx(0.25 * 0.24 + 0.005 * (0.25 + 0.125) / 2)

    explicit = edc_curve(scores, labels, quality, threshold=0.5, discard_fractions=[0.0, 0.25, 0.5])
    np.testing.assert_allclose(explicit["fnmr"], [0.25, 0.0, 0.0])
    reversed_quality = edc_curve(scores, labels, 1.0 - quality, threshold=0.5, discard_fractions=[0.0, 0.25, 0.5])
    np.testing.assert_allclose(reversed_quality["fnmr"], [0.25, 1 / 3, 0.5])  # a bad quality score makes it worse


def test_ood_auroc_by_hand():
    assert ood_auroc([0.9, 0.8], [0.1, 0.85]) == 0.75
    assert ood_auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert ood_auroc([0.5, 0.5], [0.5]) == 0.5


@pytest.mark.parametrize(
    "metric",
    [roc_auc, roc_curve, eer, best_threshold_accuracy, kfold_accuracy, lambda s, y: tar_at_far(s, y, 0.1)],
)
def test_degenerate_inputs_raise(metric):
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="no impostor"):
        metric([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError, match="no genuine"):
        metric([0.1, 0.2, 0.3], [False, False, False])
    with pytest.raises(ValueError, match="NaN"):
        metric([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="shape"):
        metric([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="booleans"):
        metric([0.1, 0.2], [2, 0])


def test_other_bad_arguments_raise():
    with pytest.raises(ValueError, match="empty"):
        ood_auroc([], [0.1])
    with pytest.raises(ValueError, match="fmr"):
        threshold_at_fmr([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="folds"):
        kfold_accuracy(*SEPARATED, folds=10)
    with pytest.raises(ValueError, match="no genuine"):
        edc_curve([0.1, 0.2], [False, False], [0.5, 0.5], threshold=0.5)
    with pytest.raises(ValueError, match="pair_quality"):
        edc_curve(*SEPARATED, pair_quality=[0.5])
    with pytest.raises(ValueError, match="max_discard"):
        edc_partial_auc({"discard": np.array([0.0, 0.1]), "fnmr": np.array([0.2, 0.1])}, max_discard=0.2)
