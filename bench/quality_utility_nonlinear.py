"""Non-linear certainty heads on the last-map statistics (issue 28, the "Next" of docs/quality.md).

The same measure, splits and mixes as ``bench/quality_utility.py`` (EDC pAUC(0–20 %) at FMR 1e-2 on the held-out
third of the in-the-wild set, seeds ``--first-seed`` … ``+--splits``), for heads on the inputs of ``head_map``
(``calibration.certainty.head_inputs``: per-channel mean and std of the recognizer's last 512 × 7 × 7 map, then the
7 scalar terms) fitted to the same target (CR-FIQA certainty ratio, uncapped, as the bench's ``head_map``), on each
split's FIT identities only (clean photos and their degraded copies):

- ``head_map``: the bench's ridge (``calibration.certainty.fit_head``), the reference;
- ``pca_ridge``: ridge on a PCA projection of the standardised inputs (k components);
- ``pca_quad``: ridge on a PCA projection plus its squares and pairwise products;
- ``krr_rbf``: kernel ridge with an RBF kernel on the standardised inputs;
- ``ridge_rank``: ridge to the rank of the target (normal scores), the EDC reads ranks only;
- ``mlp``: a 1-hidden-layer torch MLP (AdamW weight decay, input dropout, epochs as early stopping), mean of 2 inits;
- ``mlp_rank``: the same MLP trained with a pairwise (RankNet) loss on the target's order.

Every hyper-parameter (k, ridge strength, kernel width, hidden units, weight decay, dropout, epochs) is chosen by the
EDC pAUC of out-of-fold predictions of the fit identities' clean photos on 5 identity folds (as ``fit_head``
chooses the ridge strength), the folds' targets computed from their training rows only; the chosen setting is
refitted on every fit row. Each head is also mixed with the feature norm and with ``ours`` (the calibrated score
without the head, refitted per split) exactly as the bench mixes ``head_map`` (weight 0–3 chosen on the fit
identities' out-of-fold values), and with ``ours`` two other ways: ``+min0:`` (the head only lowers) and ``+gated:``
(the head read only among faces ``ours`` trusts, quality >= 0.6). ``--in-calibration`` puts heads inside the
calibrated score itself (``ours_with:<head>``: ``fit_params(..., certainty_head=True)``, the shipped recipe with its
capped targets, the candidate in place of the ridge). Held-out numbers choose nothing.

The grids' low-capacity ends (k 4 and 8, kernel width 0.01 and 0.03, epochs 2 and 5, the smallest strengths) were
added after a first pass whose fold EDC chose the lowest-capacity setting tried on most splits.

    TORCH_THREADS=1 OMP_NUM_THREADS=1 nice -n 19 python bench/quality_utility_nonlinear.py \
        --data-root ../shared/data --cache data/calib-cache/faceplugin-r512.pkl \
        --out data/quality-utility/result-nonlinear.json
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_utility import MIX, records_for, split_arguments, split_quality, split_rows, standard, summarise  # noqa: E402

from calibration import calibrate  # noqa: E402
from calibration.calibrate import fit_params, mask_probe_held_out  # noqa: E402
from calibration.certainty import HEAD_CAPPED_VARIANTS, HEAD_FOLDS, annotate_certainty, fit_head, head_inputs, head_rows, head_targets, wild_pauc  # noqa: E402
from engine.quality.scorer import CERTAINTY_TERM  # noqa: E402
from evaluation import metrics  # noqa: E402
from evaluation.calibdata import DEFAULT_HOLDOUT  # noqa: E402

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))

# A learner: (setting, x_train, y_train, x_test) -> {sub-setting: predictions of x_test}; sub-settings share one
# training (ridge strengths on one decomposition, epochs along one run).
Learner = Callable[[dict, np.ndarray, np.ndarray, np.ndarray], dict]


class PairEDC:
    """EDC pAUC(0–20 %) at FMR 1e-2 of one fixed photo set, its pairs and threshold computed once (equals
    ``calibration.certainty.wild_pauc``)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        first, second, _ = metrics.pair_indices(labels)
        scores, genuine = metrics.pair_similarities(features, labels)
        self.threshold = metrics.threshold_at_fmr(scores[~genuine], 1e-2)
        self.first, self.second, self.scores = first[genuine], second[genuine], scores[genuine]

    def __call__(self, quality: np.ndarray) -> float:
        pair_quality = np.minimum(quality[self.first], quality[self.second])
        curve = metrics.edc_curve(self.scores, np.ones(len(self.scores), bool), pair_quality, threshold=self.threshold)
        return metrics.edc_partial_auc(curve, 0.2)


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = train.mean(0), train.std(0) + 1e-9
    return (train - mean) / scale, (test - mean) / scale


def ridge_all(z: np.ndarray, y: np.ndarray, z_test: np.ndarray, alphas: tuple[float, ...]) -> dict:
    """Ridge (inputs already centred/standardised) for every strength from one SVD."""
    mean = z.mean(0)
    u, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    uy = u.T @ (y - y.mean())
    proj = (z_test - mean) @ vt.T
    return {f"alpha={a:g}": proj @ (s / (s**2 + a) * uy) + y.mean() for a in alphas}


def pca(z: np.ndarray, z_test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mean = z.mean(0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    scale = s[:k] / np.sqrt(len(z))
    return ((z - mean) @ vt[:k].T) / scale, ((z_test - mean) @ vt[:k].T) / scale


def quad(p: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(p.shape[1])
    return np.hstack([p, p[:, i] * p[:, j]])


def learn_pca_ridge(setting: dict, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> dict:
    z, z_test = standardise(x, x_test)
    p, p_test = pca(z, z_test, setting["k"])
    return ridge_all(p, y, p_test, (1.0, 10.0, 100.0, 1000.0, 10000.0))


def learn_pca_quad(setting: dict, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> dict:
    z, z_test = standardise(x, x_test)
    p, p_test = pca(z, z_test, setting["k"])
    q, q_test = standardise(quad(p), quad(p_test))
    return ridge_all(q, y, q_test, (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0))


def learn_krr(setting: dict, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> dict:
    """Kernel ridge, RBF kernel exp(-γ |a-b|² / d) on standardised inputs, every strength from one eigendecomposition."""
    z, z_test = standardise(x, x_test)
    d = z.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-setting["gamma"] * np.maximum(sq, 0) / d)

    k_train, k_test = kernel(z, z), kernel(z_test, z)
    values, vectors = np.linalg.eigh(k_train)
    centred = y - y.mean()
    vy = vectors.T @ centred
    out = {}
    for a in (0.01, 0.1, 1.0, 10.0, 100.0):
        coef = vectors @ (vy / (values + a))
        out[f"alpha={a:g}"] = k_test @ coef + y.mean()
    return out


def normal_scores(y: np.ndarray) -> np.ndarray:
    ranks = (np.argsort(np.argsort(y, kind="stable"), kind="stable") + 0.5) / len(y)
    return np.sqrt(2) * torch.erfinv(torch.tensor(2 * ranks - 1)).numpy()


def learn_ridge_rank(setting: dict, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> dict:
    z, z_test = standardise(x, x_test)
    return ridge_all(z, normal_scores(y), z_test, (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0))


# The trust threshold of the pipeline (quality 0.6), as a logit: the "+gated:" mixes read the head only above it.
TRUST_LOGIT = float(np.log(0.6 / 0.4))

LEARNING_SHARES = (1 / 3, 1 / 2, 2 / 3)
MLP_EPOCHS = (2, 5, 10, 25, 50, 100)
MLP_INITS = 2


def learn_mlp(setting: dict, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> dict:
    """1 hidden layer (ReLU), input dropout, AdamW (lr 1e-3, batches of 128), MSE to the standardised target or a
    pairwise RankNet loss within each batch; predictions at each of :data:`MLP_EPOCHS` (early stopping chosen by the
    folds), averaged over :data:`MLP_INITS` initialisations."""
    z, z_test = standardise(x, x_test)
    target = (y - y.mean()) / (y.std() + 1e-12)
    zt, zt_test, yt = (torch.tensor(a, dtype=torch.float32) for a in (z, z_test, target))
    sums = {epochs: np.zeros(len(z_test)) for epochs in MLP_EPOCHS}
    for init in range(MLP_INITS):
        generator = torch.Generator().manual_seed(1000 + init)
        torch.manual_seed(1000 + init)
        net = torch.nn.Sequential(
            torch.nn.Dropout(setting["dropout"]), torch.nn.Linear(z.shape[1], setting["hidden"]), torch.nn.ReLU(), torch.nn.Linear(setting["hidden"], 1)
        )
        optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=setting["wd"])
        for epoch in range(1, max(MLP_EPOCHS) + 1):
            net.train()
            for batch in torch.randperm(len(zt), generator=generator).split(128):
                out = net(zt[batch]).squeeze(1)
                if setting.get("loss") == "rank":
                    diff = out[:, None] - out[None, :]
                    sign = torch.sign(yt[batch][:, None] - yt[batch][None, :])
                    loss = torch.nn.functional.softplus(-sign * diff)[sign != 0].mean()
                else:
                    loss = torch.nn.functional.mse_loss(out, yt[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if epoch in sums:
                net.eval()
                with torch.no_grad():
                    sums[epoch] += net(zt_test).squeeze(1).numpy().astype(np.float64)
    return {f"epochs={epochs}": total / MLP_INITS for epochs, total in sums.items()}


def grid(**values: tuple) -> list[dict]:
    return [dict(zip(values, combo)) for combo in itertools.product(*values.values())]


CANDIDATES: dict[str, tuple[Learner, list[dict]]] = {
    "pca_ridge": (learn_pca_ridge, grid(k=(4, 8, 16, 32, 64, 128, 256))),
    "pca_quad": (learn_pca_quad, grid(k=(4, 8, 16, 32))),
    "krr_rbf": (learn_krr, grid(gamma=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0))),
    "ridge_rank": (learn_ridge_rank, grid(rank=(True,))),
    "mlp": (learn_mlp, grid(hidden=(32, 128), wd=(0.01, 0.1, 1.0), dropout=(0.0, 0.2), loss=("mse",))),
    "mlp_rank": (learn_mlp, grid(hidden=(64,), wd=(0.01, 0.1, 1.0), dropout=(0.0, 0.2), loss=("rank",))),
}


def fit_candidate(learner: Learner, settings: list[dict], x, features, labels, sources, clean, folds: int = HEAD_FOLDS, capped=None) -> dict:
    """``fit_head``'s protocol for any learner: 5 identity folds of the fit rows (targets from each fold's training
    rows), every (setting, sub-setting) scored by the EDC pAUC of the out-of-fold values of the clean rows; the best
    refitted on every row. Returns the chosen setting, its out-of-fold values and a predictor of new rows."""
    names = np.unique(labels[clean])
    fold_names = [names[k::folds] for k in range(min(folds, len(names)))]
    edc = PairEDC(features[clean], labels[clean])
    oof: dict[tuple[int, str], np.ndarray] = {}
    for fold in fold_names:
        test = np.isin(labels, fold)
        train = np.flatnonzero(~test)
        targets = head_targets(features[train], labels[train], sources[train], clean[train], None if capped is None else capped[train])
        ok = ~np.isnan(targets)
        for index, setting in enumerate(settings):
            for sub, values in learner(setting, x[train][ok], targets[ok], x[test]).items():
                oof.setdefault((index, sub), np.full(len(labels), np.nan))[test] = values
    scores = {key: edc(values[clean]) for key, values in oof.items()}
    best = min(scores, key=scores.get)
    targets = head_targets(features, labels, sources, clean, capped)
    ok = ~np.isnan(targets)
    setting, sub = settings[best[0]], best[1]
    return {
        "setting": {**setting, "sub": sub},
        "fit_oof_pauc": scores[best],
        "oof_pauc_by_setting": {f"{settings[i]} {s}": round(v, 6) for (i, s), v in scores.items()},
        "out_of_fold": oof[best],
        "predict": lambda new: learner(setting, x[ok], targets[ok], new)[sub],
    }


def ours_logit(records: list, wild: list, held_ids: set, held_clean: np.ndarray, fit_clean: np.ndarray, model: str) -> np.ndarray:
    """``ours`` (no head) refitted on the split's fit identities, as ``bench/quality_utility.py`` computes it."""
    fit_records = [r for r in records if r.photo.identity not in held_ids]
    params, _ = fit_params(fit_records, model, certainty_head=False)
    mask_probe_held_out(params.mask_probe, [r for r in records if r.photo.identity in held_ids])
    quality = split_quality(params, wild, fit_records, held_clean, fit_clean)
    return np.log(np.clip(quality, 1e-6, 1 - 1e-6) / np.clip(1 - quality, 1e-6, 1))


def ours_with_head(name: str, records: list, wild: list, held_ids: set, held_clean: np.ndarray, fit_clean: np.ndarray, model: str) -> tuple[float, dict]:
    """The whole calibration with a certainty head and its term (``fit_params(..., certainty_head=True)``, the shipped
    recipe: degraded copies' targets capped), the head being ``name``: ``head_map`` is the shipped ridge
    (``calibration.certainty.fit_certainty_head``); any other candidate replaces it (fitted by :func:`fit_candidate` on
    the fit identities' in-the-wild rows, capped targets, its out-of-fold values on those rows for the quality fit, its
    refitted prediction on every other record). Returns the held-out logit of ``ours`` with that head, and facts."""
    fit_records = [r for r in records if r.photo.identity not in held_ids]
    held_records = [r for r in records if r.photo.identity in held_ids]
    facts: dict = {}

    def fitter(fit_rows_: list) -> tuple[object, dict]:
        rows = head_rows(fit_rows_)
        feats = np.stack([r.face.feature for r in rows]).astype(np.float64)
        labs = np.array([r.photo.identity for r in rows])
        srcs = np.array([str(r.photo.path) for r in rows])
        cl = np.array([r.variant == "clean" for r in rows])
        capped = np.array([r.variant in HEAD_CAPPED_VARIANTS for r in rows])
        learner, settings = CANDIDATES[name]
        fit = fit_candidate(learner, settings, head_inputs(rows), feats, labs, srcs, cl, capped=capped)
        for record, value in zip(rows, fit["out_of_fold"]):
            record.face.signals.certainty = float(value) if np.isfinite(value) else None
        fitted = {id(r) for r, v in zip(rows, fit["out_of_fold"]) if np.isfinite(v)}
        rest = [r for r in fit_rows_ + held_records if id(r) not in fitted and r.face is not None and getattr(r.face, "map_stats", None) is not None]
        for record, value in zip(rest, fit["predict"](head_inputs(rest))):
            record.face.signals.certainty = float(value)
        facts.update(setting=fit["setting"], fit_oof_pauc=round(fit["fit_oof_pauc"], 6))
        return object(), {"setting": fit["setting"]}  # stands in for a CertaintyHead: the term is added; never saved

    if name == "head_map":
        params, _ = fit_params(fit_records, model, certainty_head=True)
        annotate_certainty(params.certainty_head, held_records)
        facts["ridge_alpha"] = params.metadata["certainty_head"]["ridge_alpha"]
    else:
        original = calibrate.fit_certainty_head
        calibrate.fit_certainty_head = fitter
        try:
            params, _ = fit_params(fit_records, model, certainty_head=True)
        finally:
            calibrate.fit_certainty_head = original
    mask_probe_held_out(params.mask_probe, held_records)
    terms = params.default.terms
    facts["certainty_weight"] = round(float(params.default.weights[terms.index(CERTAINTY_TERM)]), 4)
    quality = split_quality(params, wild, fit_records, held_clean, fit_clean)
    for record in records:  # the next fit starts clean
        if record.face is not None:
            record.face.signals.certainty = None
    return quality, facts


def run_split(
    records: list, photos: list, seed: int, model: str, holdout: float, names: list[str], in_calibration: list[str], learning_curve: bool = False
) -> dict:
    held_ids, wild, features, labels, clean, sources, held, fit_clean, held_clean, fit_rows = split_rows(records, photos, seed, holdout)
    x = head_inputs(wild)
    norm = np.array([r.face.signals.feature_norm for r in wild])
    fit_f, fit_y, held_f, held_y = features[fit_clean], labels[fit_clean], features[held_clean], labels[held_clean]
    held_edc, fit_edc = PairEDC(held_f, held_y), PairEDC(fit_f, fit_y)
    assert abs(held_edc(norm[held_clean]) - wild_pauc(norm[held_clean], held_f, held_y)) < 1e-12
    start = time.time()
    logit = ours_logit(records, wild, held_ids, held_clean, fit_clean, model)
    result: dict = {"seed": seed, "held_out_photos": int(len(held_clean)), "fit_rows": int(len(fit_rows)), "ours_fit_seconds": round(time.time() - start, 1)}
    pauc = {"feature_norm": held_edc(norm[held_clean]), "ours": held_edc(logit[held_clean])}
    chosen: dict = {}
    seconds: dict = {}
    args = (features[fit_rows], labels[fit_rows], sources[fit_rows], clean[fit_rows])
    for name in names:
        start = time.time()
        oof = np.zeros(len(wild))
        if name == "head_map":
            fit = fit_head(x[fit_rows], *args)
            prediction, oof[fit_rows] = fit.predict(x), fit.out_of_fold
            chosen[name] = {"alpha": fit.alpha, "fit_oof_pauc": round(fit.pauc_by_alpha[fit.alpha], 6)}
        else:
            learner, settings = CANDIDATES[name]
            fit = fit_candidate(learner, settings, x[fit_rows], *args)
            prediction, oof[fit_rows] = fit["predict"](x), fit["out_of_fold"]
            chosen[name] = {"setting": fit["setting"], "fit_oof_pauc": round(fit["fit_oof_pauc"], 6), "oof_pauc_by_setting": fit["oof_pauc_by_setting"]}
        seconds[name] = round(time.time() - start, 1)
        pauc[name] = held_edc(prediction[held_clean])
        # Mixes, weight a in MIX chosen on the fit identities' out-of-fold head values: "+" as the bench (base + a · head,
        # both standardised on the fit photos); "+min0:" the head only lowers (a · min(0, head)); "+gated:" the head
        # read only among faces ours already trusts (quality >= TRUST), the others ranked by ours alone.
        head_std = {"fit": standard(oof[fit_clean], oof[fit_clean]), "all": standard(prediction, oof[fit_clean])}
        for mix_name, base, gate in (
            (f"feature_norm+{name}", norm, None),
            (f"ours+{name}", logit, None),
            (f"ours+min0:{name}", logit, "min0"),
            (f"ours+gated:{name}", logit, "trusted"),
        ):
            terms = {}
            for part, rows in (("fit", fit_clean), ("all", slice(None))):
                term = head_std[part]
                if gate == "min0":
                    term = np.minimum(term, 0.0)
                elif gate == "trusted":
                    term = term * (logit[rows] >= TRUST_LOGIT)
                terms[part] = (standard(base[rows], base[fit_clean]), term)
            mix = min(MIX, key=lambda a: fit_edc(terms["fit"][0] + a * terms["fit"][1]))
            pauc[mix_name] = held_edc((terms["all"][0] + mix * terms["all"][1])[held_clean])
            chosen[name][f"mix {mix_name}"] = round(float(mix), 2)
        line = f"seed {seed} {name}: held {pauc[name]:.5f} (norm {pauc['feature_norm']:.5f}) fit-oof {chosen[name]['fit_oof_pauc']:.5f} {seconds[name]} s"
        print(line, file=sys.stderr, flush=True)
    if learning_curve:
        # head_map alone fitted on a random share of the fit identities (3 draws each): how the held-out pAUC moves
        # with the number of training identities (the ridge strength chosen on each subset's own folds).
        fit_names = np.unique(labels[fit_rows])
        curve = {}
        for share in LEARNING_SHARES:
            values = []
            for draw in range(3):
                subset = np.random.default_rng(seed * 100 + draw).choice(fit_names, round(share * len(fit_names)), replace=False)
                rows = fit_rows[np.isin(labels[fit_rows], subset)]
                fit = fit_head(x[rows], features[rows], labels[rows], sources[rows], clean[rows])
                values.append(held_edc(fit.predict(x)[held_clean]))
            draws = [round(v, 6) for v in values]
            curve[f"{share:.3f}"] = {"identities": round(share * len(fit_names)), "pauc_by_draw": draws, "mean": round(float(np.mean(values)), 6)}
        result["head_map_learning_curve"] = curve
    for name in in_calibration:
        start = time.time()
        quality, facts = ours_with_head(name, records, wild, held_ids, held_clean, fit_clean, model)
        seconds[f"ours_with:{name}"] = round(time.time() - start, 1)
        pauc[f"ours_with:{name}"] = held_edc(quality[held_clean])
        chosen[f"ours_with:{name}"] = facts
        print(f"seed {seed} ours_with:{name}: held {pauc[f'ours_with:{name}']:.5f} {facts} {seconds[f'ours_with:{name}']} s", file=sys.stderr, flush=True)
    result["pauc"] = {name: round(value, 6) for name, value in pauc.items()}
    result["fit_seconds"] = seconds
    result["chosen_on_fit_identities"] = chosen
    return result


def summarise_with_fit_times(splits: list[dict]) -> dict:
    """:func:`quality_utility.summarise`, with each head's fit seconds per split."""
    summary = summarise(splits)
    for name in summary:
        if name in splits[0]["fit_seconds"]:
            summary[name]["fit_seconds_per_split"] = [s["fit_seconds"][name] for s in splits]
    return summary


def main() -> int:
    parser = split_arguments(__doc__.split("\n")[0])
    parser.add_argument("--candidates", default="head_map," + ",".join(CANDIDATES), help="comma-separated")
    parser.add_argument("--in-calibration", default="", help="comma-separated heads to put inside the calibrated score (ours_with:<head>)")
    parser.add_argument("--learning-curve", action="store_true", help="also head_map on 1/3, 1/2, 2/3 of the fit identities")
    parser.add_argument("--out", default=None, help="also write the JSON here (rewritten after every split)")
    args = parser.parse_args()
    names = args.candidates.split(",")
    photos, records = records_for(args)
    splits: list[dict] = []
    report: dict = {}
    for seed in range(args.first_seed, args.first_seed + args.splits):
        inside = [n for n in args.in_calibration.split(",") if n]
        splits.append(run_split(records, photos, seed, args.model, DEFAULT_HOLDOUT, names, inside, args.learning_curve))
        report = {
            "model": args.model,
            "measure": "EDC pAUC(0-20%) at FMR 1e-2, held-out wild third, lower is better",
            "target": "CR-FIQA certainty ratio, uncapped (as bench/quality_utility.py's head_map)",
            "selection": "every hyper-parameter and mix weight by EDC of out-of-fold values on 5 identity folds of the fit identities",
            "seeds": [s["seed"] for s in splits],
            "summary": summarise_with_fit_times(splits),
            "splits": splits,
        }
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
