"""Shared fixtures: the real pipeline (loaded once) and the shared photo folder (skips when absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"

torch.set_num_threads(2)


def shared_faces_dir() -> Path:
    if not (SHARED_FACES / "identities.csv").is_file():
        pytest.skip(f"needs the shared photo set at {SHARED_FACES} (present in CI, absent in a user's fresh clone)")
    return SHARED_FACES


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return shared_faces_dir()


@pytest.fixture(scope="session")
def identities(faces_dir: Path) -> dict[str, str]:
    with open(faces_dir / "identities.csv", newline="") as handle:
        return {row["file"]: row["identity"] for row in csv.DictReader(handle)}


@pytest.fixture(scope="session")
def pipeline():
    from service.models import create_pipeline

    return create_pipeline("default", device="cpu")


@pytest.fixture(scope="session")
def mtcnn_detector():
    """MTCNN as the pipeline runs it with DETECTOR=mtcnn (the default detector is YuNet): for the tests of its own
    batched and letterboxed passes."""
    from engine.face.detect import MTCNNDetector

    return MTCNNDetector(device="cpu")


@pytest.fixture(scope="session")
def clean_results(pipeline, faces_dir: Path, identities: dict[str, str]):
    """Analysis of every labelled photo, computed once for the session. Most faces/ identities were fitted
    on by the quality calibration: a test asserting on a score, a reason or a threshold uses
    :func:`held_out_clean_results` instead."""
    return {file: pipeline.analyze(faces_dir / file) for file in sorted(identities)}


@pytest.fixture(scope="session")
def held_out_files(pipeline, identities: dict[str, str]) -> list[str]:
    """faces/ photos of the identities the quality calibration held out (split ``faces``, the seed and share
    recorded in the params file; 4 of 13 identities, 17 photos), sorted."""
    from evaluation.calibdata import split_identities
    from evaluation.heldout import split_of

    seed, share = split_of(pipeline.scorer.params)
    held = split_identities([f"faces:{name}" for name in identities.values()], "faces", seed, share)
    return sorted((file for file, name in identities.items() if f"faces:{name}" in held), key=lambda file: (len(file), file))


@pytest.fixture(scope="session")
def held_out_clean_results(pipeline, faces_dir: Path, held_out_files: list[str]):
    """Analysis of the held-out identities' faces/ photos (as :func:`clean_results`, without analysing the rest)."""
    return {file: pipeline.analyze(faces_dir / file) for file in held_out_files}


@pytest.fixture
def attached_store(tmp_path):
    """A fresh SQLite stats store that ``service.faces`` records into for one test (no webhook outbox)."""
    from service import faces as service
    from storage.stats_sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "stats.sqlite3", tmp_path / "thumbs")
    service.attach(store, None)
    yield store
    service.attach(None, None)
    store.close()


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A temporary folder of this test's own as ``tempfile``'s default: what the UI writes there can be counted."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
