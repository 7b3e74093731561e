"""Face-verification and face-quality metrics in plain numpy.

Conventions used throughout, so every number in a report means the same thing:

* ``scores`` are similarities: higher means "more likely the same person".
* ``labels`` are booleans: True for a genuine (mated) pair, False for an impostor pair.
* A pair is *accepted* (declared a match) when ``score >= threshold``. Hence
  FMR(t) = share of impostor scores >= t and FNMR(t) = share of genuine scores < t.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

# Guards floor(fraction * n) against binary rounding, e.g. 0.29 * 100 == 28.999999999999996.
_COUNT_EPS = 1e-9

__all__ = [
    "best_threshold_accuracy",
    "bootstrap_ci",
    "edc_curve",
    "edc_partial_auc",
    "eer",
    "kfold_accuracy",
    "ood_auroc",
    "pair_indices",
    "pair_similarities",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_fmr",
]


# --------------------------------------------------------------------------- validation


def _as_scores(scores: ArrayLike, name: str = "scores") -> FloatArray:
    """1-D finite float array; NaN scores would silently corrupt every rank-based metric."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_pairs(scores: ArrayLike, labels: ArrayLike, need_both: bool = True) -> tuple[FloatArray, BoolArray]:
    """Validated (scores, labels); labels must be bool or 0/1 so a typo like label 2 is not read as True."""
    score_array = _as_scores(scores)
    label_array = np.asarray(labels)
    if label_array.shape != score_array.shape:
        raise ValueError(f"scores and labels differ in shape: {score_array.shape} vs {label_array.shape}")
    if label_array.dtype != np.bool_:
        if not np.all(np.isin(label_array, (0, 1))):
            raise ValueError("labels must be booleans (True = genuine pair) or 0/1")
        label_array = label_array.astype(bool)
    if need_both:
        n_genuine = int(label_array.sum())
        if n_genuine == 0:
            raise ValueError("labels contain no genuine pairs (True); the metric needs both classes")
        if n_genuine == label_array.size:
            raise ValueError("labels contain no impostor pairs (False); the metric needs both classes")
    return score_array, label_array


def _check_rate(value: float, name: str) -> float:
    """Rates like FMR must lie strictly inside (0, 1) to define a non-trivial operating point."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return float(value)


# --------------------------------------------------------------------------- pairs


def pair_indices(labels: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], BoolArray]:
    """Every unordered pair of items ``(i, j)``, ``i < j``, in row-major order, and whether it is genuine.

    The one pair enumerator of calibration (match thresholds, EDC) and evaluation (held-out reports, generated
    pairs of ``frood eval``): a genuine pair shares a label, an impostor pair does not.
    """
    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {label_array.shape}")
    first, second = np.triu_indices(label_array.size, 1)
    return first, second, label_array[first] == label_array[second]


def pair_similarities(features: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, BoolArray]:
    """(cosine of every pair of :func:`pair_indices`, genuine flags) for unit feature rows (their dtype kept)."""
    matrix = np.asarray(features)
    first, second, genuine = pair_indices(labels)
    if not first.size:
        return np.zeros(0), genuine
    if matrix.ndim != 2 or matrix.shape[0] != np.asarray(labels).size:
        raise ValueError(f"features of shape {matrix.shape} for {np.asarray(labels).size} labels")
    return (matrix @ matrix.T)[first, second], genuine


# --------------------------------------------------------------------------- ROC


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """ROC points (fpr, tpr, thresholds), one per distinct score, thresholds descending.

    The first point is (0, 0) at threshold +inf (accept nothing); tied scores form one point, so the
    trapezoid area under the curve counts ties as 1/2 — the same value as :func:`roc_auc`.
    """
    score_array, label_array = _as_pairs(scores, labels)
    thresholds = np.unique(score_array)[::-1]
    genuine = np.sort(score_array[label_array])
    impostor = np.sort(score_array[~label_array])
    # Share of each class with score >= t, for every candidate threshold t.
    tpr = (genuine.size - np.searchsorted(genuine, thresholds, side="left")) / genuine.size
    fpr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / impostor.size
    return (
        np.concatenate([[0.0], fpr]),
        np.concatenate([[0.0], tpr]),
        np.concatenate([[np.inf], thresholds]),
    )


def _auc_from_classes(positive: FloatArray, negative: FloatArray) -> float:
    """P(positive > negative) + 1/2 P(tie) via midranks (Mann-Whitney U), exact and O(n log n)."""
    combined = np.concatenate([positive, negative])
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    # Midrank of each distinct value: ranks start at 1, tied values share the mean of their ranks.
    upper = np.cumsum(counts)
    midranks = upper - (counts - 1) / 2.0
    rank_sum = midranks[inverse[: positive.size]].sum()
    u_statistic = rank_sum - positive.size * (positive.size + 1) / 2.0
    return float(u_statistic / (positive.size * negative.size))


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC: probability that a random genuine score beats a random impostor score, ties counting 1/2."""
    score_array, label_array = _as_pairs(scores, labels)
    return _auc_from_classes(score_array[label_array], score_array[~label_array])


def ood_auroc(in_dist_quality: ArrayLike, ood_quality: ArrayLike) -> float:
    """AUROC of a quality score separating in-distribution faces (should score higher) from OOD samples.

    1.0 means every in-distribution sample outscores every OOD one, 0.5 is chance, ties count 1/2.
    """
    in_dist = _as_scores(in_dist_quality, "in_dist_quality")
    ood = _as_scores(ood_quality, "ood_quality")
    return _auc_from_classes(in_dist, ood)


# --------------------------------------------------------------------------- operating points


def _error_rates(genuine: FloatArray, impostor: FloatArray, thresholds: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(FNMR, FMR) at each threshold; genuine and impostor must be sorted ascending."""
    fnmr = np.searchsorted(genuine, thresholds, side="left") / genuine.size
    fmr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / impostor.size
    return fnmr, fmr


def eer(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Equal error rate and the threshold where FNMR and FMR cross.

    FNMR(t) rises and FMR(t) falls as t grows. Both are evaluated at every distinct score (plus one
    value above the maximum); where they are equal at a candidate, that candidate is returned, otherwise
    both rates and the threshold are interpolated linearly between the two candidates that bracket the
    crossing. Perfectly separated scores give EER 0 at the lowest genuine score.
    """
    score_array, label_array = _as_pairs(scores, labels)
    genuine = np.sort(score_array[label_array])
    impostor = np.sort(score_array[~label_array])
    distinct = np.unique(score_array)
    thresholds = np.append(distinct, np.nextafter(distinct[-1], np.inf))
    fnmr, fmr = _error_rates(genuine, impostor, thresholds)
    gap = fnmr - fmr  # -1 at the lowest score (accept all), +1 above the highest (reject all)
    k = int(np.argmax(gap >= 0))
    if gap[k] == 0:
        return float(fnmr[k]), float(thresholds[k])
    alpha = -gap[k - 1] / (gap[k] - gap[k - 1])
    value = fnmr[k - 1] + alpha * (fnmr[k] - fnmr[k - 1])
    threshold = thresholds[k - 1] + alpha * (thresholds[k] - thresholds[k - 1])
    return float(value), float(threshold)


def threshold_at_fmr(impostor_scores: ArrayLike, fmr: float) -> float:
    """Smallest threshold t whose FMR (share of impostor scores >= t) is <= ``fmr``.

    Convention: with n impostors, at most k = floor(fmr * n) of them may be accepted, so t must exceed the
    (k+1)-th highest impostor score s. The set of valid t is the open interval (s, inf); its smallest float
    member, ``np.nextafter(s, inf)``, is returned. Accepting ``score >= t`` is therefore exactly accepting
    ``score > s``: every genuine score above s is counted, none tied with s. When fmr * n < 1 this means no
    impostor may be accepted and t lies just above the highest impostor score (see :func:`tar_at_far` for why
    such operating points are unreliable).
    """
    impostor = np.sort(_as_scores(impostor_scores, "impostor_scores"))[::-1]
    allowed = int(np.floor(_check_rate(fmr, "fmr") * impostor.size + _COUNT_EPS))
    return float(np.nextafter(impostor[allowed], np.inf))


def tar_at_far(scores: ArrayLike, labels: ArrayLike, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the threshold from :func:`threshold_at_fmr` on the impostor pairs.

    Returns (nan, nan) when there are fewer than 1/far impostor pairs: such a FAR cannot be measured (not a
    single false accept is resolvable), and reporting the TAR at "zero false accepts" as TAR@FAR would overstate
    what the data shows.
    """
    score_array, label_array = _as_pairs(scores, labels)
    far = _check_rate(far, "far")
    impostor = score_array[~label_array]
    if impostor.size * far < 1.0 - _COUNT_EPS:
        return float("nan"), float("nan")
    threshold = threshold_at_fmr(impostor, far)
    return float(np.mean(score_array[label_array] >= threshold)), threshold


# --------------------------------------------------------------------------- accuracy (LFW protocol)


def best_threshold_accuracy(scores: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """Highest accuracy over all thresholds, and that threshold.

    Candidates are midpoints between consecutive distinct scores (so a threshold chosen on training folds
    sits in the gap, not on a training score), the lowest score (accept all), and just above the highest
    score (reject all). The lowest such threshold wins a tie in accuracy.
    """
    score_array, label_array = _as_pairs(scores, labels)
    distinct = np.unique(score_array)
    candidates = np.concatenate([distinct[:1], (distinct[:-1] + distinct[1:]) / 2.0, [np.nextafter(distinct[-1], np.inf)]])
    genuine = np.sort(score_array[label_array])
    impostor = np.sort(score_array[~label_array])
    fnmr, fmr = _error_rates(genuine, impostor, candidates)
    correct = genuine.size * (1.0 - fnmr) + impostor.size * (1.0 - fmr)
    best = int(np.argmax(correct))
    return float(correct[best] / score_array.size), float(candidates[best])


def kfold_accuracy(scores: ArrayLike, labels: ArrayLike, folds: int = 10, seed: int = 0) -> tuple[float, float, FloatArray]:
    """LFW-style accuracy: for each fold, pick the best threshold on the other folds and score the held-out one.

    Folds are stratified (genuine and impostor pairs dealt round-robin after a seeded shuffle) so every
    training split holds both classes, as in the fixed LFW splits. Returns (mean, std, per-fold thresholds);
    std is the population std over folds, as in the usual LFW reporting.
    """
    score_array, label_array = _as_pairs(scores, labels)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if score_array.size < folds:
        raise ValueError(f"{score_array.size} pairs cannot fill {folds} folds")
    if min(label_array.sum(), (~label_array).sum()) < 2:
        raise ValueError("k-fold accuracy needs at least 2 genuine and 2 impostor pairs")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(label_array)), rng.permutation(np.flatnonzero(~label_array))])
    fold_of = np.empty(score_array.size, dtype=np.int64)
    fold_of[order] = np.arange(score_array.size) % folds
    accuracies = np.empty(folds)
    thresholds = np.empty(folds)
    for fold in range(folds):
        test = fold_of == fold
        _, thresholds[fold] = best_threshold_accuracy(score_array[~test], label_array[~test])
        accuracies[fold] = np.mean((score_array[test] >= thresholds[fold]) == label_array[test])
    return float(accuracies.mean()), float(accuracies.std()), thresholds


# --------------------------------------------------------------------------- uncertainty


def bootstrap_ci(
    metric_fn: Callable[[FloatArray, BoolArray], Any],
    scores: ArrayLike,
    labels: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of ``metric_fn(scores, labels)``, resampling pairs with replacement.

    ``metric_fn`` may return a float or a tuple whose first item is the metric (so ``eer`` and ``tar_at_far``
    work as-is). Genuine and impostor pairs are resampled separately, keeping their counts fixed, so no
    replicate loses a class and TAR@FAR keeps the same impostor count. NaN replicates are ignored; if all are
    NaN the interval is (nan, nan). Note that pairs sharing an identity are not independent, so this interval
    is optimistic when a few identities contribute many pairs.
    """
    score_array, label_array = _as_pairs(scores, labels)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _check_rate(alpha, "alpha")
    rng = np.random.default_rng(seed)
    genuine = np.flatnonzero(label_array)
    impostor = np.flatnonzero(~label_array)
    values = np.empty(n_boot)
    for b in range(n_boot):
        sample = np.concatenate([rng.choice(genuine, genuine.size), rng.choice(impostor, impostor.size)])
        result = metric_fn(score_array[sample], label_array[sample])
        values[b] = result[0] if isinstance(result, tuple) else result
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


# --------------------------------------------------------------------------- quality: error-versus-discard


def edc_curve(
    scores: ArrayLike,
    labels: ArrayLike,
    pair_quality: ArrayLike,
    fmr: float = 1e-2,
    threshold: float | None = None,
    discard_fractions: Sequence[float] | FloatArray | None = None,
) -> dict[str, FloatArray | float]:
    """Error-versus-Discard Characteristic: FNMR after discarding the lowest-quality genuine pairs.

    The threshold is fixed once, on ALL pairs, at ``fmr`` (via :func:`threshold_at_fmr`) unless ``threshold`` is
    given, so the curve shows what the quality score buys at a fixed operating point rather than a re-tuned one.
    ``pair_quality`` is per pair (typically the min of the two image qualities, computed by the caller). For each
    fraction f in ``discard_fractions`` (default 0, 0.01, ..., 0.5), the floor(f * n_genuine) genuine pairs of
    lowest quality are dropped and FNMR is measured on the rest. Impostor pairs are not counted in f: at a fixed
    threshold they cannot change FNMR. Quality ties at the cut are broken by input order (stable sort).

    Returns ``{"discard": fractions, "fnmr": fnmr, "threshold": threshold}``; FNMR is NaN where nothing remains.
    """
    score_array, label_array = _as_pairs(scores, labels, need_both=threshold is None)
    quality = _as_scores(pair_quality, "pair_quality")
    if quality.shape != score_array.shape:
        raise ValueError(f"pair_quality and scores differ in shape: {quality.shape} vs {score_array.shape}")
    if not label_array.any():
        raise ValueError("labels contain no genuine pairs (True); FNMR is undefined")
    if threshold is None:
        threshold = threshold_at_fmr(score_array[~label_array], fmr)
    fractions = np.linspace(0.0, 0.5, 51) if discard_fractions is None else np.asarray(discard_fractions, dtype=np.float64)
    if fractions.ndim != 1 or np.any((fractions < 0) | (fractions > 1)):
        raise ValueError("discard_fractions must be a 1-D sequence of values in [0, 1]")
    genuine_scores = score_array[label_array]
    # Non-matches in ascending-quality order: the suffix after position k is what survives discarding k pairs.
    non_match = (genuine_scores < threshold)[np.argsort(quality[label_array], kind="stable")]
    remaining_errors = np.concatenate([np.cumsum(non_match[::-1])[::-1], [0]])
    n = genuine_scores.size
    discarded = np.floor(fractions * n + _COUNT_EPS).astype(np.int64)
    kept = n - discarded
    with np.errstate(invalid="ignore", divide="ignore"):
        fnmr = np.where(kept > 0, remaining_errors[discarded] / kept, np.nan)
    return {"discard": fractions, "fnmr": fnmr, "threshold": float(threshold)}


def edc_partial_auc(curve: dict[str, Any], max_discard: float = 0.2) -> float:
    """Raw trapezoid area under FNMR vs discard fraction on [0, max_discard]; lower is better.

    Not normalised: a flat curve at FNMR e gives e * max_discard, a perfect quality score (FNMR 0 throughout)
    gives 0. The FNMR at ``max_discard`` is linearly interpolated when it is not a sampled fraction.
    """
    discard = np.asarray(curve["discard"], dtype=np.float64)
    fnmr = np.asarray(curve["fnmr"], dtype=np.float64)
    if discard.size == 0 or discard.shape != fnmr.shape:
        raise ValueError("curve must hold equally long, non-empty 'discard' and 'fnmr' arrays")
    if np.any(np.diff(discard) <= 0):
        raise ValueError("curve['discard'] must be strictly increasing")
    if discard[0] != 0.0:
        raise ValueError(f"curve starts at discard {discard[0]}, cannot integrate from 0")
    if not 0.0 < max_discard <= discard[-1]:
        raise ValueError(f"max_discard must be in (0, {discard[-1]}], got {max_discard}")
    inside = discard < max_discard
    x = np.append(discard[inside], max_discard)
    y = np.append(fnmr[inside], np.interp(max_discard, discard, fnmr))
    return float(np.trapezoid(y, x))
