"""``frood calibrate``: fit the quality score's weights and temperature, and the model's match thresholds.

Data (see :mod:`evaluation.calibdata`): real photos split by identity/subject with a fixed seed — in-the-wild
photos, live and printed-photo webcam frames, faces under 64 light directions, masked and unmasked
faces — plus synthetic degradations of a seeded sample of the in-the-wild photos. Only the *fit* part
of each set is used here; the held-out third is for the tests and the reported numbers.

A sample's target is "this face still verifies": the share of the person's clean reference photos it
matches at the match threshold, averaged over the operating points FMR 1e-2, 1e-3 and 1e-4 so that a
face that only just verifies counts for less. Printed-photo recaptures are left out of this fit: the
recapture gate (the liveness model's verdict, engine/quality/reasons.py) caps their score, whatever they verify.

Steps:
1. Analyse every photo (thorough mode, main face), cached by path and variant (a refit takes seconds).
2. Match thresholds: empirical cosine quantiles at FMR 1e-3 and 1e-4 over all impostor pairs of the
   fit identities of the largest identity set (``wild``: ~400k pairs).
   Before step 3 the mask probe is fitted, and (:data:`FIT_CERTAINTY_HEAD`) the certainty head
   (``calibration/certainty.py``: ridge from the recognizer's last-map statistics to CR-FIQA's certainty ratio, on
   the in-the-wild fit identities); the quality fit reads their out-of-fold values.
3. Standardised logistic regression on the soft targets, each set weighted equally, each weight
   bounded by domain knowledge (darker never raises trust, a face under 64 px must lower it); the
   temperature ``T`` is fitted on out-of-fold logits (folds grouped by identity).
4. Once, at the end, the held-out report (:func:`held_out_report`): the finished parameters on the held-out
   identities (the thresholds' FMR with identity-level bootstrap 95 % intervals, the mask probe, the
   score's EDC and per-set numbers). Steps 1–3 (:func:`fit_params`) are given the fit identities' records
   only, so nothing chosen there (thresholds, weights, temperature, EDC moves, probe) can read held-out data.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from calibration.certainty import annotate_certainty, fit_certainty_head
from engine.quality.probes import PROBE_L2, FeatureProbe, fit_probe
from engine.quality.scorer import (
    BASE_TERMS,
    CERTAINTY_TERM,
    DEFAULT_DETECTOR,
    THOROUGH_TERMS,
    UNSUFFIXED_DETECTOR,
    LogitModel,
    QualityParams,
    params_path_for,
    term_values,
)
from evaluation import metrics
from evaluation.calibdata import (
    DEFAULT_HOLDOUT,
    DEFAULT_SEED,
    FaceRecord,
    ImageRecord,
    Photo,
    RecordCache,
    add_map_stats,
    collect_records,
    degradation_plan,
    discover,
    held_out,
)

log = logging.getLogger("frood.calibrate")
PARAMS_VERSION = "2"
MATCH_FMR = 1e-3
STRICT_FMR = 1e-4
# A sample's target averages "verifies" over these operating points (FMR), so margin counts too.
TARGET_FMRS = (1e-2, 1e-3, 1e-4)
# Share of the photos also analysed in thorough mode (only the thorough model's stability term needs it).
THOROUGH_SHARE = 0.1
# The certainty head (issue 28, calibration/certainty.py) is part of the score. Fitted to the raw certainty ratio it
# took over the feature norm's weight and gave very dark, 24-px and strongly blurred copies of trusted faces middling
# certainty, so they kept their trust (tests/test_quality_score.py failed); the head's targets for clearly degraded
# copies are now capped (calibration.certainty.HEAD_CAP_QUANTILE) and a reason never names the certainty term (it
# says the recognizer is unsure, not why). Over 5 identity splits 0.972 x the feature norm's EDC pAUC (1.012 x
# without the head, 0.950 x with the uncapped head); docs/quality.md, "Does the score predict recognition errors?".
FIT_CERTAINTY_HEAD = True


@dataclass
class Sample:
    record: ImageRecord
    face: FaceRecord
    target: float
    group: str  # the set (and "degraded") each weighted equally in the fit

    @property
    def identity(self) -> str:
        return self.record.photo.identity


def threshold_set(records: list[ImageRecord]) -> str:
    """The identity set the match threshold is fitted on: ``wild`` if present, else the largest clean one."""
    sets = [r.photo.set for r in records if r.variant == "clean" and r.photo.kind == "clean"]
    if "wild" in sets:
        return "wild"
    if not sets:
        raise ValueError("no clean labelled photos to fit a match threshold on")
    return max(set(sets), key=sets.count)


def clean_features(records: list[ImageRecord], set_name: str, identities: set[str] | None, exclude: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features, identity labels) of the main faces of a set's clean photos, restricted to ``identities``."""
    rows = [
        r
        for r in records
        if r.variant == "clean"
        and r.photo.set == set_name
        and r.face is not None
        and r.photo.kind == "clean"
        and (identities is None or r.photo.identity in identities)
        and not (exclude and r.photo.identity in exclude)
    ]
    if not rows:
        return np.zeros((0, 0), np.float32), np.array([])
    return np.stack([r.face.feature for r in rows]), np.array([r.photo.identity for r in rows])


def impostor_scores(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(impostor cosines, genuine cosines) over all pairs (:func:`evaluation.metrics.pair_similarities`)."""
    values, same = metrics.pair_similarities(features, labels)
    return values[~same], values[same]


def empirical_threshold(impostors: np.ndarray, fmr: float) -> float:
    """The lowest cosine whose share of impostor scores at or above it is at most ``fmr``."""
    ordered = np.sort(np.asarray(impostors, float))[::-1]
    allowed = int(math.floor(fmr * len(ordered)))
    if allowed < 1:
        raise ValueError(f"{len(ordered)} impostor pairs cannot measure FMR {fmr:g} (need ≥ {math.ceil(1 / fmr)})")
    return float(np.nextafter(ordered[allowed - 1], np.inf)) if allowed < len(ordered) else float(ordered[-1])


def grouped_fmr_ci(features: np.ndarray, labels: np.ndarray, threshold: float, n_boot: int = 500, seed: int = 0) -> dict[str, float]:
    """FMR at ``threshold`` over all impostor pairs, with a 95 % interval from resampling *identities*
    (pairs sharing a person are not independent, so a pair-level bootstrap would be too narrow)."""
    unique, index = np.unique(labels, return_inverse=True)
    k = len(unique)
    similarity = features @ features.T
    above = (similarity >= threshold).astype(float)
    onehot = np.eye(k)[index]
    photos = onehot.sum(axis=0)
    pair_counts = np.outer(photos, photos)  # pairs between identity i and j (both orders)
    hits = onehot.T @ above @ onehot  # pairs at or above threshold between identity i and j (both orders)
    off = ~np.eye(k, dtype=bool)
    fmr = float(hits[off].sum() / pair_counts[off].sum())
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, k, k), minlength=k).astype(float)
        weight = np.outer(counts, counts) * off
        values.append((weight * hits).sum() / (weight * pair_counts).sum())
    low, high = np.quantile(values, [0.025, 0.975])
    return {"fmr": fmr, "ci95": [float(low), float(high)], "impostor_pairs": int(pair_counts[off].sum() / 2), "identities": k}


def fit_thresholds(fit_records: list[ImageRecord]) -> dict:
    """Match thresholds from the fit identities' impostor pairs (see module doc); ``_values`` holds them unrounded."""
    set_name = threshold_set(fit_records)
    fit_x, fit_y = clean_features(fit_records, set_name, None)
    impostors, _ = impostor_scores(fit_x, fit_y)
    info: dict = {"set": set_name, "fit_photos": len(fit_y), "fit_impostor_pairs": len(impostors)}
    thresholds = {}
    for fmr in sorted({MATCH_FMR, STRICT_FMR, *TARGET_FMRS}, reverse=True):
        try:
            thresholds[fmr] = empirical_threshold(impostors, fmr)
        except ValueError:
            # Too few pairs for the empirical quantile: a normal fit of the impostor scores instead.
            from scipy.stats import norm

            thresholds[fmr] = float(impostors.mean() + norm.isf(fmr) * impostors.std(ddof=1))
    info["thresholds"] = {f"{fmr:g}": round(value, 4) for fmr, value in thresholds.items()}
    info["_values"] = thresholds
    return info


def thresholds_held_out(held_records: list[ImageRecord], set_name: str, thresholds: dict[float, float], n_boot: int = 500) -> dict | None:
    """The FMR (identity-bootstrap 95 % interval) and TAR the fitted thresholds reach on held-out identities."""
    held_x, held_y = clean_features(held_records, set_name, None)
    if len(set(held_y.tolist())) < 2:
        return None
    _, held_genuine = impostor_scores(held_x, held_y)
    report: dict = {"photos": len(held_y), "genuine_pairs": len(held_genuine)}
    for key, fmr in (("at_match_threshold", MATCH_FMR), ("at_strict_threshold", STRICT_FMR)):
        measured = grouped_fmr_ci(held_x, held_y, thresholds[fmr], n_boot)
        report[key] = measured | {"target_fmr": fmr, "tar": float((held_genuine >= thresholds[fmr]).mean())}
    return report


def assign_targets(records: list[ImageRecord], thresholds: dict[float, float]) -> list[Sample]:
    """Soft targets: share of the person's clean reference photos matched (prints left out); see module doc."""
    references: dict[str, list[tuple[str, np.ndarray]]] = {}
    for record in records:
        if record.variant == "clean" and record.photo.reference and record.face is not None:
            references.setdefault(record.photo.identity, []).append((str(record.photo.path), record.face.feature))
    levels = [thresholds[fmr] for fmr in TARGET_FMRS]
    samples = []
    for record in records:
        face = record.face
        if face is None:
            continue
        refs = [feature for path, feature in references.get(record.photo.identity, []) if path != str(record.photo.path)]
        # A print's score is set by the recapture gate (engine/quality/reasons.py), not by the fitted terms: it
        # still verifies against its owner, which is exactly why it must not be trusted.
        if record.photo.kind == "print" or not refs:
            continue
        scores = np.stack(refs) @ face.feature
        target = float(np.mean([(scores >= level).mean() for level in levels]))
        group = "degraded" if record.variant != "clean" else record.photo.set
        samples.append(Sample(record, face, target, group))
    return samples


# Mask probe labels (engine/quality/probes.py): a covered lower face is a masked photo of the masked set or the
# synthetic lower-face occlusion; every other face is bare. Covered eyes are neither (another attribute).
MASK_POSITIVE = ("masked:masked", "degraded:occlusion_lower")
MASK_UNLABELLED = ("degraded:occlusion_eyes",)


def probe_group(record: ImageRecord) -> str:
    return f"degraded:{record.variant}" if record.variant != "clean" else f"{record.photo.set}:{record.photo.kind}"


def fit_mask_probe(fit_records: list[ImageRecord], folds: int = 5) -> tuple[FeatureProbe, dict]:
    """The mask probe on the fit identities' main faces, each group weighted equally; sets each of these
    records' ``mask_prob`` out-of-fold (folds grouped by identity), what the quality fit then reads.

    Returns the probe and its fit facts (:func:`mask_probe_held_out` adds the held-out numbers)."""
    fit = [record for record in fit_records if record.face is not None]
    groups = np.array([probe_group(record) for record in fit])
    labelled = ~np.isin(groups, MASK_UNLABELLED)
    labels = np.isin(groups, MASK_POSITIVE).astype(float)
    counts = {name: int((groups[labelled] == name).sum()) for name in set(groups[labelled].tolist())}
    weights = np.array([1.0 / counts[name] if keep else 0.0 for name, keep in zip(groups, labelled)])
    features = np.stack([record.face.feature for record in fit])
    identities = np.array([record.photo.identity for record in fit])
    for test in grouped_folds(identities, folds):
        train = np.setdiff1d(np.flatnonzero(labelled), test)
        fold_probe = fit_probe(features[train], labels[train], weights[train])
        for row, probability in zip(test, fold_probe.probabilities(features[test])):
            fit[row].face.signals.mask_prob = float(probability)
    probe = fit_probe(features[labelled], labels[labelled], weights[labelled])
    return probe, {"l2": PROBE_L2, "fit_faces": int(labelled.sum())}


def mask_probe_held_out(probe: FeatureProbe, held_records: list[ImageRecord]) -> dict:
    """Sets the held-out records' ``mask_prob`` from the final probe (as the pipeline would), and reports per group."""
    held = [record for record in held_records if record.face is not None]
    for record, probability in zip(held, probe.probabilities(np.stack([record.face.feature for record in held])) if held else []):
        record.face.signals.mask_prob = float(probability)
    by_group: dict[str, list[float]] = {}
    for record in held:
        by_group.setdefault(probe_group(record), []).append(record.face.signals.mask_prob)
    report = {"held_out_share_above_0_5": {name: [round(float(np.mean(np.array(v) >= 0.5)), 4), len(v)] for name, v in sorted(by_group.items())}}
    masked, bare = by_group.get("masked:masked", []), by_group.get("masked:unmasked", [])
    if masked and bare:
        report["held_out_auroc_masked_vs_unmasked"] = round(float(np.mean([m > b for m in masked for b in bare])), 4)
    return report


def _design(samples: list[Sample], terms: tuple[str, ...]) -> np.ndarray:
    """Term values per sample; a face without a certainty value gets the column's mean (the scorer's neutral)."""
    x = np.array([[term_values(sample.face.signals).get(name, np.nan) for name in terms] for sample in samples], float)
    missing = np.isnan(x)
    if missing.any():
        x[missing] = np.take(np.nanmean(x, axis=0), np.nonzero(missing)[1])
    return x


# Domain knowledge the fit must respect (bounds on the standardised weights): a worse value of a
# term never raises trust. Two priors go further: a face under 64 px and a dark face must lower trust
# (weights at most -0.5 and -0.25, tightened by TRUST_PRIORS below), so that "face too small" and "too
# dark" move the score as operators expect (see docs/quality.md).
TERM_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "feature_norm": (0.0, None),
    "small_face": (None, -0.5),
    "det_logit": (0.0, None),
    "pose": (None, 0.0),
    "sharpness": (0.0, None),
    "dark": (None, -0.25),
    "bright": (None, 0.0),
    "eyes_closed": (None, 0.0),
    "truncation": (None, 0.0),
    "occlusion": (None, 0.0),
    "mask": (None, 0.0),
    "instability": (None, 0.0),
    CERTAINTY_TERM: (0.0, None),  # a higher predicted certainty ratio never lowers trust
}


def fit_constrained_logistic(
    z: np.ndarray, p: np.ndarray, bounds: list[tuple[float | None, float | None]], l2: float = 1.0, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Weighted logistic regression on soft targets ``p`` with each weight bounded (L-BFGS-B, L2 penalty)."""
    w = np.ones(len(p)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    count = len(p)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, bias = theta[:-1], theta[-1]
        logits = z @ coef + bias
        q = 1 / (1 + np.exp(-logits))
        loss = np.logaddexp(0, logits) - p * logits
        gradient = (q - p) * w
        value = float(loss @ w) + 0.5 * l2 * (coef @ coef) / count
        grad = np.concatenate([z.T @ gradient + l2 * coef / count, [gradient.sum()]])
        return value, grad

    start = np.array([min(max(0.0, low if low is not None else 0.0), high if high is not None else 0.0) for low, high in bounds] + [0.0])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[*bounds, (None, None)])
    return result.x[:-1], float(result.x[-1])


def grouped_folds(groups: np.ndarray, folds: int) -> list[np.ndarray]:
    """Test-row indices per fold, every identity in exactly one fold (no person on both sides)."""
    unique = sorted(set(groups.tolist()))
    return [np.flatnonzero(np.isin(groups, unique[start::folds])) for start in range(min(folds, len(unique)))]


def balanced_weights(samples: list[Sample]) -> np.ndarray:
    """Each group (set, or "degraded") carries the same total weight, so 360 print frames are not
    outvoted by 900 clean celebrity photos and vice versa."""
    groups = np.array([sample.group for sample in samples])
    counts = {name: (groups == name).sum() for name in set(groups.tolist())}
    return np.array([1.0 / counts[name] for name in groups])


# Terms whose weights the EDC step may move (see :func:`tune_for_edc`). The feature norm is the scale
# anchor (its weight stays as the logistic fit set it); the recapture, truncation, occlusion and exposure
# terms are judged by their own data (prints, cut faces, masks, dark and over-exposed copies), not by
# in-the-wild pairs where they rarely vary. The certainty head was fitted for exactly this criterion.
EDC_TERMS = ("small_face", "det_logit", "pose", "sharpness", "eyes_closed", CERTAINTY_TERM)
EDC_FMR = 1e-2
EDC_MAX_DISCARD = 0.2


@dataclass
class GenuinePairs:
    """Genuine pairs of clean in-the-wild samples (indices into the sample list) and whether each fails
    to match at the FMR-1e-2 threshold of the fit identities: what the EDC criterion counts."""

    first: np.ndarray
    second: np.ndarray
    non_match: np.ndarray
    identity: np.ndarray  # the pair's person, for grouped checks

    def subset(self, keep_rows: np.ndarray) -> GenuinePairs:
        """Pairs whose both samples are in ``keep_rows`` (sorted sample indices), re-indexed into them."""
        position = -np.ones(int(max(keep_rows.max(initial=0), self.first.max(initial=0), self.second.max(initial=0))) + 1, int)
        position[keep_rows] = np.arange(len(keep_rows))
        inside = (position[self.first] >= 0) & (position[self.second] >= 0)
        return GenuinePairs(position[self.first[inside]], position[self.second[inside]], self.non_match[inside], self.identity[inside])


def genuine_wild_pairs(samples: list[Sample], threshold: float) -> GenuinePairs:
    rows = [i for i, sample in enumerate(samples) if sample.record.variant == "clean" and sample.record.photo.set in ("wild", "generic")]
    by_identity: dict[str, list[int]] = {}
    for row in rows:
        by_identity.setdefault(samples[row].identity, []).append(row)
    first, second, identity = [], [], []
    for name, members in by_identity.items():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                first.append(members[x])
                second.append(members[y])
                identity.append(name)
    first_a, second_a = np.array(first, int), np.array(second, int)
    cosine = np.array([float(samples[i].face.feature @ samples[j].face.feature) for i, j in zip(first_a, second_a)])
    return GenuinePairs(first_a, second_a, cosine < threshold, np.array(identity))


def edc_pauc(logits: np.ndarray, pairs: GenuinePairs, max_discard: float = EDC_MAX_DISCARD) -> float:
    """EDC pAUC(0–``max_discard``) of per-sample logits over genuine pairs at a fixed threshold (as
    ``evaluation.metrics.edc_curve`` + ``edc_partial_auc``: pair quality = the lower of the two)."""
    count = len(pairs.non_match)
    if count == 0:
        return 0.0
    pair_quality = np.minimum(logits[pairs.first], logits[pairs.second])
    ordered = pairs.non_match[np.argsort(pair_quality, kind="stable")]
    remaining = np.concatenate([np.cumsum(ordered[::-1])[::-1], [0]])
    fractions = np.linspace(0.0, max_discard, int(round(max_discard * 100)) + 1)
    discarded = np.floor(fractions * count + 1e-9).astype(int)
    fnmr = remaining[discarded] / (count - discarded)
    return float(np.trapezoid(fnmr, fractions))


def tune_for_edc(z: np.ndarray, coef: np.ndarray, terms: tuple[str, ...], bounds: list, pairs: GenuinePairs, sweeps: int = 6) -> np.ndarray:
    """Coordinate search of the :data:`EDC_TERMS` weights that lowers the EDC pAUC of the fit pairs.

    The logistic fit predicts "verifies against the person's references", averaged over six data groups;
    EDC asks something narrower: rank the in-the-wild pairs that fail at FMR 1e-2 lowest. A move is kept
    only when it lowers the pAUC on all pairs *and* in at least 4 of 5 identity folds of them, so one
    person's pairs cannot steer it (a guard against fitting noise)."""
    if len(pairs.non_match) == 0 or not pairs.non_match.any():
        return coef
    folds = [np.isin(pairs.identity, names) for names in np.array_split(np.unique(pairs.identity), 5)]
    fold_pairs = [GenuinePairs(pairs.first[m], pairs.second[m], pairs.non_match[m], pairs.identity[m]) for m in folds if m.any()]

    def scores(weights: np.ndarray) -> tuple[float, list[float]]:
        logits = z @ weights
        return edc_pauc(logits, pairs), [edc_pauc(logits, fold) for fold in fold_pairs]

    best = coef.copy()
    best_total, best_folds = scores(best)
    movable = [terms.index(name) for name in EDC_TERMS if name in terms]
    for _ in range(sweeps):
        improved = False
        for index in movable:
            low, high = bounds[index]
            for step in (0.4, -0.4, 0.2, -0.2, 0.1, -0.1, 0.05, -0.05):
                trial = best.copy()
                trial[index] = float(np.clip(trial[index] + step, low if low is not None else -np.inf, high if high is not None else np.inf))
                if trial[index] == best[index]:
                    continue
                total, per_fold = scores(trial)
                better_folds = sum(new <= old for new, old in zip(per_fold, best_folds))
                if total < best_total - 1e-6 and better_folds >= min(4, len(per_fold)):
                    best, best_total, best_folds, improved = trial, total, per_fold, True
        if not improved:
            break
    return best


def refit_bias(z: np.ndarray, coef: np.ndarray, p: np.ndarray, weights: np.ndarray) -> float:
    """The intercept that makes the weighted mean prediction right again after the weights moved."""
    w = weights / weights.sum()
    base = z @ coef

    def nll(bias: float) -> float:
        logits = base + bias
        return float((w * (np.logaddexp(0, logits) - p * logits)).sum())

    return float(minimize_scalar(nll, bounds=(-30.0, 30.0), method="bounded").x)


def fit_weights(
    z: np.ndarray, p: np.ndarray, bounds: list, weights: np.ndarray, terms: tuple[str, ...], pairs: GenuinePairs | None
) -> tuple[np.ndarray, float]:
    """Logistic fit on the soft targets, then the EDC step on the in-the-wild pairs, then the intercept."""
    coef, bias = fit_constrained_logistic(z, p, bounds, weights=weights)
    if pairs is None or len(pairs.non_match) == 0:
        return coef, bias
    tuned = tune_for_edc(z, coef, terms, bounds, pairs)
    if np.array_equal(tuned, coef):
        return coef, bias
    return tuned, refit_bias(z, tuned, p, weights)


def fit_logit_model(
    samples: list[Sample],
    terms: tuple[str, ...],
    folds: int = 5,
    edc_threshold: float | None = None,
    term_bounds: dict[str, tuple[float | None, float | None]] = TERM_BOUNDS,
) -> tuple[LogitModel, dict]:
    """Sign-constrained weighted logistic fit on soft targets, the EDC step on in-the-wild pairs (when
    ``edc_threshold``, the fit identities' FMR-1e-2 cosine, is given), then the temperature on
    out-of-fold logits."""
    x = _design(samples, terms)
    p = np.array([sample.target for sample in samples])
    weights = balanced_weights(samples)
    identities = np.array([sample.identity for sample in samples])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    bounds = [term_bounds[name] for name in terms]
    pairs = genuine_wild_pairs(samples, edc_threshold) if edc_threshold is not None else None

    out_of_fold = np.zeros(len(samples))
    for test in grouped_folds(identities, folds):
        train = np.setdiff1d(np.arange(len(samples)), test)
        coef, bias = fit_weights(z[train], p[train], bounds, weights[train], terms, pairs.subset(train) if pairs is not None else None)
        out_of_fold[test] = z[test] @ coef + bias
    w = weights / weights.sum()

    def nll(temperature: float) -> float:
        q = np.clip(1 / (1 + np.exp(-out_of_fold / temperature)), 1e-7, 1 - 1e-7)
        return float(-(w * (p * np.log(q) + (1 - p) * np.log(1 - q))).sum())

    temperature = float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)
    logistic_coef, _ = fit_constrained_logistic(z, p, bounds, weights=weights)
    coef, bias = fit_weights(z, p, bounds, weights, terms, pairs)
    model = LogitModel(terms, mean, scale, coef, bias, temperature)
    q_oof = 1 / (1 + np.exp(-out_of_fold / temperature))
    report = {
        "nll_uncalibrated": round(nll(1.0), 4),
        "nll_calibrated": round(nll(temperature), 4),
        "expected_calibration_error": round(expected_calibration_error(q_oof, p, w), 4),
    }
    if pairs is not None and len(pairs.non_match):
        report["edc_fit_pairs"] = {
            "genuine_pairs": int(len(pairs.non_match)),
            "non_match_at_fmr_1e-2": int(pairs.non_match.sum()),
            "pauc_logistic_only": round(edc_pauc(z @ logistic_coef, pairs), 5),
            "pauc_after_edc_step": round(edc_pauc(z @ coef, pairs), 5),
            "logistic_weights": dict(zip(terms, np.round(logistic_coef, 3).tolist())),
        }
    return model, report


def expected_calibration_error(q: np.ndarray, p: np.ndarray, weights: np.ndarray | None = None, bins: int = 10) -> float:
    w = np.ones(len(q)) / len(q) if weights is None else weights / weights.sum()
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(q, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            share = w[mask].sum()
            total += share * abs(np.average(q[mask], weights=w[mask]) - np.average(p[mask], weights=w[mask]))
    return float(total)


def split_summary(photos: list[Photo], holdout_ids: set[str]) -> dict:
    """Per set: photo and identity counts on each side, and the held-out identity names."""
    summary = {}
    for set_name in sorted({photo.set for photo in photos}):
        members = [photo for photo in photos if photo.set == set_name]
        identities = sorted({photo.identity for photo in members})
        held = sorted(identity for identity in identities if identity in holdout_ids)
        summary[set_name] = {
            "photos": len(members),
            "identities": len(identities),
            "held_out_identities": [identity.split(":", 1)[1] for identity in held],
            "held_out_photos": sum(photo.identity in holdout_ids for photo in members),
        }
    return summary


def detector_of(pipeline) -> str:
    """The name of the pipeline's detector: calibrations, their files and their caches are per detector."""
    return getattr(pipeline.detector, "name", DEFAULT_DETECTOR)


def default_cache_path(pipeline) -> Path:
    """``build/calib-cache/<model>-<detector>.pkl``; MTCNN's is ``<model>.pkl`` (the cached analyses hold each photo's
    detections, so one detector must not read another's)."""
    detector = detector_of(pipeline)
    name = pipeline.model if detector == UNSUFFIXED_DETECTOR else f"{pipeline.model}-{detector}"
    return Path("build/calib-cache") / f"{name}.pkl"


def calibrate(
    pipeline,
    root: Path | None = None,
    data: Path | None = None,
    output: Path | None = None,
    seed: int = DEFAULT_SEED,
    holdout: float = DEFAULT_HOLDOUT,
    degrade_photos: int = 200,
    degrade_per_photo: int = 3,
    dark_per_identity: int | None = 30,
    cache_path: Path | None = None,
    spoof_per_subject: int | None = None,
    progress: bool = True,
    certainty_head: bool = FIT_CERTAINTY_HEAD,
) -> QualityParams:
    """Run the whole calibration and write the params file (default ``engine/quality/params/quality-<model>-<detector>.json``,
    MTCNN's ``quality-<model>.json``: :func:`engine.quality.scorer.params_path_for`);
    ``certainty_head`` adds the certainty head and its term (see :data:`FIT_CERTAINTY_HEAD`)."""
    photos = discover(root, data, dark_per_identity, seed, spoof_per_subject)
    if not photos:
        raise ValueError("no calibration photos found: give --data-root (wild/ spoof/ dark/ masked/ faces/) or --data (identities.csv)")
    holdout_ids = held_out(photos, seed, holdout)
    plan = degradation_plan(photos, degrade_photos, degrade_per_photo, seed)
    cache = RecordCache(cache_path)
    complete, pipeline.complete_signals = pipeline.complete_signals, True  # the fit needs every signal of every face
    try:
        records = collect_records(pipeline, photos, cache, plan, progress, thorough_share=THOROUGH_SHARE)
    finally:
        pipeline.complete_signals = complete
    if certainty_head and (added := add_map_stats(pipeline.embedder, records, cache)):  # records cached before the hook existed
        log.info("Map statistics added to %d cached records", added)
    detector = detector_of(pipeline)  # the signals depend on it: each detector gets its own file
    return fit_from_records(
        records,
        photos,
        holdout_ids,
        pipeline.model,
        pipeline.config.thorough_samples,
        output or params_path_for(pipeline.model, detector),
        root,
        data,
        seed,
        holdout,
        {
            "degrade_photos": degrade_photos,
            "degrade_per_photo": degrade_per_photo,
            "dark_per_identity": dark_per_identity,
            "spoof_per_subject": spoof_per_subject,
            "thorough_share": THOROUGH_SHARE,
            "certainty_head": certainty_head,
            "detector": detector,
        },
        certainty_head,
    )


# Priors that must take trust away, each tightened on a ladder. The "dark" and "small_face" weights are bounded
# (darker or smaller never raises trust); with YuNet's boxes O-Net stays confident on very dark and 24-px faces (its
# probability no longer falls with the light or the size), so those terms must take the trust away alone, and their
# first bounds let a sixth of very dark and over a third of 24-px copies keep it. The fit takes, term by term, the
# weakest bound on its ladder with which the fit identities' damaged copies of their own trusted clean photos lose
# trust and name the term's reason at least as often as COPIES_LOSING_TRUST: the bar tests/test_quality_score.py
# holds held-out faces to (issue 23, docs/quality.md). term: (damage, reason, ladder)
TRUST_PRIORS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "dark": ("very_dark", "too_dark", (-0.25, -0.5, -0.75, -1.0, -1.5)),
    "small_face": ("downscale_24", "face_too_small", (-0.5, -0.75, -1.0, -1.5)),
}
COPIES_LOSING_TRUST = 0.9


def copies_losing_trust(params: QualityParams, records: list[ImageRecord]) -> dict[str, tuple[float, int]]:
    """Per trust prior (:data:`TRUST_PRIORS`): of its damage copies (``evaluation.degrade``) whose clean photo the
    params trust (the scorer's trust threshold, 0.6) and whose face is still found, the share scored below trust that
    name the prior's reason, and how many there were."""
    from engine.quality.scorer import QualityScorer

    scorer = QualityScorer(params)

    def scored(record: ImageRecord):
        return scorer.score(replace(record.face.signals, stability=None))

    trust = scorer.trust_threshold
    trusted = {record.photo.path for record in records if record.variant == "clean" and record.face is not None and scored(record).score >= trust}
    shares: dict[str, tuple[float, int]] = {}
    for term, (damage, reason, _) in TRUST_PRIORS.items():
        copies = [record for record in records if record.variant == damage and record.face is not None and record.photo.path in trusted]
        lost = [(result := scored(record)).score < trust and reason in result.reasons for record in copies]
        shares[term] = (float(np.mean(lost)) if lost else 1.0, len(copies))
    return shares


def fit_params(fit_records: list[ImageRecord], model_name: str, certainty_head: bool = FIT_CERTAINTY_HEAD) -> tuple[QualityParams, dict[str, float]]:
    """Everything chosen by the calibration — mask probe, certainty head (when asked for, the default, and the records carry map
    statistics), match thresholds, targets, weights, EDC moves, temperatures — from the fit identities' records
    alone (the caller splits; this never sees held-out ones).

    Returns the params (metadata: the fit's own facts) and the unrounded thresholds by FMR."""
    mask_probe, mask_probe_report = fit_mask_probe(fit_records)
    # Before the quality fit: it reads the head's out-of-fold values (set on the records here).
    certainty_report: dict = {}
    head = None
    if certainty_head:
        head, certainty_report = fit_certainty_head(fit_records)
    else:
        for record in fit_records:  # records shared with an earlier fit that had a head
            if record.face is not None:
                record.face.signals.certainty = None
    extra = (CERTAINTY_TERM,) if head is not None else ()
    threshold_info = fit_thresholds(fit_records)
    thresholds = threshold_info.pop("_values")
    samples = assign_targets(fit_records, thresholds)
    thorough_samples_ = [sample for sample in samples if sample.face.signals.stability is not None]
    groups: dict[str, list[float]] = {}
    for sample in samples:
        key = f"degraded:{sample.record.variant}" if sample.group == "degraded" else f"{sample.group}:{sample.record.photo.kind}"
        groups.setdefault(key, []).append(sample.target)
    rungs = dict.fromkeys(TRUST_PRIORS, 0)
    tried: list[dict] = []
    while True:
        bounds = TERM_BOUNDS | {term: (None, ladder[rungs[term]]) for term, (_, _, ladder) in TRUST_PRIORS.items()}
        default_model, default_report = fit_logit_model(samples, (*BASE_TERMS, *extra), edc_threshold=thresholds[EDC_FMR], term_bounds=bounds)
        thorough_model, thorough_report = fit_logit_model(thorough_samples_, (*THOROUGH_TERMS, *extra), edc_threshold=thresholds[EDC_FMR], term_bounds=bounds)
        params = QualityParams(
            model=model_name,
            version=PARAMS_VERSION,
            match_threshold=round(thresholds[MATCH_FMR], 4),
            default=default_model,
            thorough=thorough_model,
            metadata={
                "fit_samples": len(samples),
                "match_threshold_fmr": MATCH_FMR,
                "strict_match_threshold": round(thresholds[STRICT_FMR], 4),
                "strict_match_threshold_fmr": STRICT_FMR,
                "threshold": threshold_info,
                "mean_target_by_group": {key: [round(float(np.mean(values)), 3), len(values)] for key, values in sorted(groups.items())},
                "default_fit": default_report,
                "thorough_fit": thorough_report,
                "mask_probe": mask_probe_report,
                **({"certainty_head": certainty_report} if head is not None else {}),
            },
            mask_probe=mask_probe,
            certainty_head=head,
        )
        step: dict = {"bounds": {term: bounds[term][1] for term in TRUST_PRIORS}}
        failing = []
        for term, (share, copies) in copies_losing_trust(params, fit_records).items():
            step[term] = {"fit_copies_losing_trust": round(share, 4), "copies": copies}
            if share < COPIES_LOSING_TRUST and rungs[term] + 1 < len(TRUST_PRIORS[term][2]):
                failing.append(term)
        tried.append(step)
        if not failing:
            break
        for term in failing:
            rungs[term] += 1
    params.metadata["trust_priors"] = {
        "bar": COPIES_LOSING_TRUST,
        "copies": {term: {"damage": damage, "reason": reason, "ladder": list(ladder)} for term, (damage, reason, ladder) in TRUST_PRIORS.items()},
        "chosen": tried[-1]["bounds"],
        "tried": tried,
    }
    return params, thresholds


def held_out_report(params: QualityParams, held_records: list[ImageRecord], thresholds: dict[float, float]) -> dict:
    """The finished parameters measured once on the held-out identities' records (default mode): the
    thresholds' FMR, the mask probe, and the score's per-set numbers, for the README and ``frood eval --heldout``.
    Called after :func:`fit_params`; nothing it computes feeds back into the params' fitted values."""
    from engine.quality.scorer import QualityScorer
    from evaluation.heldout import report_from_records, scored_from_records, wild_edc
    from evaluation.report import jsonable

    probe_report = mask_probe_held_out(params.mask_probe, held_records) if params.mask_probe is not None else {}
    annotate_certainty(params.certainty_head, held_records)  # as the pipeline's scorer would
    thresholds_report = thresholds_held_out(held_records, params.metadata["threshold"]["set"], thresholds)
    scorer = QualityScorer(params)
    identities = {record.photo.identity for record in held_records}
    report = report_from_records(held_records, identities, scorer)
    # The recapture rule ranks the in-the-wild photos fr_liveness flags (about 3 %) last although most still
    # verify, which EDC counts against the score; the same comparison without them, for every measure alike:
    wild = [r for r in held_records if r.variant == "clean" and r.photo.set in ("wild", "generic")]
    unflagged = [s for s in scored_from_records(wild, scorer) if "suspected_recapture" not in s.reasons]
    if unflagged:
        report["wild_without_flagged_recaptures"] = wild_edc(unflagged)
    return {"mask_probe": probe_report, "threshold": thresholds_report, "report": jsonable(report)}


def fit_from_records(
    records: list[ImageRecord],
    photos: list[Photo],
    holdout_ids: set[str],
    model_name: str,
    thorough_samples: int,
    output: Path | None,
    root: Path | None,
    data: Path | None,
    seed: int,
    holdout: float,
    options: dict,
    certainty_head: bool = FIT_CERTAINTY_HEAD,
) -> QualityParams:
    """Fit on the fit identities (:func:`fit_params`), then the held-out report once (:func:`held_out_report`);
    writes the file."""
    fit_records = [record for record in records if record.photo.identity not in holdout_ids]
    held_records = [record for record in records if record.photo.identity in holdout_ids]
    params, thresholds = fit_params(fit_records, model_name, certainty_head)
    fitted = params.metadata
    no_face: dict[str, int] = {}
    for record in records:
        if record.face is None:
            key = record.variant if record.variant != "clean" else f"{record.photo.set}:{record.photo.kind}"
            no_face[key] = no_face.get(key, 0) + 1
    params.metadata = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": {"root": str(root) if root else None, "identities_folder": str(data) if data else None},
        "split": {"by": "identity/subject, per set", "seed": seed, "held_out_share": round(holdout, 4), "sets": split_summary(photos, holdout_ids)},
        "options": options,
        "fit_samples": fitted["fit_samples"],
        "match_threshold_fmr": fitted["match_threshold_fmr"],
        "strict_match_threshold": fitted["strict_match_threshold"],
        "strict_match_threshold_fmr": fitted["strict_match_threshold_fmr"],
        "threshold": fitted["threshold"],
        "no_face": no_face,
        "mean_target_by_group": fitted["mean_target_by_group"],
        "default_fit": fitted["default_fit"],
        "thorough_fit": fitted["thorough_fit"],
        "thorough_samples": thorough_samples,
        "mask_probe": fitted["mask_probe"],
        "trust_priors": fitted["trust_priors"],
    }
    if "certainty_head" in fitted:
        params.metadata["certainty_head"] = fitted["certainty_head"] | {
            "data_root": str(root) if root else None,
            "split": {"by": "identity, per set", "seed": seed, "held_out_share": round(holdout, 4), "held_out_identities_never_seen": True},
        }
    # The held-out numbers, once, from the same analyses; stored where `frood eval --heldout` and the docs read them.
    held = held_out_report(params, held_records, thresholds)
    if held["threshold"] is not None:
        params.metadata["threshold"]["held_out"] = held["threshold"]
    params.metadata["mask_probe"].update(held["mask_probe"])
    params.metadata["held_out_report"] = held["report"]
    params.save(output or params_path_for(model_name, options.get("detector", UNSUFFIXED_DETECTOR)))
    return params
