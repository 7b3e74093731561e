"""``frood calibrate``: fit the quality score's weights and temperature, and the model's match threshold.

Data: labelled photos (``identities.csv``: ``file,identity``) plus synthetic degradations of each
(:mod:`ood.degrade`). A sample's target is the share of the other clean photos of the same person it
still verifies against at the match threshold (FMR 1e-3), averaged with the stricter operating points
FMR 1e-4 and 1e-5 so that a face that only just verifies counts for less; ``q`` reads as "probability
this image verifies".

Steps:
1. Analyse every clean photo (largest face): features and signals.
2. Match threshold: cosine at FMR = 1e-3 over all clean impostor pairs, from a normal fit of the
   impostor scores (with ~1.7k impostor pairs the empirical 1e-3 quantile rests on 1–2 pairs; both
   numbers are written to the params file).
3. Degrade each photo, re-detect (a degradation that loses the face is a "no face" case, not a
   training sample), and compute signals (and feature stability for the thorough model).
4. Fit a standardised logistic regression on the soft targets, each weight bounded by domain
   knowledge (darker never raises trust; a face under 64 px must lower it); then fit the temperature ``T`` on out-of-fold logits
   (folds grouped by identity) by minimising the NLL.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import norm

from ood.degrade import DEGRADATIONS
from ood.quality import BASE_TERMS, THOROUGH_TERMS, LogitModel, QualityParams, params_path_for, term_values
from ood.signals import QualitySignals

log = logging.getLogger("frood.calibrate")
PARAMS_VERSION = "1"
TARGET_FMR = 1e-3
# A sample's target averages "verifies" over these operating points (FMR), so margin counts too.
TARGET_FMRS = (1e-3, 1e-4, 1e-5)


@dataclass
class Sample:
    file: str
    identity: str
    variant: str
    signals: QualitySignals
    feature: np.ndarray
    target: float = 0.0


def read_identities(data_dir: Path) -> dict[str, str]:
    with open(Path(data_dir) / "identities.csv", newline="", encoding="utf-8") as handle:
        return {row["file"]: row["identity"] for row in csv.DictReader(handle)}


def match_threshold_at_fmr(impostor_scores: np.ndarray, fmr: float = TARGET_FMR) -> dict[str, float]:
    """Normal-fit and empirical cosine thresholds at ``fmr``; the normal fit is the one used."""
    scores = np.asarray(impostor_scores, float)
    fitted = float(scores.mean() + norm.isf(fmr) * scores.std(ddof=1))
    ordered = np.sort(scores)[::-1]
    allowed = int(math.floor(fmr * len(scores)))
    empirical = float(ordered[min(allowed, len(ordered) - 1)])
    return {"normal_fit": fitted, "empirical": empirical, "impostor_pairs": len(scores), "empirical_fmr_at_fit": float((scores >= fitted).mean())}


def _iou(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def collect_samples(pipeline, data_dir: Path, thorough: bool = True, progress: bool = True) -> tuple[list[Sample], dict, dict]:
    """Clean and degraded samples with signals; returns (samples, threshold info, no-face counts)."""
    from tqdm import tqdm

    identities = read_identities(data_dir)
    files = sorted(identities)
    clean: dict[str, Sample] = {}
    decoded_images = {}
    for file in tqdm(files, desc="clean photos", disable=not progress):
        decoded = pipeline.decode(Path(data_dir) / file)
        result = pipeline.analyze(decoded, thorough=thorough)
        if not result.faces:
            log.warning("No face in clean photo %s; skipped", file)
            continue
        decoded_images[file] = (decoded, result.face)
        clean[file] = Sample(file, identities[file], "clean", result.face.signals, result.face.feature)

    names = sorted(clean)
    features = np.stack([clean[name].feature for name in names])
    similarity = features @ features.T
    upper = np.triu_indices(len(names), 1)
    same = np.array([clean[names[i]].identity == clean[names[j]].identity for i, j in zip(*upper)])
    impostors = similarity[upper][~same]
    threshold_info = match_threshold_at_fmr(impostors)
    thresholds = [match_threshold_at_fmr(impostors, fmr)["normal_fit"] for fmr in TARGET_FMRS]
    threshold_info["target_thresholds"] = dict(zip([str(fmr) for fmr in TARGET_FMRS], thresholds))

    def target(sample: Sample) -> float:
        references = [clean[name].feature for name in names if clean[name].identity == sample.identity and name != sample.file]
        if not references:
            return float("nan")
        scores = np.stack(references) @ sample.feature
        return float(np.mean([(scores >= threshold).mean() for threshold in thresholds]))

    samples: list[Sample] = []
    no_face: dict[str, int] = {}
    for file in tqdm(names, desc="degraded copies", disable=not progress):
        decoded, face = decoded_images[file]
        base_box = np.asarray(face.bbox) * decoded.scale
        samples.append(clean[file])
        for index, (variant, degrade) in enumerate(DEGRADATIONS.items()):
            degraded = degrade(decoded.rgb, base_box, index)
            result = pipeline.analyze(degraded, thorough=thorough)
            if not result.faces:
                no_face[variant] = no_face.get(variant, 0) + 1
                continue
            factor = degraded.shape[1] / decoded.rgb.shape[1]
            best = max(result.faces, key=lambda f: _iou(np.asarray(f.bbox) / factor, base_box))
            samples.append(Sample(file, identities[file], variant, best.signals, best.feature))
    for sample in samples:
        sample.target = target(sample)
    samples = [sample for sample in samples if not math.isnan(sample.target)]
    return samples, threshold_info, no_face


def _design(samples: list[Sample], terms: tuple[str, ...]) -> np.ndarray:
    return np.array([[term_values(sample.signals)[name] for name in terms] for sample in samples], float)


# Domain knowledge the fit must respect (bounds on the standardised weights): a worse value of a
# term never raises trust. One prior goes further: a face under 64 px must lower trust (weight at
# most -0.25). On our data the fit alone gives it 0, because the feature norm already drops for
# tiny faces; the prior makes "face too small" move the score as operators expect, at a measured
# cost of 0.006 in out-of-fold NLL (see docs/quality.md).
TERM_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "feature_norm": (0.0, None),
    "small_face": (None, -0.25),
    "det_logit": (0.0, None),
    "pose": (None, 0.0),
    "sharpness": (0.0, None),
    "dark": (None, 0.0),
    "bright": (None, 0.0),
    "spoof": (None, 0.0),
    "eyes_closed": (None, 0.0),
    "instability": (None, 0.0),
}


def fit_constrained_logistic(
    z: np.ndarray, p: np.ndarray, bounds: list[tuple[float | None, float | None]], l2: float = 1.0
) -> tuple[np.ndarray, float]:
    """Logistic regression on soft targets ``p`` with each weight bounded (L-BFGS-B, L2 penalty)."""
    count = len(p)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = theta[:-1], theta[-1]
        logits = z @ weights + bias
        q = 1 / (1 + np.exp(-logits))
        loss = np.logaddexp(0, logits) - p * logits
        gradient = q - p
        value = loss.mean() + 0.5 * l2 * (weights @ weights) / count
        grad = np.concatenate([z.T @ gradient / count + l2 * weights / count, [gradient.mean()]])
        return float(value), grad

    start = np.array([min(max(0.0, low if low is not None else 0.0), high if high is not None else 0.0) for low, high in bounds] + [0.0])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[*bounds, (None, None)])
    return result.x[:-1], float(result.x[-1])


def grouped_folds(groups: np.ndarray, folds: int) -> list[np.ndarray]:
    """Test-row indices per fold, every identity in exactly one fold (no person on both sides)."""
    unique = sorted(set(groups.tolist()))
    return [np.flatnonzero(np.isin(groups, unique[start::folds])) for start in range(min(folds, len(unique)))]


def fit_logit_model(samples: list[Sample], terms: tuple[str, ...], folds: int = 5) -> tuple[LogitModel, dict]:
    """Sign-constrained logistic fit on soft targets, then the temperature on out-of-fold logits."""
    x = _design(samples, terms)
    p = np.array([sample.target for sample in samples])
    groups = np.array([sample.identity for sample in samples])
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    bounds = [TERM_BOUNDS[name] for name in terms]

    out_of_fold = np.zeros(len(samples))
    for test in grouped_folds(groups, folds):
        train = np.setdiff1d(np.arange(len(samples)), test)
        weights, bias = fit_constrained_logistic(z[train], p[train], bounds)
        out_of_fold[test] = z[test] @ weights + bias

    def nll(temperature: float) -> float:
        q = np.clip(1 / (1 + np.exp(-out_of_fold / temperature)), 1e-7, 1 - 1e-7)
        return float(-(p * np.log(q) + (1 - p) * np.log(1 - q)).mean())

    temperature = float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)
    weights, bias = fit_constrained_logistic(z, p, bounds)
    model = LogitModel(terms, mean, scale, weights, bias, temperature)
    q_oof = 1 / (1 + np.exp(-out_of_fold / temperature))
    report = {
        "nll_uncalibrated": nll(1.0),
        "nll_calibrated": nll(temperature),
        "expected_calibration_error": expected_calibration_error(q_oof, p),
    }
    return model, report


def expected_calibration_error(q: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(q, edges) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(q[mask].mean() - p[mask].mean())
    return float(total)


def clean_beats_degraded(samples: list[Sample], model: LogitModel) -> dict[str, float]:
    """Per degradation, the share of photos whose clean face scores higher than its degraded copy
    (a copy that lost its face counts as a win: it would be refused as "no face")."""
    def score(sample: Sample) -> float:
        return 1.0 / (1.0 + math.exp(-model.logit(term_values(sample.signals)) / model.temperature))

    clean = {s.file: score(s) for s in samples if s.variant == "clean"}
    degraded = {(s.file, s.variant): score(s) for s in samples if s.variant != "clean"}
    return {
        variant: round(float(np.mean([clean[file] > degraded.get((file, variant), -1.0) for file in clean])), 3)
        for variant in DEGRADATIONS
    }


def calibrate(pipeline, data_dir: Path, output: Path | None = None, progress: bool = True) -> QualityParams:
    """Run the whole calibration and write the params file (default ``ood/params/quality-<model>.json``)."""
    samples, threshold_info, no_face = collect_samples(pipeline, data_dir, thorough=True, progress=progress)
    default_model, default_report = fit_logit_model(samples, BASE_TERMS)
    thorough_model, thorough_report = fit_logit_model(samples, THOROUGH_TERMS)
    variants: dict[str, list[float]] = {}
    for sample in samples:
        variants.setdefault(sample.variant, []).append(sample.target)
    ranking = clean_beats_degraded(samples, default_model)
    params = QualityParams(
        model=pipeline.model,
        version=PARAMS_VERSION,
        match_threshold=round(threshold_info["normal_fit"], 4),
        default=default_model,
        thorough=thorough_model,
        metadata={
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": str(Path(data_dir).name),
            "samples": len(samples),
            "clean_photos": sum(1 for s in samples if s.variant == "clean"),
            "threshold": threshold_info,
            "degradations_without_face": no_face,
            "mean_target_by_variant": {k: round(float(np.mean(v)), 3) for k, v in sorted(variants.items())},
            "clean_scores_higher_share": ranking,
            "default_fit": default_report,
            "thorough_fit": thorough_report,
            "thorough_samples": pipeline.settings.thorough_samples,
        },
    )
    params.save(output or params_path_for(pipeline.model))
    return params
