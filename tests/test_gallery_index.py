"""What only the FAISS gallery does, on seeded synthetic unit vectors: a save is one version folder behind a pointer with
no temp files left, files that do not belong together are refused, IVF retrains as it grows and an empty gallery saves
and loads. What every backend does is tests/test_contract_gallery.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.gallery_faiss import (
    INDEX_FILE,
    INDEX_TYPES,
    INFO_FILE,
    LOCK_FILE,
    METRICS,
    POINTER_FILE,
    VECTORS_FILE,
    GalleryCorruptError,
    GalleryIndex,
    current_version_dir,
)

DIM = 32
COUNT = 400
COMBOS = [(index_type, metric) for index_type in INDEX_TYPES for metric in METRICS]


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filled(index_type: str, metric: str, seed: int = 0) -> tuple[GalleryIndex, np.ndarray, list[int]]:
    """A gallery of COUNT vectors added in two batches (so IVF trains on the first, then grows)."""
    base = unit(np.random.default_rng(seed), COUNT)
    gallery = GalleryIndex.create(DIM, "model-a", index_type, metric)
    ids = gallery.add(base[:50], [f"person-{i}" for i in range(50)])
    ids += gallery.add(base[50:], [f"person-{i}" for i in range(50, COUNT)])
    return gallery, base, ids


def test_interrupted_save_is_detected(tmp_path: Path) -> None:
    """A vector.index that does not belong to its index_info.yaml (e.g. restored from another backup) is refused."""
    gallery, base, _ = filled("Flat", "IP")
    gallery.save(tmp_path / "old")
    gallery.add(base[:3], ["x", "y", "z"])
    gallery.save(tmp_path / "new")
    (current_version_dir(tmp_path / "new") / INDEX_FILE).replace(current_version_dir(tmp_path / "old") / INDEX_FILE)
    with pytest.raises(GalleryCorruptError, match="interrupted save"):
        GalleryIndex.load(tmp_path / "old")


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_a_save_is_one_version_folder_behind_a_pointer(index_type: str, metric: str, tmp_path: Path) -> None:
    gallery, base, _ = filled(index_type, metric)
    gallery.save(tmp_path / "g")
    gallery.save(tmp_path / "g")  # the second save supersedes the first
    current = current_version_dir(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == sorted([LOCK_FILE, POINTER_FILE, current.name])  # no temp files left
    assert sorted(p.name for p in current.iterdir()) == sorted([INDEX_FILE, INFO_FILE, VECTORS_FILE])
    loaded = GalleryIndex.load(tmp_path / "g", expected_model="model-a", expected_dim=DIM)
    assert loaded.search(base[:20], k=5) == gallery.search(base[:20], k=5) and loaded.info()["versions"]["faiss"]


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_tiny_and_one_at_a_time_galleries(index_type: str, tmp_path: Path) -> None:
    """IVF with fewer vectors than it could train on still answers exactly; an empty gallery saves and loads."""
    GalleryIndex.create(DIM, "model-a", index_type).save(tmp_path / "empty")
    gallery = GalleryIndex.load(tmp_path / "empty", expected_model="model-a")
    base = unit(np.random.default_rng(7), 100)
    for i, vector in enumerate(base):
        assert gallery.add(vector, [f"p{i}"]) == [i]
    assert [row[0][0] for row in gallery.search(base, k=1)] == list(range(100))
    assert len(gallery.search(base[:1], k=500)[0]) <= 100  # k beyond the gallery size: no -1 padding
    if index_type == "IVF":
        assert gallery.info()["ivf"]["nlist"] == 2  # retrained as it grew (100 // 39)


