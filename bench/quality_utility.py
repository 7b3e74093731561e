"""Does a recognition-aware head make the quality score a better predictor of recognition errors? (issue 28)

Measures EDC pAUC(0–20 % discard) at FMR 1e-2 (``evaluation.metrics``, exactly as ``frood eval``) on the
held-out third of the in-the-wild set, for several identity splits (``evaluation.calibdata.held_out`` with
seeds ``--first-seed`` … ``+--splits``; the photos, degraded copies and analyses are those of seed 8's
calibration, only the split moves), for:

- the single baselines: feature norm, detector score, face size, sharpness;
- ``ours``: the fused score without the certainty head refitted on each split's fit identities
  (``calibration.calibrate.fit_params(..., certainty_head=False)``, the whole calibration: mask probe, thresholds,
  logistic fit, EDC step, temperature), the held-out photos scored as the pipeline scores them (probe applied,
  then ``QualityScorer``); ``ours_head``: the same with the certainty head (capped degraded targets) and its term
  (``certainty_head=True``: the shipped recipe, ``FIT_CERTAINTY_HEAD``);
- recognizability heads alone (``calibration.certainty``, the code ``frood calibrate`` runs): ridge
  regressions fitted, on the fit identities only, to the CR-FIQA certainty ratio, their ridge strength
  chosen by EDC on 5 identity folds of the fit identities:
  ``head_unit``: on the unit feature plus log norm, small face, detector logit, pose, sharpness, darkness
  and over-exposure;
  ``head_map``: on the recognizer's last convolutional map (mean and standard deviation of each channel
  over the 7 × 7 positions, ``EmbeddingBatch.map_stats``) plus the same scalars: the head ``ours_head`` holds;
- each head added to the feature norm and to ``ours`` (weight chosen on the fit identities' out-of-fold
  head values).

Every analysis is cached (the calibration cache, map statistics included), so a rerun takes the fits' time
only. Prints one JSON object: per split and mean ± standard deviation.

    TORCH_THREADS=1 nice -n 10 python bench/quality_utility.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.calibrate import fit_params, mask_probe_held_out  # noqa: E402
from calibration.certainty import annotate_certainty, fit_head, head_inputs, head_rows, wild_pauc  # noqa: E402
from engine.quality.scorer import CERTAINTY_TERM, QualityScorer, head_scalars  # noqa: E402
from evaluation.calibdata import DEFAULT_HOLDOUT, RecordCache, add_map_stats, collect_records, degradation_plan, discover, held_out  # noqa: E402
from evaluation.heldout import scored_from_records  # noqa: E402
from service.models import create_pipeline  # noqa: E402

MIX = np.linspace(0.0, 3.0, 16)


def load_records(root: Path, model: str, cache_path: Path, seed: int) -> tuple[list, list]:
    """Seed ``seed``'s calibration photos and degraded copies, from the calibration cache (analysed where missing),
    every main face with its last-map statistics."""
    photos = discover(root, None, 30, seed, None)
    plan = degradation_plan(photos, 200, 3, seed)
    cache = RecordCache(cache_path)
    pipeline = None
    if any(cache.get(photo, "clean") is None for photo in photos) or any(cache.get(p, v) is None for p, v in plan):
        pipeline = create_pipeline(model, device="cpu")
        pipeline.complete_signals = True
        records = collect_records(pipeline, photos, cache, plan, thorough_share=0.1)
    else:
        records = [r for p in photos if (r := cache.get(p, "clean")) is not None] + [r for p, v in plan if (r := cache.get(p, v)) is not None]
    if any(r.face is not None and r.face.aligned is not None and getattr(r.face, "map_stats", None) is None for r in records):
        add_map_stats((pipeline or create_pipeline(model, device="cpu")).embedder, records, cache)
    return photos, records


def standard(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-12)


def split_rows(records: list, photos: list, seed: int, holdout: float) -> tuple:
    """One identity split of the in-the-wild rows the heads read: the held-out identities, the rows, their features,
    identities, clean flags, source photos, held-out flags, and the indices of the fit clean, held-out clean and
    all fit rows."""
    held_ids = held_out(photos, seed, holdout)
    wild = head_rows(records)
    features = np.stack([r.face.feature for r in wild]).astype(np.float64)
    labels = np.array([r.photo.identity for r in wild])
    clean = np.array([r.variant == "clean" for r in wild])
    sources = np.array([str(r.photo.path) for r in wild])
    held = np.array([label in held_ids for label in labels])
    return held_ids, wild, features, labels, clean, sources, held, np.flatnonzero(~held & clean), np.flatnonzero(held & clean), np.flatnonzero(~held)


def split_quality(params, wild: list, fit_records: list, held_clean: np.ndarray, fit_clean: np.ndarray) -> np.ndarray:
    """The calibrated quality of every clean in-the-wild row (held-out rows annotated by the caller; fit rows carry
    their out-of-fold probe and head values from the fit), as the pipeline scores them."""
    scorer = QualityScorer(params)
    fit_wild = [r for r in fit_records if r.variant == "clean" and r.photo.set == "wild" and r.face is not None]
    fit_quality = {id(s.photo): s.quality for s in scored_from_records(fit_wild, scorer)}
    quality = np.zeros(len(wild))
    for row, scored in zip(held_clean, scored_from_records([wild[i] for i in held_clean], scorer)):
        quality[row] = scored.quality
    for row in fit_clean:
        quality[row] = fit_quality[id(wild[row].photo)]
    return quality


def run_split(records: list, photos: list, seed: int, model: str, holdout: float) -> dict:
    held_ids, wild, features, labels, clean, sources, held, fit_clean, held_clean, fit_all = split_rows(records, photos, seed, holdout)
    scalars = np.array([head_scalars(r.face.signals) for r in wild])
    inputs = {"head_unit": np.hstack([features, scalars]), "head_map": head_inputs(wild)}
    single = {
        "feature_norm": np.array([r.face.signals.feature_norm for r in wild]),
        "det_score": np.array([r.face.signals.det_score for r in wild]),
        "face_px": np.array([r.face.signals.face_px for r in wild]),
        "sharpness": np.array([r.face.signals.sharpness for r in wild]),
    }
    fit_f, fit_y, held_f, held_y = features[fit_clean], labels[fit_clean], features[held_clean], labels[held_clean]
    result: dict = {"seed": seed, "held_out_photos": int(len(held_clean)), "fit_photos": int(len(fit_clean))}
    pauc = {name: wild_pauc(values[held_clean], held_f, held_y) for name, values in single.items()}

    # ours: the whole calibration (mask probe, thresholds, logistic fit, EDC step, temperature) refitted on this
    # split's fit identities, scored on its held-out wild photos as the pipeline would; ours_head: the same with the
    # certainty head and its term (the shipped recipe: calibration.calibrate.FIT_CERTAINTY_HEAD).
    start = time.time()
    fit_records = [r for r in records if r.photo.identity not in held_ids]
    held_records = [r for r in records if r.photo.identity in held_ids]
    logit_ours = None
    for name, with_head in (("ours", False), ("ours_head", True)):
        params, _ = fit_params(fit_records, model, certainty_head=with_head)
        mask_probe_held_out(params.mask_probe, held_records)
        annotate_certainty(params.certainty_head, held_records)
        quality = split_quality(params, wild, fit_records, held_clean, fit_clean)
        pauc[name] = wild_pauc(quality[held_clean], held_f, held_y)
        if not with_head:
            logit_ours = np.log(np.clip(quality, 1e-6, 1 - 1e-6) / np.clip(1 - quality, 1e-6, 1))
        else:
            terms = params.default.terms
            result["ours_head_certainty_weight"] = round(float(params.default.weights[terms.index(CERTAINTY_TERM)]), 4)
            result["ours_head_ridge_alpha"] = params.metadata["certainty_head"]["ridge_alpha"]
    result["fit_seconds"] = round(time.time() - start, 1)

    chosen = {}
    fit_rows = fit_all
    for head, x in inputs.items():
        fit = fit_head(x[fit_rows], features[fit_rows], labels[fit_rows], sources[fit_rows], clean[fit_rows])
        prediction = fit.predict(x)
        oof = np.zeros(len(wild))
        oof[fit_rows] = fit.out_of_fold
        pauc[head] = wild_pauc(prediction[held_clean], held_f, held_y)
        chosen[head] = {"alpha": fit.alpha, "fit_oof_pauc": round(fit.pauc_by_alpha[fit.alpha], 6)}
        for base_name, base in (("feature_norm", single["feature_norm"]), ("ours", logit_ours)):
            mix = min(MIX, key=lambda a: wild_pauc(standard(base[fit_clean], base[fit_clean]) + a * standard(oof[fit_clean], oof[fit_clean]), fit_f, fit_y))
            combined = standard(base, base[fit_clean]) + mix * standard(prediction, oof[fit_clean])
            pauc[f"{base_name}+{head}"] = wild_pauc(combined[held_clean], held_f, held_y)
            chosen[head][f"mix_with_{base_name}"] = float(mix)
    result["pauc"] = {name: round(value, 6) for name, value in pauc.items()}
    result["chosen_on_fit_identities"] = chosen
    return result


def split_arguments(description: str) -> argparse.ArgumentParser:
    """The options every quality-utility bench shares: the data, the model, its calibration cache, the splits."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--model", default="faceplugin-r512")
    parser.add_argument("--cache", default=None, help="calibration cache (default build/calib-cache/<model>.pkl)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=8)
    return parser


def records_for(args: argparse.Namespace) -> tuple[list, list]:
    """The first seed's photos and records, from ``--cache`` (analysed where missing)."""
    cache = Path(args.cache or f"build/calib-cache/{args.model}.pkl")
    return load_records(Path(args.data_root), args.model, cache, args.first_seed)


def summarise(splits: list[dict]) -> dict:
    """Per measure: mean ± sample sd over the splits, min, max, and the ratio to the feature norm (mean over mean,
    and per split)."""
    norms = np.array([s["pauc"]["feature_norm"] for s in splits])
    summary = {}
    for name in splits[0]["pauc"]:
        values = np.array([s["pauc"][name] for s in splits])
        summary[name] = {
            "mean": round(float(values.mean()), 6),
            "sd": round(float(values.std(ddof=1)), 6) if len(values) > 1 else None,
            "min": round(float(values.min()), 6),
            "max": round(float(values.max()), 6),
            "mean_over_mean_feature_norm": round(float(values.mean() / norms.mean()), 3),
            "ratio_to_feature_norm_per_split": [round(float(r), 3) for r in values / norms],
        }
    return summary


def main() -> int:
    parser = split_arguments(__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    photos, records = records_for(args)
    splits = [run_split(records, photos, seed, args.model, DEFAULT_HOLDOUT) for seed in range(args.first_seed, args.first_seed + args.splits)]
    report = {
        "model": args.model,
        "measure": "EDC pAUC(0-20%) at FMR 1e-2, held-out wild third, lower is better",
        "seeds": [s["seed"] for s in splits],
        "summary": summarise(splits),
        "splits": splits,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
