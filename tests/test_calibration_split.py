"""The calibration's split and threshold arithmetic (no models): what the tests rely on to be honest."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import pytest

from calibration.calibrate import empirical_threshold, fit_from_records, grouped_fmr_ci
from engine.quality.signals import QualitySignals
from evaluation import metrics
from evaluation.calibdata import FaceRecord, ImageRecord, Photo, held_out, is_deep_shadow, split_identities, yale_angles


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
    scores, genuine = metrics.pair_similarities(features, labels)
    assert result["impostor_pairs"] == (~genuine).sum() == 200 * 199 // 2 - 40 * 10
    assert result["fmr"] == pytest.approx((scores[~genuine] >= 0.3).mean())
    assert result["ci95"][0] <= result["fmr"] <= result["ci95"][1]


def test_one_pair_enumerator_for_calibration_and_evaluation():
    """Calibration's thresholds, the held-out EDC and ``frood eval``'s generated pairs all enumerate pairs with
    :func:`evaluation.metrics.pair_indices`: every unordered pair once, genuine exactly when the labels agree."""
    from evaluation.datasets import generate_pairs

    labels = np.array(["a", "b", "a", "c", "b", "a"])
    first, second, genuine = metrics.pair_indices(labels)
    combos = list(itertools.combinations(range(len(labels)), 2))
    assert list(zip(first.tolist(), second.tolist())) == combos
    assert genuine.tolist() == [labels[i] == labels[j] for i, j in combos]
    paths = [Path(f"/x/{index}.jpg") for index in range(len(labels))]
    pairs = generate_pairs(dict(zip(paths, labels)), seed=0, impostor_ratio=100.0)  # asks for more than exist: all of them
    assert {(p.a, p.b) for p in pairs if not p.genuine} == {(paths[i], paths[j]) for i, j in zip(first[~genuine], second[~genuine])}
    assert {(p.a, p.b) for p in pairs if p.genuine} == {(paths[i], paths[j]) for i, j in zip(first[genuine], second[genuine])}


def test_yale_names_and_deep_shadow_rule():
    assert yale_angles("yaleB01_P00A-110E+15.png") == (-110, 15)
    assert is_deep_shadow(-110, 15) and is_deep_shadow(0, 45) and not is_deep_shadow(20, 10)


# --------------------------------------------------------------------------- the fit never reads held-out identities


def _signals(rng: np.random.Generator, thorough: bool) -> QualitySignals:
    return QualitySignals(
        det_score=float(rng.uniform(0.6, 0.999)), face_px=float(rng.uniform(30, 200)), feature_norm=float(rng.uniform(15, 30)),
        yaw=float(rng.normal(0, 20)), pitch=float(rng.normal(0, 10)), roll=0.0, sharpness=float(rng.uniform(0.5, 5)),
        brightness=float(rng.uniform(30, 200)), contrast=40.0, overexposed=float(rng.uniform(0, 0.3)), underexposed=float(rng.uniform(0, 0.3)),
        real_prob=float(rng.uniform(0.5, 1.0)), eyes_open=float(rng.uniform(0, 1)), stability=float(rng.uniform(0.6, 1.0)) if thorough else None,
        truncation=float(rng.choice([0.0, 0.2])), eye_landmark_error=0.02, lower_face_chroma=float(rng.uniform(0, 20)),
    )


def synthetic_calibration(seed: int = 0) -> tuple[list[ImageRecord], list[Photo]]:
    """Two sets (``wild``: 30 people × 4 photos, one degraded copy each of 30 photos; ``masked``: 12 people × 2 masked
    + 2 unmasked) with identity-clustered 32-d features whose noise grows as the photo's sharpness drops."""
    rng = np.random.default_rng(seed)
    mask_direction = rng.normal(size=32)
    records, photos = [], []

    def add(photo: Photo, variant: str, shift: np.ndarray, centre: np.ndarray) -> None:
        signals = _signals(rng, thorough=len(records) % 3 == 0)
        feature = centre + (1.2 / signals.sharpness) * rng.normal(size=32) + shift
        face = FaceRecord([0, 0, 100, 100], (feature / np.linalg.norm(feature)).astype(np.float32), signals)
        records.append(ImageRecord(photo, variant, (480, 640), [face]))

    for person in range(30):
        centre = rng.normal(size=32) * 0.5
        for index in range(4):
            photo = Photo("wild", Path(f"/wild/{person}/{index}.jpg"), f"wild:{person}")
            photos.append(photo)
            add(photo, "clean", 0.0, centre)
            if index == 0:
                add(photo, "blur_strong", rng.normal(size=32), centre)
    for person in range(12):
        centre = rng.normal(size=32) * 0.5
        for kind in ("masked", "masked", "unmasked", "unmasked"):
            photo = Photo("masked", Path(f"/masked/{kind}/{person}/{len(photos)}.jpg"), f"masked:{person}", kind, reference=kind == "unmasked")
            photos.append(photo)
            add(photo, "clean", 0.4 * mask_direction if kind == "masked" else 0.0, centre)
    return records, photos


def _fit(records, photos, holdout_ids, path: Path):
    return fit_from_records(records, photos, holdout_ids, "synthetic", 8, path, None, None, 8, 1 / 3, {})


def _fitted_values(params) -> dict:
    values = {"match_threshold": params.match_threshold, "thresholds": params.metadata["threshold"]["thresholds"],
              "strict": params.metadata["strict_match_threshold"], "probe": params.mask_probe.as_dict()}
    for name in ("default", "thorough"):
        model = getattr(params, name)
        values[name] = {key: np.round(value, 10).tolist() if isinstance(value, np.ndarray) else value for key, value in vars(model).items()}
    return values


def test_fitted_parameters_do_not_depend_on_held_out_records(tmp_path):
    """Scrambling every held-out record (features and signals) must leave every fitted number unchanged —
    thresholds, weights (EDC step included), temperatures, the mask probe — and change only the held-out report."""
    records, photos = synthetic_calibration()
    holdout_ids = held_out(photos, 8, 1 / 3)
    assert 10 <= sum(r.photo.identity in holdout_ids for r in records) < len(records) / 2
    first = _fit(copy.deepcopy(records), photos, holdout_ids, tmp_path / "a.json")

    rng = np.random.default_rng(99)
    scrambled = copy.deepcopy(records)
    for record in scrambled:
        if record.photo.identity in holdout_ids:
            feature = rng.normal(size=32)
            signals = _signals(rng, record.face.signals.stability is not None)
            record.faces[0] = FaceRecord([0, 0, 100, 100], (feature / np.linalg.norm(feature)).astype(np.float32), signals)
    second = _fit(scrambled, photos, holdout_ids, tmp_path / "b.json")

    assert _fitted_values(first) == _fitted_values(second)
    for key in ("default_fit", "thorough_fit", "mean_target_by_group", "fit_samples"):
        assert first.metadata[key] == second.metadata[key], key
    # The held-out report did read the held-out records (so the comparison above is not vacuous).
    assert first.metadata["held_out_report"] != second.metadata["held_out_report"]
    assert first.metadata["threshold"]["held_out"] != second.metadata["threshold"]["held_out"]


def test_fit_steps_get_fit_identities_only_and_the_held_out_report_comes_once_at_the_end(tmp_path, monkeypatch):
    import calibration.calibrate as calibrate

    records, photos = synthetic_calibration()
    holdout_ids = held_out(photos, 8, 1 / 3)
    calls: list[tuple[str, set[str]]] = []

    def spy(name):
        original = getattr(calibrate, name)

        def wrapper(items, *args, **kwargs):
            calls.append((name, {getattr(item, "identity", None) or item.photo.identity for item in items}))
            return original(items, *args, **kwargs)

        monkeypatch.setattr(calibrate, name, wrapper)

    for name in ("fit_mask_probe", "fit_thresholds", "assign_targets", "fit_logit_model"):
        spy(name)
    report = calibrate.held_out_report

    def held_out_spy(params, held, thresholds):
        calls.append(("held_out_report", {record.photo.identity for record in held}))
        return report(params, held, thresholds)

    monkeypatch.setattr(calibrate, "held_out_report", held_out_spy)
    _fit(records, photos, holdout_ids, tmp_path / "p.json")

    names = [name for name, _ in calls]
    assert names.count("held_out_report") == 1 and names[-1] == "held_out_report", names
    assert {"fit_mask_probe", "fit_thresholds", "assign_targets", "fit_logit_model"} <= set(names)
    for name, seen in calls[:-1]:
        assert seen and not seen & holdout_ids, f"{name} was given held-out identities {sorted(seen & holdout_ids)}"
    assert calls[-1][1] == {r.photo.identity for r in records} & holdout_ids
