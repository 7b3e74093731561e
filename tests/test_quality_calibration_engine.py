"""``frood calibrate``'s analysis and fit steps: the batched engine gives the single path's records, and the
EDC step measures what ``evaluation.metrics`` measures and only ever lowers it on the pairs it sees."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.calibrate import TERM_BOUNDS, GenuinePairs, edc_pauc, tune_for_edc
from evaluation import metrics
from evaluation.calibdata import Photo, RecordCache, collect_records, in_thorough_share


def test_batched_calibration_records_equal_single_analyses(pipeline, faces_dir, identities):
    files = sorted(identities)[:6]
    photos = [Photo("faces", faces_dir / name, f"faces:{identities[name]}") for name in files]
    plan = [(photos[0], "blur_strong"), (photos[1], "occlusion_lower")]
    records = collect_records(pipeline, photos, RecordCache(None), plan, progress=False, batch_size=4)
    assert [r.variant for r in records] == ["clean"] * len(photos) + ["blur_strong", "occlusion_lower"]
    for record in records[: len(photos)]:
        single = pipeline.analyze(record.photo.path, thorough=record.face.signals.stability is not None)
        batched, alone = record.face.signals.as_dict(), single.face.signals.as_dict()
        for name, value in batched.items():
            if value is not None:
                assert value == pytest.approx(alone[name], abs=1e-3), name
        assert float(record.face.feature @ single.face.feature) > 0.9999
        assert record.face.aligned.shape == (112, 112, 3)
    assert all(r.face is not None and r.face.aligned is not None for r in records)


def test_thorough_share_is_seeded_and_about_right():
    photos = [Photo("wild", f"/x/{index}.jpg", "wild:a") for index in range(2000)]
    chosen = [in_thorough_share(photo, "clean", 0.1) for photo in photos]
    assert chosen == [in_thorough_share(photo, "clean", 0.1) for photo in photos]
    assert 0.07 < np.mean(chosen) < 0.13


def _pairs(rng, people=40, per_person=5):
    labels = np.repeat(np.arange(people), per_person)
    first, second = np.triu_indices(len(labels), 1)
    same = labels[first] == labels[second]
    return labels, first[same], second[same]


def test_edc_pauc_matches_the_evaluation_metric():
    rng = np.random.default_rng(0)
    labels, first, second = _pairs(rng)
    logits = rng.normal(size=len(labels))
    non_match = rng.random(len(first)) < 0.15
    pairs = GenuinePairs(first, second, non_match, labels[first].astype(str))
    cosine = np.where(non_match, 0.1, 0.9)
    curve = metrics.edc_curve(cosine, np.ones(len(first), bool), np.minimum(logits[first], logits[second]), threshold=0.5)
    assert edc_pauc(logits, pairs) == pytest.approx(metrics.edc_partial_auc(curve, 0.2), abs=1e-12)


def test_edc_step_lowers_the_fit_pairs_pauc_within_the_sign_bounds():
    """A hidden 'detector' signal explains which pairs fail; the step must raise its weight (within bounds)."""
    rng = np.random.default_rng(1)
    labels, first, second = _pairs(rng, people=60)
    terms = ("feature_norm", "small_face", "det_logit", "pose", "sharpness", "occlusion")
    z = rng.normal(size=(len(labels), len(terms)))
    pair_det = np.minimum(z[first, 2], z[second, 2])
    non_match = pair_det + 0.5 * rng.normal(size=len(first)) < -1.0
    pairs = GenuinePairs(first, second, non_match, labels[first].astype(str))
    start = np.array([1.0, -0.25, 0.0, 0.0, 0.0, -2.0])
    bounds = [TERM_BOUNDS[name] for name in terms]
    tuned = tune_for_edc(z, start, terms, bounds, pairs)
    assert edc_pauc(z @ tuned, pairs) < edc_pauc(z @ start, pairs)
    assert tuned[2] > 0.2
    assert tuned[0] == start[0] and tuned[5] == start[5]  # the anchor and the occlusion term do not move
    for value, (low, high) in zip(tuned, bounds):
        assert (low is None or value >= low) and (high is None or value <= high)
