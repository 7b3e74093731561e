"""Does a recognition-aware head make the quality score a better predictor of recognition errors? (issue 28)

Measures EDC pAUC(0–20 % discard) at FMR 1e-2 (``evaluation.metrics``, exactly as ``frood eval``) on the
held-out third of the in-the-wild set, for several identity splits (``evaluation.calibdata.held_out`` with
seeds ``--first-seed`` … ``+--splits``; the photos, degraded copies and analyses are those of seed 8's
calibration, only the split moves), for:

- the single baselines: feature norm, detector score, face size, sharpness;
- ``ours``: the fused score refitted on each split's fit identities (``calibration.calibrate.fit_params``,
  the whole calibration: mask probe, thresholds, logistic fit, EDC step, temperature);
- recognizability heads: ridge regressions fitted, on the fit identities only, to the CR-FIQA certainty
  ratio (cosine to the photo's own class centre, leave-one-out, over 1 + cosine to the nearest other
  class centre; centres from the fit identities' clean photos; the degraded copies of fit photos are
  targets too, their source photo left out of their centre), their ridge strength chosen by EDC on
  5 identity folds of the fit identities:
  ``head_unit``: on the unit feature plus log norm, small face, detector logit, pose, sharpness, darkness
  and over-exposure (what the engine computes today);
  ``head_map``: on the recognizer's last convolutional map (mean and standard deviation of each channel
  over the 7 × 7 positions, read with a forward hook) plus the same scalars;
- each head added to the feature norm and to ``ours`` (weight chosen on the fit identities' out-of-fold
  head values).

Every analysis is cached (the calibration cache, and the map statistics under ``data/quality-utility/``),
so a rerun takes the fits' time only. Prints one JSON object: per split and mean ± standard deviation.

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
from engine.quality.scorer import QualityScorer, term_values  # noqa: E402
from evaluation import metrics  # noqa: E402
from evaluation.calibdata import DEFAULT_HOLDOUT, RecordCache, collect_records, degradation_plan, discover, held_out  # noqa: E402
from evaluation.heldout import scored_from_records  # noqa: E402

ALPHAS = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)
MIX = np.linspace(0.0, 3.0, 16)
SCALARS = ("small_face", "det_logit", "pose", "sharpness", "dark", "bright")


def load_records(root: Path, model: str, cache_path: Path, seed: int) -> list:
    photos = discover(root, None, 30, seed, None)
    plan = degradation_plan(photos, 200, 3, seed)
    cache = RecordCache(cache_path)
    if any(cache.get(photo, "clean") is None for photo in photos) or any(cache.get(p, v) is None for p, v in plan):
        from service.models import create_pipeline

        pipeline = create_pipeline(model, device="cpu")
        pipeline.complete_signals = True
        return photos, collect_records(pipeline, photos, cache, plan, thorough_share=0.1)
    records = [r for p in photos if (r := cache.get(p, "clean")) is not None] + [r for p, v in plan if (r := cache.get(p, v)) is not None]
    return photos, records


def map_statistics(records: list, model: str, path: Path) -> dict[tuple[str, str], np.ndarray]:
    """Per record (path, variant): mean and std over positions of the recognizer's last 4-D activation (cached)."""
    store: dict[tuple[str, str], np.ndarray] = {}
    if path.is_file():
        data = np.load(path)
        store = {(str(k[0]), str(k[1])): row for k, row in zip(data["keys"].tolist(), data["stats"])}
    todo = [r for r in records if r.face is not None and r.face.aligned is not None and (str(r.photo.path), r.variant) not in store]
    if todo:
        import torch

        from service.models import create_pipeline

        torch.set_num_threads(1)
        embedder = create_pipeline(model, device="cpu").embedder
        seen: list = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in embedder.module.modules() if not list(m.children())]
        with torch.inference_mode():
            for start in range(0, len(todo), 32):
                chunk = todo[start : start + 32]
                seen.clear()
                embedder.module(embedder.preprocess(np.stack([r.face.aligned for r in chunk])))
                last = [o for o in seen if isinstance(o, torch.Tensor) and o.ndim == 4 and o.shape[2] > 1][-1]
                stats = torch.cat([last.mean((2, 3)), last.flatten(2).std(2)], 1).numpy()
                for record, row in zip(chunk, stats):
                    store[(str(record.photo.path), record.variant)] = row
        for hook in hooks:
            hook.remove()
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(store)
        np.savez(path, keys=np.array(keys), stats=np.stack([store[k] for k in keys]))
    return store


def edc_pauc(quality: np.ndarray, features: np.ndarray, labels: np.ndarray) -> float:
    """As ``evaluation.heldout.wild_edc``: all pairs, threshold at FMR 1e-2 of these pairs, pair quality = min."""
    first, second, _ = metrics.pair_indices(labels)
    scores, genuine = metrics.pair_similarities(features, labels)
    curve = metrics.edc_curve(scores, genuine, np.minimum(quality[first], quality[second]), fmr=1e-2)
    return metrics.edc_partial_auc(curve, 0.2)


def certainty_ratio(features: np.ndarray, labels: np.ndarray, sources: np.ndarray, is_clean: np.ndarray) -> np.ndarray:
    """CR-FIQA's certainty ratio for every row, class centres from the clean rows (a row's own source photo left out)."""
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


def ridge(x: np.ndarray, y: np.ndarray, alpha: float):
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / scale
    w = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return lambda new: ((new - mean) / scale) @ w + y.mean()


def standard(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-12)


def run_split(records: list, photos: list, maps: dict, seed: int, model: str, holdout: float) -> dict:
    held_ids = held_out(photos, seed, holdout)
    wild = [r for r in records if r.face is not None and r.photo.set == "wild"]
    features = np.stack([r.face.feature for r in wild]).astype(np.float64)
    labels = np.array([r.photo.identity for r in wild])
    clean = np.array([r.variant == "clean" for r in wild])
    sources = np.array([str(r.photo.path) for r in wild])
    held = np.array([label in held_ids for label in labels])
    fit_clean, held_clean, fit_all = np.flatnonzero(~held & clean), np.flatnonzero(held & clean), np.flatnonzero(~held)
    terms = [term_values(r.face.signals) for r in wild]
    scalars = np.column_stack([np.log([r.face.signals.feature_norm for r in wild])] + [[t[name] for t in terms] for name in SCALARS])
    inputs = {"head_unit": np.hstack([features, scalars]), "head_map": np.hstack([np.stack([maps[(s, r.variant)] for s, r in zip(sources, wild)]), scalars])}
    single = {
        "feature_norm": np.array([r.face.signals.feature_norm for r in wild]),
        "det_score": np.array([r.face.signals.det_score for r in wild]),
        "face_px": np.array([r.face.signals.face_px for r in wild]),
        "sharpness": np.array([r.face.signals.sharpness for r in wild]),
    }
    fit_f, fit_y, held_f, held_y = features[fit_clean], labels[fit_clean], features[held_clean], labels[held_clean]
    result: dict = {"seed": seed, "held_out_photos": int(len(held_clean)), "fit_photos": int(len(fit_clean))}
    pauc = {name: edc_pauc(values[held_clean], held_f, held_y) for name, values in single.items()}

    # ours: the whole calibration refitted on this split's fit identities, scored on its held-out wild photos.
    start = time.time()
    fit_records = [r for r in records if r.photo.identity not in held_ids]
    params, _ = fit_params(fit_records, model)
    fit_wild = [r for r in fit_records if r.variant == "clean" and r.photo.set == "wild"]
    fit_quality = {id(s.photo): s.quality for s in scored_from_records(fit_wild, QualityScorer(params))}
    mask_probe_held_out(params.mask_probe, [r for r in records if r.photo.identity in held_ids])
    scorer = QualityScorer(params)
    ours = np.zeros(len(wild))
    for row, scored in zip(held_clean, scored_from_records([wild[i] for i in held_clean], scorer)):
        ours[row] = scored.quality
    for row in fit_clean:
        ours[row] = fit_quality[id(wild[row].photo)]
    result["fit_seconds"] = round(time.time() - start, 1)
    pauc["ours"] = edc_pauc(ours[held_clean], held_f, held_y)
    logit_ours = np.log(np.clip(ours, 1e-6, 1 - 1e-6) / np.clip(1 - ours, 1e-6, 1))

    targets = certainty_ratio(features, labels, sources, ~held & clean)
    names = np.unique(fit_y)
    folds = [names[k::5] for k in range(5)]
    chosen = {}
    for head, x in inputs.items():
        best = None
        for alpha in ALPHAS:
            oof = np.zeros(len(wild))
            for fold in folds:
                test = fit_clean[np.isin(labels[fit_clean], fold)]
                train = fit_all[~np.isin(labels[fit_all], fold)]
                fold_targets = certainty_ratio(features[train], labels[train], sources[train], clean[train])
                ok = ~np.isnan(fold_targets)
                oof[test] = ridge(x[train][ok], fold_targets[ok], alpha)(x[test])
            area = edc_pauc(oof[fit_clean], fit_f, fit_y)
            if best is None or area < best[0]:
                best = (area, alpha, oof)
        ok = fit_all[~np.isnan(targets[fit_all])]
        prediction = ridge(x[ok], targets[ok], best[1])(x)
        oof = best[2]
        pauc[head] = edc_pauc(prediction[held_clean], held_f, held_y)
        chosen[head] = {"alpha": best[1], "fit_oof_pauc": round(best[0], 6)}
        for base_name, base in (("feature_norm", single["feature_norm"]), ("ours", logit_ours)):
            mix = min(MIX, key=lambda a: edc_pauc(standard(base[fit_clean], base[fit_clean]) + a * standard(oof[fit_clean], oof[fit_clean]), fit_f, fit_y))
            combined = standard(base, base[fit_clean]) + mix * standard(prediction, oof[fit_clean])
            pauc[f"{base_name}+{head}"] = edc_pauc(combined[held_clean], held_f, held_y)
            chosen[head][f"mix_with_{base_name}"] = float(mix)
    result["pauc"] = {name: round(value, 6) for name, value in pauc.items()}
    result["chosen_on_fit_identities"] = chosen
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--model", default="faceplugin-r512")
    parser.add_argument("--cache", default=None, help="calibration cache (default build/calib-cache/<model>.pkl)")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=8)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    cache = Path(args.cache or f"build/calib-cache/{args.model}.pkl")
    photos, records = load_records(Path(args.data_root), args.model, cache, args.first_seed)
    maps = map_statistics(records, args.model, Path("data/quality-utility") / f"{args.model}-map-stats.npz")
    splits = [run_split(records, photos, maps, seed, args.model, DEFAULT_HOLDOUT) for seed in range(args.first_seed, args.first_seed + args.splits)]
    names = list(splits[0]["pauc"])
    summary = {}
    for name in names:
        values = np.array([s["pauc"][name] for s in splits])
        ratios = values / np.array([s["pauc"]["feature_norm"] for s in splits])
        summary[name] = {
            "mean": round(float(values.mean()), 6),
            "sd": round(float(values.std(ddof=1)), 6),
            "min": round(float(values.min()), 6),
            "max": round(float(values.max()), 6),
            "mean_over_mean_feature_norm": round(float(values.mean() / np.mean([s["pauc"]["feature_norm"] for s in splits])), 3),
            "ratio_to_feature_norm_per_split": [round(float(r), 3) for r in ratios],
        }
    report = {
        "model": args.model,
        "measure": "EDC pAUC(0-20%) at FMR 1e-2, held-out wild third, lower is better",
        "seeds": [s["seed"] for s in splits],
        "summary": summary,
        "splits": splits,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
