"""The quality score on data its calibration never saw (held-out identities/subjects of the split recorded
in the params file): recaptures, real dark and masked faces, and in-the-wild photos against baselines.

Each set is subsampled with a fixed seed so the whole file costs about two CPU-minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation import metrics
from evaluation.calibdata import discover, held_out
from evaluation.heldout import BASELINES, dark_summary, heldout_photos, masked_summary, recapture_summary, score_photos, split_of, wild_edc

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_set(name: str) -> Path:
    folder = DATA_ROOT / name
    if not folder.is_dir():
        pytest.skip(f"needs the shared data set {folder} (present in CI, absent in a user's fresh clone)")
    return DATA_ROOT


@pytest.fixture(scope="module")
def params(pipeline):
    return pipeline.scorer.params


@pytest.fixture(scope="module")
def spoof(pipeline, params):
    photos = heldout_photos(data_set("spoof"), params, "spoof", per_identity=16, sample_seed=0)
    return recapture_summary(score_photos(pipeline, photos), pipeline) | {"identities": sorted({p.identity for p in photos})}


def test_these_tests_draw_the_identities_the_calibration_held_out(params):
    """The split these tests recompute from the data (evaluation.calibdata.held_out, with the seed and share in
    the params file) must be the one the shipped calibration left out of its fit, as it recorded it; a changed
    split function or data set would otherwise judge the score on identities it was fitted on. (That the fit
    reads no held-out record is tests/test_calibration_split.py's job.)"""
    seed, share = split_of(params)
    photos = discover(data_set("wild"), None, dark_per_identity=None, seed=seed)
    held = held_out(photos, seed, share)
    for name, entry in params.metadata["split"]["sets"].items():
        ours = sorted(identity.split(":", 1)[1] for identity in held if identity.startswith(f"{name}:"))
        assert ours == entry["held_out_identities"], name
        members = [p for p in photos if p.set == name]
        assert 0 < len(ours) < len({p.identity for p in members}), name


def test_printed_photo_recaptures_score_low(spoof):
    assert spoof["print"] >= 40 and spoof["live"] >= 40
    assert spoof["print_below_0_4"] >= 0.95, f"only {spoof['print_below_0_4']:.0%} of print frames scored < 0.4"
    assert spoof["print_below_0_25"] >= 0.80, f"only {spoof['print_below_0_25']:.0%} of print frames scored < 0.25"
    assert spoof["print_with_recapture_reason"] >= 0.80, f"only {spoof['print_with_recapture_reason']:.0%} say suspected_recapture"


def test_live_frames_are_trusted(spoof):
    assert spoof["live_at_least_0_6"] >= 0.95, f"only {spoof['live_at_least_0_6']:.0%} of live frames scored ≥ 0.6"


def test_no_print_is_matched_to_its_owner(spoof):
    pairs = sum(spoof["print_live_pair_decisions"].values())
    assert pairs >= 500
    assert spoof["print_pairs_decided_match"] == 0, spoof["print_live_pair_decisions"]


@pytest.fixture(scope="module")
def wild(pipeline, params):
    photos = heldout_photos(data_set("wild"), params, "wild")
    return score_photos(pipeline, photos)


def assert_beats_every_baseline(edc: dict, label: str) -> None:
    assert edc["genuine_pairs"] >= 500
    ours = edc["pauc"]["quality"]
    for name in BASELINES:
        assert ours < edc["pauc"][name], f"{label}: ours {ours:.5f} vs {name} {edc['pauc'][name]:.5f}"


def test_score_beats_every_single_baseline_on_wild_photos(wild):
    assert_beats_every_baseline(wild_edc(wild), "EDC pAUC")


def test_score_beats_every_single_baseline_on_wild_photos_not_flagged_as_recaptures(wild):
    """The same comparison on the same held-out photos, less the few (≈3 %) that fr_liveness calls
    recaptures: the recapture rule ranks those last on purpose (target 0) although most still verify,
    so EDC, which only counts verification failures, cannot credit it. Every measure gets the same pairs."""
    unflagged = [s for s in wild if "suspected_recapture" not in s.reasons]
    assert len(unflagged) >= 0.9 * len(wild)
    assert_beats_every_baseline(wild_edc(unflagged), "EDC pAUC without flagged recaptures")


def test_face_occluded_is_rarely_said_of_clean_wild_photos(wild):
    said = [s.photo.path.name for s in wild if "face_occluded" in s.reasons]
    assert len(said) <= 0.03 * len(wild), f"face_occluded said of {len(said)} of {len(wild)} clean held-out photos: {said[:10]}"


def test_match_thresholds_hold_their_false_match_rate_on_held_out_identities(pipeline, params, wild):
    kept = [s for s in wild if s.feature is not None]
    features = np.stack([s.feature for s in kept])
    labels = np.array([s.photo.identity for s in kept])
    scores, genuine = metrics.pair_similarities(features, labels)
    impostor = scores[~genuine]
    assert impostor.size >= 30_000
    # Sampling noise on ~40k pairs: a 1e-3 threshold may read up to ~2e-3, a 1e-4 one up to ~5e-4.
    assert (impostor >= pipeline.match_threshold).mean() <= 2e-3
    assert (impostor >= params.metadata["strict_match_threshold"]).mean() <= 5e-4


def test_deep_shadow_scores_below_the_same_persons_lit_face(pipeline, params):
    photos = heldout_photos(data_set("dark"), params, "dark", ("lit", "shadow"), per_identity=8, sample_seed=0)
    summary = dark_summary(score_photos(pipeline, photos))
    assert summary["pairs"] >= 30
    assert summary["shadow_lower_share"] >= 0.9, summary


def test_masked_faces_score_below_unmasked(pipeline, params):
    photos = heldout_photos(data_set("masked"), params, "masked", per_identity=8, sample_seed=0)
    summary = masked_summary(score_photos(pipeline, photos))
    assert summary["pairs"] >= 100
    assert summary["masked_lower_share"] >= 0.9, summary
