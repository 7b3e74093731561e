"""The quality score on data its calibration never saw: the held-out identities/subjects of each set.

``frood eval --heldout DATA_ROOT`` (and the quality tests) read the split that produced the committed
params file (its seed and held-out share, recorded in the file), analyse a seeded sample of the
held-out photos, and report:
- in-the-wild: EDC pAUC(0–20 %) at FMR 1e-2 of our score against each single baseline (feature norm,
  detector score, face size, sharpness) — lower is better;
- recapture: AUROC live-above-print of the score, the shares of prints under 0.4 / 0.25 and of live
  frames at or over 0.6, and how many (print, live) pairs of the same subject the compare table calls "match";
- dark: share of deep-shadow faces scoring lower than the same person's frontal lit face;
- masked: share of (masked, unmasked) pairs of the same person where the masked face scores lower;
- the match thresholds' FMR on held-out impostors with identity-bootstrap intervals (from the params file);
- with ``--splits N`` (:func:`split_spread`): the in-the-wild EDC of every measure on the held-out third of N
  identity splits (seeds ``s … s + N - 1``, ``s`` the params' own), mean ± standard deviation, so that a gain can be
  told from the split's noise. The score was fitted on split ``s``: on the other splits part of the held-out third
  are identities it was fitted on, and its numbers there are marked (``quality_fitted_on_part``); the refitted
  per-split comparison is ``bench/quality_utility.py``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.face.pipeline import PipelineConfig
from errors import FroodError
from evaluation import metrics
from evaluation.calibdata import Photo, discover, held_out, split_identities

BASELINES = ("feature_norm", "det_score", "face_px", "sharpness")
EDC_FMR = 1e-2
EDC_MAX_DISCARD = 0.2


@dataclass
class Scored:
    """One analysed photo's main face (``quality`` 0 and no feature when no face was found)."""

    photo: Photo
    quality: float
    feature: np.ndarray | None
    values: dict[str, float]
    reasons: list[str]


def split_of(params: Any) -> tuple[int, float]:
    split = params.metadata.get("split", {})
    if "seed" not in split:
        raise ValueError("this params file records no identity split: recalibrate with `frood calibrate --data-root ...`")
    return int(split["seed"]), float(split["held_out_share"])


def heldout_photos(
    root: Path, params: Any, set_name: str, kinds: tuple[str, ...] | None = None, per_identity: int | None = None, sample_seed: int = 0
) -> list[Photo]:
    """Held-out photos of one set (optionally only some kinds, at most ``per_identity`` per identity and kind)."""
    seed, share = split_of(params)
    photos = discover(Path(root), None, dark_per_identity=None, seed=seed)
    held = held_out(photos, seed, share)
    chosen = [p for p in photos if p.set == set_name and p.identity in held and (kinds is None or p.kind in kinds)]
    if per_identity is None:
        return chosen
    rng = np.random.default_rng(sample_seed)
    result = []
    for key in sorted({(p.identity, p.kind) for p in chosen}):
        members = [p for p in chosen if (p.identity, p.kind) == key]
        if len(members) > per_identity:
            members = [members[i] for i in sorted(rng.choice(len(members), per_identity, replace=False))]
        result += members
    return result


def score_photos(pipeline: Any, photos: list[Photo], progress: bool = False, batch_size: int = 16) -> list[Scored]:
    """Every photo through the batched engine (``analyze_stream``); a photo the engine refuses scores 0 with its error code."""
    from tqdm import tqdm

    out = []
    with tqdm(total=len(photos), desc="held-out photos", file=sys.stderr, disable=not progress) as bar:
        results = (result for chunk in pipeline.analyze_stream([p.path for p in photos], batch_size=batch_size) for result in chunk)
        for photo, result in zip(photos, results):
            bar.update(1)
            if isinstance(result, FroodError) or not result.faces:
                reason = result.code if isinstance(result, FroodError) else "no_face"
                out.append(Scored(photo, 0.0, None, {name: math.nan for name in BASELINES}, [reason]))
                continue
            face = result.face
            values = {
                "feature_norm": face.signals.feature_norm,
                "det_score": face.det_score,
                "face_px": face.signals.face_px,
                "sharpness": face.signals.sharpness,
            }
            out.append(Scored(photo, float(face.quality), np.asarray(face.feature), values, list(face.reasons)))
    return out


def wild_edc(scored: list[Scored]) -> dict:
    """EDC pAUC(0–20 %) at FMR 1e-2 over all pairs of the held-out photos, for our score and each baseline.

    Pair value: the min of its two images'. A photo without a face is left out (it would be refused
    before any comparison)."""
    kept = [s for s in scored if s.feature is not None]
    features = np.stack([s.feature for s in kept])
    labels = np.array([s.photo.identity for s in kept])
    first, second, _ = metrics.pair_indices(labels)
    scores, genuine = metrics.pair_similarities(features, labels)
    measures = {"quality": np.array([s.quality for s in kept])} | {name: np.array([s.values[name] for s in kept]) for name in BASELINES}
    areas = {}
    for name, per_image in measures.items():
        pair_quality = np.minimum(per_image[first], per_image[second])
        curve = metrics.edc_curve(scores, genuine, pair_quality, fmr=EDC_FMR)
        areas[name] = metrics.edc_partial_auc(curve, EDC_MAX_DISCARD)
    pairs = {"genuine_pairs": int(genuine.sum()), "impostor_pairs": int((~genuine).sum())}
    return {"photos": len(kept), "no_face": len(scored) - len(kept), **pairs, "pauc": areas}


def split_spread(scored: list[Scored], seeds: list[int], holdout: float, fitted_seed: int | None = None) -> dict:
    """:func:`wild_edc` on the held-out third of several identity splits of the same in-the-wild photos.

    ``scored``: every photo of the set (each split holds out its own third, chosen by
    :func:`evaluation.calibdata.split_identities` exactly as the calibration does). Returns each split's areas and,
    per measure, mean, sample standard deviation, min, max and the mean ratio to the feature norm."""
    identities = [s.photo.identity for s in scored]
    set_name = scored[0].photo.set if scored else "wild"
    per_split = []
    for seed in seeds:
        held = split_identities(identities, set_name, seed, holdout)
        entry = {"seed": seed, **wild_edc([s for s in scored if s.photo.identity in held])}
        entry["quality_fitted_on_part"] = fitted_seed is not None and seed != fitted_seed
        per_split.append(entry)
    summary = {}
    for name in per_split[0]["pauc"] if per_split else []:
        values = np.array([entry["pauc"][name] for entry in per_split])
        norm = np.array([entry["pauc"]["feature_norm"] for entry in per_split])
        summary[name] = {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()),
            "max": float(values.max()),
            "mean_ratio_to_feature_norm": float(np.mean(values / norm)),
        }
    return {"seeds": list(seeds), "held_out_share": holdout, "splits": per_split, "summary": summary}


def recapture_summary(scored: list[Scored], pipeline: Any) -> dict:
    """Score separation of live and print frames, and the compare decisions of (print, live) pairs."""
    from engine.face.pipeline import decide

    live = [s for s in scored if s.photo.kind == "live"]
    prints = [s for s in scored if s.photo.kind == "print"]
    live_q, print_q = np.array([s.quality for s in live]), np.array([s.quality for s in prints])
    settings = pipeline.config
    decisions: dict[str, int] = {}
    matched = 0
    for attack in prints:
        if attack.feature is None:
            continue
        for person in live:
            if person.photo.identity != attack.photo.identity or person.feature is None:
                continue
            decision = decide(float(attack.feature @ person.feature), attack.quality, person.quality, pipeline.match_threshold,
                              settings.reject_threshold, settings.trust_threshold)
            decisions[decision] = decisions.get(decision, 0) + 1
            matched += decision == "match"
    return {
        "live": len(live),
        "print": len(prints),
        "auroc_live_above_print": metrics.ood_auroc(live_q, print_q),
        "print_below_0_4": float((print_q < 0.4).mean()),
        "print_below_0_25": float((print_q < 0.25).mean()),
        "print_with_recapture_reason": float(np.mean(["suspected_recapture" in s.reasons for s in prints])),
        "live_at_least_0_6": float((live_q >= 0.6).mean()),
        "median_live": float(np.median(live_q)),
        "median_print": float(np.median(print_q)),
        "print_live_pair_decisions": decisions,
        "print_pairs_decided_match": matched,
    }


def dark_summary(scored: list[Scored]) -> dict:
    """Share of deep-shadow faces scoring lower than the same person's frontal lit (A+000E+00) face."""
    lit = {s.photo.identity: s.quality for s in scored if s.photo.kind == "lit"}
    shadow = [s for s in scored if s.photo.kind == "shadow" and s.photo.identity in lit]
    lower = [s.quality < lit[s.photo.identity] for s in shadow]
    return {"pairs": len(lower), "shadow_lower_share": float(np.mean(lower)) if lower else math.nan,
            "median_lit": float(np.median(list(lit.values()))) if lit else math.nan,
            "median_shadow": float(np.median([s.quality for s in shadow])) if shadow else math.nan}


def masked_summary(scored: list[Scored]) -> dict:
    """Share of (masked, unmasked) pairs of the same person where the masked face scores lower."""
    masked = [s for s in scored if s.photo.kind == "masked"]
    unmasked = [s for s in scored if s.photo.kind == "unmasked"]
    lower = [m.quality < u.quality for m in masked for u in unmasked if m.photo.identity == u.photo.identity]
    return {"pairs": len(lower), "masked_lower_share": float(np.mean(lower)) if lower else math.nan,
            "median_masked": float(np.median([s.quality for s in masked])) if masked else math.nan,
            "median_unmasked": float(np.median([s.quality for s in unmasked])) if unmasked else math.nan}


def run_heldout(pipeline: Any, root: Path, per_identity: int | None = None, seed: int = 0, progress: bool = True, splits: int = 1) -> dict:
    """Every held-out measurement above on the sets present under ``root``; ``splits`` > 1 adds :func:`split_spread`
    over that many identity splits of the in-the-wild set (all its photos analysed once)."""
    params = pipeline.scorer.params
    report: dict[str, Any] = {"model": pipeline.model, "split": params.metadata.get("split", {}) | {"sets": None}, "per_identity": per_identity}
    root = Path(root)
    if (root / "wild").is_dir() and splits > 1:
        split_seed, share = split_of(params)
        every = [p for p in discover(root, None, dark_per_identity=None, seed=split_seed) if p.set == "wild"]
        scored = score_photos(pipeline, every, progress)
        held = held_out(every, split_seed, share)
        report["wild"] = wild_edc([s for s in scored if s.photo.identity in held])
        report["wild_splits"] = split_spread(scored, list(range(split_seed, split_seed + splits)), share, split_seed)
    elif (root / "wild").is_dir():
        report["wild"] = wild_edc(score_photos(pipeline, heldout_photos(root, params, "wild", None, per_identity, seed), progress))
    if (root / "spoof").is_dir():
        report["spoof"] = recapture_summary(score_photos(pipeline, heldout_photos(root, params, "spoof", None, per_identity, seed), progress), pipeline)
    if (root / "dark").is_dir():
        photos = heldout_photos(root, params, "dark", ("lit", "shadow"), per_identity, seed)
        report["dark"] = dark_summary(score_photos(pipeline, photos, progress))
    if (root / "masked").is_dir():
        report["masked"] = masked_summary(score_photos(pipeline, heldout_photos(root, params, "masked", None, per_identity, seed), progress))
    report["thresholds"] = {
        "match_threshold": params.match_threshold,
        "strict_match_threshold": params.metadata.get("strict_match_threshold"),
        "held_out": params.metadata.get("threshold", {}).get("held_out"),
    }
    return report


def heldout_table(report: dict) -> str:
    """The comparison a reader needs, as fixed-width text."""
    lines = [f"held-out split (seed {report['split'].get('seed')}, share {report['split'].get('held_out_share')}) — model {report['model']}"]
    wild = report.get("wild")
    if wild:
        lines.append(f"in-the-wild: {wild['photos']} photos, {wild['genuine_pairs']} genuine / {wild['impostor_pairs']} impostor pairs")
        lines.append(f"  {'measure':<14}EDC pAUC(0-20%) at FMR {EDC_FMR:g} (lower is better)")
        ours = wild["pauc"]["quality"]
        for name, area in sorted(wild["pauc"].items(), key=lambda item: item[1]):
            note = "" if name == "quality" else ("  ours lower" if ours < area else "  BASELINE LOWER")
            lines.append(f"  {name:<14}{area:.5f}{note}")
    spread = report.get("wild_splits")
    if spread:
        seeds = spread["seeds"]
        lines.append(f"in-the-wild over {len(seeds)} identity splits (seeds {seeds[0]}-{seeds[-1]}): mean ± sd, ratio to feature norm")
        for name, entry in sorted(spread["summary"].items(), key=lambda item: item[1]["mean"]):
            lines.append(f"  {name:<14}{entry['mean']:.5f} ± {entry['sd']:.5f}  (x{entry['mean_ratio_to_feature_norm']:.3f})")
        if any(entry["quality_fitted_on_part"] for entry in spread["splits"]):
            lines.append(f"  (quality was fitted on split seed {seeds[0]}: on the other splits part of their held-out third was fitted on)")
    spoof = report.get("spoof")
    if spoof:
        lines.append(
            f"recapture: AUROC live-above-print {spoof['auroc_live_above_print']:.3f}; print < 0.4 {spoof['print_below_0_4']:.1%}, "
            f"< 0.25 {spoof['print_below_0_25']:.1%}; live >= 0.6 {spoof['live_at_least_0_6']:.1%}; "
            f"(print, live) pairs decided match: {spoof['print_pairs_decided_match']} of {sum(spoof['print_live_pair_decisions'].values())}"
        )
    dark = report.get("dark")
    if dark:
        lines.append(f"dark: deep shadow scores below the same person's frontal lit face in {dark['shadow_lower_share']:.1%} of {dark['pairs']}")
    masked = report.get("masked")
    if masked:
        lines.append(f"masked: masked scores below the same person's unmasked face in {masked['masked_lower_share']:.1%} of {masked['pairs']} pairs")
    held = (report.get("thresholds") or {}).get("held_out")
    if held:
        for key, label in (("at_match_threshold", "match"), ("at_strict_threshold", "strict")):
            entry = held[key]
            interval = f"95% CI {entry['ci95'][0]:.1e}–{entry['ci95'][1]:.1e}"
            lines.append(f"{label} threshold: FMR {entry['fmr']:.2e} ({interval}, target {entry['target_fmr']:g}), TAR {entry['tar']:.3f}")
    return "\n".join(lines)


def scored_from_records(records: list[Any], scorer: Any) -> list[Scored]:
    """:class:`Scored` entries from calibration records (``evaluation.calibdata.ImageRecord``), scored in default
    mode: the held-out numbers without analysing the photos again."""
    from dataclasses import replace

    out = []
    for record in records:
        face = record.face
        if face is None:
            out.append(Scored(record.photo, 0.0, None, {name: math.nan for name in BASELINES}, ["no_face"]))
            continue
        signals = replace(face.signals, stability=None)
        result = scorer.score(signals)
        values = {"feature_norm": signals.feature_norm, "det_score": signals.det_score, "face_px": signals.face_px, "sharpness": signals.sharpness}
        out.append(Scored(record.photo, result.score, face.feature, values, result.reasons))
    return out


class _Thresholds:
    """The two settings :func:`recapture_summary` reads from a pipeline, for reports made without one."""

    def __init__(self, match_threshold: float, reject: float = 0.4, trust: float = 0.6):
        self.match_threshold = match_threshold
        self.config = PipelineConfig(reject_threshold=reject, trust_threshold=trust)


def report_from_records(records: list[Any], holdout_ids: set[str], scorer: Any) -> dict:
    """The held-out report (as :func:`run_heldout`) from calibration records of held-out identities."""
    held = [r for r in records if r.photo.identity in holdout_ids and r.variant == "clean"]
    report: dict[str, Any] = {}
    by_set = {name: scored_from_records([r for r in held if r.photo.set == name], scorer) for name in ("wild", "spoof", "dark", "masked")}
    if by_set["wild"]:
        report["wild"] = wild_edc(by_set["wild"])
    if by_set["spoof"]:
        report["spoof"] = recapture_summary(by_set["spoof"], _Thresholds(scorer.params.match_threshold))
    if by_set["dark"]:
        report["dark"] = dark_summary(by_set["dark"])
    if by_set["masked"]:
        report["masked"] = masked_summary(by_set["masked"])
    degraded = [r for r in records if r.photo.identity in holdout_ids and r.variant != "clean"]
    if degraded:
        clean = {str(r.photo.path): s.quality for r, s in zip(held, scored_from_records(held, scorer))}
        wins: dict[str, list[bool]] = {}
        for record, scored in zip(degraded, scored_from_records(degraded, scorer)):
            if str(record.photo.path) in clean:
                wins.setdefault(record.variant, []).append(scored.quality < clean[str(record.photo.path)])
        report["degraded_scores_lower_share"] = {name: [round(float(np.mean(v)), 3), len(v)] for name, v in sorted(wins.items())}
    return report
