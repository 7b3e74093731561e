"""Same person scores above different people: every master.csv pair is decided at the model's threshold."""

from __future__ import annotations

import csv

import numpy as np


def test_features_are_512d_unit_vectors(clean_results):
    for result in clean_results.values():
        feature = result.face.feature
        assert feature.shape == (512,) and feature.dtype == np.float32
        assert abs(float(np.linalg.norm(feature)) - 1.0) < 1e-4


def test_every_master_pair_is_decided_correctly(pipeline, faces_dir, clean_results):
    threshold = pipeline.match_threshold
    wrong = []
    with open(faces_dir / "master.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            similarity = float(clean_results[row["file_x"]].face.feature @ clean_results[row["file_y"]].face.feature)
            same = row["Decision"] == "Yes"
            if (similarity >= threshold) != same:
                wrong.append((row["file_x"], row["file_y"], row["Decision"], round(similarity, 3)))
    assert not wrong, f"pairs decided wrongly at threshold {threshold:.3f}: {wrong}"


def test_same_person_scores_above_different_people(clean_results, identities):
    names = sorted(clean_results)
    features = np.stack([clean_results[name].face.feature for name in names])
    similarity = features @ features.T
    labels = np.array([identities[name] for name in names])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(names), dtype=bool)
    assert similarity[same & off_diagonal].mean() > similarity[~same].mean() + 0.4


def test_mirrored_photo_matches_its_original(pipeline, faces_dir):
    result = pipeline.compare(faces_dir / "img11.jpg", faces_dir / "img11_reflection.jpg")
    assert result.similarity > pipeline.match_threshold
    assert result.decision == "match"
