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
def clean_results(pipeline, faces_dir: Path, identities: dict[str, str]):
    """Analysis of every labelled photo, computed once for the session."""
    return {file: pipeline.analyze(faces_dir / file) for file in sorted(identities)}
