"""The certainty head's target and fit (issue 28): CR-FIQA's certainty ratio, learned by ridge on the fit identities.

A quality score should rank the photos that will fail to verify lowest (ISO/IEC 29794-1's EDC). The target
here is about recognition itself: CR-FIQA's certainty ratio, the photo's cosine to its own class centre
(leave-one-out) over 1 + its cosine to the nearest other class centre, class centres from the fit identities'
clean in-the-wild photos (a degraded copy's source photo is left out of its own centre). A ridge regression
(``engine.quality.probes.CertaintyHead``) learns it from what the engine computes for every face: the
recognizer's last-map statistics plus a few scalar terms. Its strength is chosen by the EDC of out-of-fold
predictions on identity folds, and those out-of-fold values are what the quality fit sees (as for the mask
probe), so the score does not learn to trust a head on faces it memorised.

Used by ``frood calibrate`` (:func:`fit_certainty_head`) and by ``bench/quality_utility.py`` (the same code
measures the candidates over several identity splits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.quality.probes import CertaintyHead, fit_ridge
from engine.quality.scorer import HEAD_SCALARS, head_scalars
from evaluation import metrics
from evaluation.calibdata import ImageRecord
from evaluation.degrade import STRONG_DEGRADATIONS

# Ridge strengths tried (inputs standardised; ~1,000 inputs, ~1,700 rows): the EDC of out-of-fold values picks one.
HEAD_ALPHAS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
HEAD_FOLDS = 5
HEAD_SET = "wild"
# Clearly degraded copies (evaluation.degrade.STRONG_DEGRADATIONS: strong blur, 24 px, very dark, over-exposed, strong
# noise, covered eyes or lower face) keep their certainty ratio as a target only up to this quantile of the clean
# training photos' ratios. Their own ratios are middling (very dark median 0.38, 24 px 0.44, clean photos 0.58): a
# head fitted to them gives such faces middling certainty and, as a term of the score, gave back the trust the
# feature norm took away (docs/quality.md, issue 28). The quantile is the largest of 0.05, 0.01, 0 at which the fit
# identities' very dark and 24-px copies of trusted faces lose trust as often as without the head (seeds 8-12).
HEAD_CAPPED_VARIANTS = STRONG_DEGRADATIONS
HEAD_CAP_QUANTILE = 0.01


def wild_pauc(quality: np.ndarray, features: np.ndarray, labels: np.ndarray) -> float:
    """EDC pAUC(0–20 %) at FMR 1e-2 as ``evaluation.heldout.wild_edc``: all pairs, threshold at FMR 1e-2 of
    these pairs' impostors, pair quality = the lower of the two."""
    first, second, _ = metrics.pair_indices(labels)
    scores, genuine = metrics.pair_similarities(features, labels)
    curve = metrics.edc_curve(scores, genuine, np.minimum(quality[first], quality[second]), fmr=1e-2)
    return metrics.edc_partial_auc(curve, 0.2)


def certainty_ratio(features: np.ndarray, labels: np.ndarray, sources: np.ndarray, is_clean: np.ndarray) -> np.ndarray:
    """CR-FIQA's certainty ratio for every row, class centres from the clean rows (a row's own source photo
    left out); NaN for a row whose class has no other clean photo or is not among the clean rows."""
    names = np.unique(labels[is_clean])
    position = {name: i for i, name in enumerate(names)}
    sums = np.zeros((len(names), features.shape[1]))
    counts = np.zeros(len(names))
    for row in np.flatnonzero(is_clean):
        sums[position[labels[row]]] += features[row]
        counts[position[labels[row]]] += 1
    centres = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    clean_of = {sources[row]: row for row in np.flatnonzero(is_clean)}
    out = np.full(len(labels), np.nan)
    for row in range(len(labels)):
        k = position.get(labels[row])
        if k is None:
            continue
        own, count = sums[k].copy(), counts[k]
        if (source := clean_of.get(sources[row])) is not None:
            own, count = own - features[source], count - 1
        if count < 1:
            continue
        others = centres @ features[row]
        others[k] = -np.inf
        out[row] = (features[row] @ own / np.linalg.norm(own)) / (1.0 + others.max())
    return out


def head_targets(
    features: np.ndarray, labels: np.ndarray, sources: np.ndarray, clean: np.ndarray, capped: np.ndarray | None = None, cap_quantile: float = HEAD_CAP_QUANTILE
) -> np.ndarray:
    """The head's targets: :func:`certainty_ratio`, the ``capped`` rows' (clearly degraded copies) at most the
    ``cap_quantile`` of the clean rows' ratios (see :data:`HEAD_CAP_QUANTILE`)."""
    targets = certainty_ratio(features, labels, sources, clean)
    if capped is not None and capped.any():
        ceiling = float(np.nanquantile(targets[clean], cap_quantile))
        rows = capped & ~np.isnan(targets)
        targets[rows] = np.minimum(targets[rows], ceiling)
    return targets


@dataclass
class HeadFit:
    """A ridge head fitted to the certainty ratio: its standardised coefficients, the chosen strength, the
    out-of-fold predictions of every row (folds by identity) and the fold EDC of each strength tried."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float
    out_of_fold: np.ndarray
    pauc_by_alpha: dict[float, float]
    rows: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias


def fit_head(
    x: np.ndarray,
    features: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    clean: np.ndarray,
    alphas: tuple[float, ...] = HEAD_ALPHAS,
    folds: int = HEAD_FOLDS,
    capped: np.ndarray | None = None,
) -> HeadFit:
    """Ridge from inputs ``x`` to the certainty ratio, all rows from fit identities (clean photos and their
    degraded copies; the ``capped`` ones' targets capped, :func:`head_targets`). Each strength is scored by the EDC
    of out-of-fold predictions of the clean rows, the folds' targets computed from their training rows only; the
    best one is refitted on every row."""
    names = np.unique(labels[clean])
    fold_names = [names[k::folds] for k in range(min(folds, len(names)))]
    best: tuple[float, float, np.ndarray] | None = None
    pauc_by_alpha: dict[float, float] = {}
    for alpha in alphas:
        out_of_fold = np.full(len(labels), np.nan)
        for fold in fold_names:
            test = np.isin(labels, fold)
            train = np.flatnonzero(~test)
            targets = head_targets(features[train], labels[train], sources[train], clean[train], None if capped is None else capped[train])
            ok = train[~np.isnan(targets)]
            mean, scale, weights, bias = fit_ridge(x[ok], targets[~np.isnan(targets)], alpha)
            out_of_fold[test] = ((x[test] - mean) / scale) @ weights + bias
        area = wild_pauc(out_of_fold[clean], features[clean], labels[clean])
        pauc_by_alpha[alpha] = area
        if best is None or area < best[0]:
            best = (area, alpha, out_of_fold)
    assert best is not None
    targets = head_targets(features, labels, sources, clean, capped)
    ok = ~np.isnan(targets)
    mean, scale, weights, bias = fit_ridge(x[ok], targets[ok], best[1])
    return HeadFit(mean, scale, weights, bias, best[1], best[2], pauc_by_alpha, int(ok.sum()))


def head_rows(records: list[ImageRecord]) -> list[ImageRecord]:
    """The records the head is fitted on: in-the-wild main faces with map statistics."""
    return [r for r in records if r.face is not None and r.photo.set == HEAD_SET and getattr(r.face, "map_stats", None) is not None]


def head_inputs(records: list[ImageRecord], names: tuple[str, ...] = HEAD_SCALARS) -> np.ndarray:
    """The certainty head's inputs per record: map statistics, then the scalar terms (as the scorer builds them)."""
    return np.hstack([np.stack([r.face.map_stats for r in records]).astype(np.float64), np.array([head_scalars(r.face.signals, names) for r in records])])


def fit_certainty_head(fit_records: list[ImageRecord]) -> tuple[CertaintyHead | None, dict]:
    """The certainty head on the fit identities' in-the-wild faces; sets ``signals.certainty`` on every fit
    record: out-of-fold on the rows it was fitted on, the final head's prediction on the others (never fitted
    on). ``None`` (and no value set) when no record has map statistics (a model without a hook point)."""
    rows = head_rows(fit_records)
    if len({r.photo.identity for r in rows if r.variant == "clean"}) < 2 * HEAD_FOLDS:
        return None, {}
    features = np.stack([r.face.feature for r in rows]).astype(np.float64)
    labels = np.array([r.photo.identity for r in rows])
    sources = np.array([str(r.photo.path) for r in rows])
    clean = np.array([r.variant == "clean" for r in rows])
    capped = np.array([r.variant in HEAD_CAPPED_VARIANTS for r in rows])
    fit = fit_head(head_inputs(rows), features, labels, sources, clean, capped=capped)
    head = CertaintyHead(fit.mean, fit.scale, fit.weights, fit.bias, HEAD_SCALARS)
    for record, value in zip(rows, fit.out_of_fold):
        record.face.signals.certainty = float(value) if np.isfinite(value) else None
    fitted = {id(record) for record, value in zip(rows, fit.out_of_fold) if np.isfinite(value)}
    annotate_certainty(head, [r for r in fit_records if id(r) not in fitted])
    report = {
        "target": "CR-FIQA certainty ratio: cosine to own class centre (leave-one-out) / (1 + cosine to nearest other centre)",
        "inputs": f"per-channel mean and std of the recognizer's last spatial map ({head.map_size}), then {', '.join(HEAD_SCALARS)}",
        "fitted_on": f"{HEAD_SET} set, fit identities only: clean photos and their degraded copies",
        "degraded_target_cap": f"{', '.join(HEAD_CAPPED_VARIANTS)} copies: target at most the {HEAD_CAP_QUANTILE:g} quantile of the clean photos' ratios",
        "capped_rows": int(capped.sum()),
        "rows": fit.rows,
        "identities": int(len(np.unique(labels))),
        "ridge_alpha": fit.alpha,
        "alpha_chosen_by": f"EDC pAUC(0-20 %) at FMR 1e-2 of out-of-fold predictions, {HEAD_FOLDS} identity folds",
        "fold_pauc_by_alpha": {f"{alpha:g}": round(value, 6) for alpha, value in fit.pauc_by_alpha.items()},
        "quality_fit_reads": "out-of-fold head values on the rows the head was fitted on",
    }
    return head, report


def annotate_certainty(head: CertaintyHead | None, records: list[ImageRecord]) -> None:
    """Sets ``signals.certainty`` of these records' main faces from the head, as the pipeline's scorer would."""
    if head is None:
        return
    with_maps = [r for r in records if r.face is not None and getattr(r.face, "map_stats", None) is not None]
    if not with_maps:
        return
    predicted = head.predict(np.stack([r.face.map_stats for r in with_maps]), np.array([head_scalars(r.face.signals, head.scalars) for r in with_maps]))
    for record, value in zip(with_maps, predicted):
        record.face.signals.certainty = float(value)
