"""Issue 28: the quality score's utility measured over several identity splits (``frood eval --heldout --splits N``).

Each split's numbers come from its own held-out third only; nothing here asserts on fitted data. The measured
comparison (refitted per split) is ``bench/quality_utility.py`` and docs/quality.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.calibdata import Photo, discover, held_out, split_identities
from evaluation.heldout import BASELINES, Scored, heldout_table, split_spread

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
SEEDS = [8, 9, 10, 11, 12]


def synthetic_scored(people: int = 30, per_person: int = 4, seed: int = 0) -> list[Scored]:
    """Photos of ``people`` identities: features near the person's centre, noisier when the quality is lower."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 64))
    out = []
    for person in range(people):
        for index in range(per_person):
            quality = float(rng.uniform(0.05, 1.0))
            feature = centres[person] + rng.normal(size=64) * (2.5 - 2.0 * quality)
            feature /= np.linalg.norm(feature)
            values = {name: float(rng.normal()) for name in BASELINES} | {"feature_norm": quality + float(rng.normal(0, 0.3))}
            out.append(Scored(Photo("wild", Path(f"p{person}_{index}.jpg"), f"wild:p{person}"), quality, feature, values, []))
    return out


def test_each_split_is_measured_on_its_own_held_out_third():
    scored = synthetic_scored()
    spread = split_spread(scored, SEEDS, 1 / 3, fitted_seed=8)
    assert spread["seeds"] == SEEDS
    identities = [s.photo.identity for s in scored]
    thirds = []
    for entry, seed in zip(spread["splits"], SEEDS):
        held = split_identities(identities, "wild", seed, 1 / 3)
        thirds.append(frozenset(held))
        assert entry["photos"] == sum(s.photo.identity in held for s in scored)
        assert entry["quality_fitted_on_part"] == (seed != 8)
    assert len(set(thirds)) == len(SEEDS), "the splits must hold out different thirds"


def test_the_spread_summarises_every_measure_over_the_splits():
    spread = split_spread(synthetic_scored(seed=1), SEEDS, 1 / 3)
    assert set(spread["summary"]) == {"quality", *BASELINES}
    for name, entry in spread["summary"].items():
        values = [split["pauc"][name] for split in spread["splits"]]
        assert entry["mean"] == pytest.approx(np.mean(values))
        assert entry["sd"] == pytest.approx(np.std(values, ddof=1))
        assert entry["min"] <= entry["mean"] <= entry["max"]
    assert spread["summary"]["feature_norm"]["mean_ratio_to_feature_norm"] == pytest.approx(1.0)
    table = heldout_table({"model": "m", "split": {"seed": 8, "held_out_share": 1 / 3}, "wild_splits": spread})
    assert "identity splits (seeds 8-12)" in table and "feature_norm" in table


def test_the_params_split_is_the_first_of_the_spread():
    """The spread's first split is the calibration's own: the same held-out wild identities as the params file's."""
    if not (DATA_ROOT / "wild").is_dir():
        pytest.skip(f"needs the shared data set {DATA_ROOT / 'wild'} (present in CI, absent in a user's fresh clone)")
    from engine.quality.scorer import QualityParams, params_path_for

    params = QualityParams.load(params_path_for("faceplugin-r512"))
    split = params.metadata["split"]
    wild = [p for p in discover(DATA_ROOT, None, dark_per_identity=None, seed=split["seed"]) if p.set == "wild"]
    held = {name.split(":", 1)[1] for name in held_out(wild, split["seed"], split["held_out_share"])}
    assert held == set(split["sets"]["wild"]["held_out_identities"])
