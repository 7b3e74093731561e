"""The FAISS gallery on seeded synthetic unit vectors: every index type × metric, add/remove/search/save/load."""

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
    GalleryMismatchError,
    current_version_dir,
)

DIM = 32
COUNT = 400
COMBOS = [(index_type, metric) for index_type in INDEX_TYPES for metric in METRICS]


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def noisy(vectors: np.ndarray, rng: np.random.Generator, scale: float = 0.05) -> np.ndarray:
    """The same faces seen again: a little noise, renormalised."""
    out = vectors + rng.normal(scale=scale, size=vectors.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def filled(index_type: str, metric: str, seed: int = 0) -> tuple[GalleryIndex, np.ndarray, list[int]]:
    """A gallery of COUNT vectors added in two batches (so IVF trains on the first, then grows)."""
    base = unit(np.random.default_rng(seed), COUNT)
    gallery = GalleryIndex.create(DIM, "model-a", index_type, metric)
    ids = gallery.add(base[:50], [f"person-{i}" for i in range(50)])
    ids += gallery.add(base[50:], [f"person-{i}" for i in range(50, COUNT)])
    return gallery, base, ids


def hit_ids(results: list[list[tuple[int, str, float]]]) -> list[list[int]]:
    return [[hit[0] for hit in row] for row in results]


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_nearest_neighbour_of_a_noised_vector_is_its_own_label(index_type: str, metric: str) -> None:
    gallery, base, ids = filled(index_type, metric)
    assert ids == list(range(COUNT)) and len(gallery) == COUNT
    rng = np.random.default_rng(1)
    results = gallery.search(noisy(base, rng), k=3)
    assert all(row[0][1] == f"person-{i}" for i, row in enumerate(results))
    assert all(row[0][2] > 0.9 for row in results)  # cosine units whatever the metric
    assert all(row[0][2] >= row[1][2] >= row[2][2] for row in results)  # best first


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_removed_ids_are_never_returned(index_type: str, metric: str) -> None:
    gallery, base, ids = filled(index_type, metric)
    removed = ids[::3]
    assert gallery.remove(removed) == len(removed)
    assert len(gallery) == COUNT - len(removed) and not set(removed) & set(gallery.labels)
    found = {hit for row in hit_ids(gallery.search(base, k=10)) for hit in row}
    assert found and not found & set(removed) and -1 not in found
    kept = [i for i in ids if i not in set(removed)][:20]
    assert [row[0] for row in hit_ids(gallery.search(base[kept], k=1))] == kept
    with pytest.raises(KeyError, match=str(removed[0])):
        gallery.remove([removed[0]])  # already gone


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_save_load_round_trip_keeps_results_and_ids(index_type: str, metric: str, tmp_path: Path) -> None:
    gallery, base, ids = filled(index_type, metric)
    gallery.remove([ids[-1], ids[5]])  # removing the newest id must not let a later add reuse it
    queries = noisy(base[:50], np.random.default_rng(2))
    gallery.save(tmp_path / "g")
    current = current_version_dir(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == sorted([LOCK_FILE, POINTER_FILE, current.name])  # no temp files left
    assert sorted(p.name for p in current.iterdir()) == sorted([INDEX_FILE, INFO_FILE, VECTORS_FILE])

    loaded = GalleryIndex.load(tmp_path / "g", expected_model="model-a", expected_dim=DIM)
    assert loaded.search(queries, k=5) == gallery.search(queries, k=5)
    assert loaded.labels == gallery.labels and len(loaded) == len(gallery) == COUNT - 2
    info = loaded.info()
    assert (info["model_name"], info["feature_dim"], info["index_type"], info["metric"]) == ("model-a", DIM, index_type, metric)
    assert info["created"] == gallery.created and info["versions"]["faiss"]

    new_ids = loaded.add(unit(np.random.default_rng(3), 2), ["new-a", "new-b"])
    assert new_ids == [COUNT, COUNT + 1]
    loaded.remove([ids[0]])  # the loaded index supports removal too (HNSW rebuilds from the saved vectors)
    assert ids[0] not in {hit for row in hit_ids(loaded.search(base[:5], k=5)) for hit in row}


def test_load_refuses_another_model_or_dimension(tmp_path: Path) -> None:
    gallery, _, _ = filled("Flat", "IP")
    gallery.save(tmp_path / "g")
    with pytest.raises(GalleryMismatchError, match="built with model 'model-a'.*uses model 'model-b'"):
        GalleryIndex.load(tmp_path / "g", expected_model="model-b")
    with pytest.raises(GalleryMismatchError, match=f"holds {DIM}-d features.*produces 512-d"):
        GalleryIndex.load(tmp_path / "g", expected_model="model-a", expected_dim=512)
    assert issubclass(GalleryMismatchError, ValueError)


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
def test_bad_inputs_raise_value_error(index_type: str, metric: str) -> None:
    gallery = GalleryIndex.create(DIM, "model-a", index_type, metric)
    assert gallery.search(unit(np.random.default_rng(4), 2)) == [[], []]  # empty gallery
    with pytest.raises(ValueError, match=f"shape \\[n, {DIM}\\]"):
        gallery.add(np.zeros((2, DIM + 1), np.float32), ["a", "b"])
    bad = unit(np.random.default_rng(5), 3)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gallery.add(bad, ["a", "b", "c"])
    bad[1, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        gallery.search(bad)
    with pytest.raises(ValueError, match="labels"):
        gallery.add(unit(np.random.default_rng(6), 2), ["only-one"])
    with pytest.raises(ValueError, match=f"shape \\[n, {DIM}\\]"):
        gallery.search(np.zeros((1, DIM - 1), np.float32))
    with pytest.raises(KeyError, match="99"):
        gallery.remove([99])
    assert len(gallery) == 0 and gallery.add(np.empty((0, DIM), np.float32), []) == []


def test_unknown_index_type_or_metric_names_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="Flat, IVF, HNSW32"):
        GalleryIndex.create(DIM, "model-a", "LSH")
    with pytest.raises(ValueError, match="IP, L2"):
        GalleryIndex.create(DIM, "model-a", "Flat", "cosine")


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


def test_l2_scores_are_cosine_units() -> None:
    base = unit(np.random.default_rng(8), 50)
    results = {}
    for metric in METRICS:
        gallery = GalleryIndex.create(DIM, "model-a", "Flat", metric)
        gallery.add(base, [str(i) for i in range(50)])
        results[metric] = gallery.search(base[:5], k=4)
    for row_ip, row_l2 in zip(results["IP"], results["L2"]):
        assert [h[0] for h in row_ip] == [h[0] for h in row_l2]
        np.testing.assert_allclose([h[2] for h in row_ip], [h[2] for h in row_l2], atol=1e-5)
