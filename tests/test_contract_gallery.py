"""The face gallery's contract, run on every backend: FAISS files (default) and Milvus (embedded Milvus Lite here;
the same client code serves a Milvus server or cluster). Seeded synthetic unit vectors, every index type ×
metric: search finds a face's own label first, removed ids never come back, a saved gallery answers the same
after loading and never reuses an id, another model's gallery is refused, bad input is a ValueError with the
same message on both; then enrol/identify with the real pipeline on real photos gives the same answers on both.
What only FAISS does (its files, their crash safety, IVF retraining) stays in tests/test_gallery_index.py."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service import gallery as gallery_service
from storage.gallery_faiss import INDEX_TYPES, METRICS, GalleryIndex, GalleryMismatchError

pytest.importorskip("pymilvus", reason="pymilvus (and milvus-lite) are in requirements.txt")
from storage.gallery_milvus import MilvusGallery  # noqa: E402

DIM = 32
COUNT = 400
BACKENDS = ("faiss", "milvus")
COMBOS = [(index_type, metric) for index_type in INDEX_TYPES for metric in METRICS]


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory) -> Iterator[str]:
    """One embedded Milvus Lite database for the module (one embedded server process), stopped with the module:
    left to milvus_lite's atexit hook, its last log line went to pytest's closed capture stream
    ("--- Logging error ---" at the end of every run)."""
    yield str(tmp_path_factory.mktemp("milvus") / "galleries.db")
    from milvus_lite import server_manager_instance

    server_manager_instance.release_all()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def make(backend: str, milvus_uri):
    """``make(index_type, metric, model, dim)`` → an empty gallery of this backend."""

    def build(index_type: str = "Flat", metric: str = "IP", model: str = "model-a", dim: int = DIM):
        if backend == "faiss":
            return GalleryIndex.create(dim, model, index_type, metric)
        return MilvusGallery.create(dim, model, index_type, metric, uri=milvus_uri)

    return build


@pytest.fixture
def load(backend: str):
    """``load(directory, **expected)`` → the gallery saved there, by this backend."""
    return (GalleryIndex if backend == "faiss" else MilvusGallery).load


def unit(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def noisy(vectors: np.ndarray, rng: np.random.Generator, scale: float = 0.05) -> np.ndarray:
    """The same faces seen again: a little noise, renormalised."""
    out = vectors + rng.normal(scale=scale, size=vectors.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def filled(make, index_type: str, metric: str):
    """COUNT vectors added in two batches (IVF builds on the first, then grows)."""
    base = unit(np.random.default_rng(0), COUNT)
    gallery = make(index_type, metric)
    ids = gallery.add(base[:50], [f"person-{i}" for i in range(50)])
    ids += gallery.add(base[50:], [f"person-{i}" for i in range(50, COUNT)])
    return gallery, base, ids


def hit_ids(results) -> list[list[int]]:
    return [[hit[0] for hit in row] for row in results]


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_nearest_neighbour_of_a_noised_vector_is_its_own_label(make, index_type: str, metric: str) -> None:
    gallery, base, ids = filled(make, index_type, metric)
    assert ids == list(range(COUNT)) and len(gallery) == COUNT
    results = gallery.search(noisy(base, np.random.default_rng(1)), k=3)
    assert all(row[0][1] == f"person-{i}" for i, row in enumerate(results))  # its own label first
    assert all(row[0][2] > 0.9 for row in results)  # cosine units whatever the metric
    assert all(row[0][2] >= row[1][2] >= row[2][2] for row in results)  # best first


@pytest.mark.parametrize(("index_type", "metric"), COMBOS)
def test_removed_ids_are_never_returned(make, index_type: str, metric: str) -> None:
    gallery, base, ids = filled(make, index_type, metric)
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
def test_save_load_round_trip_keeps_results_and_never_reuses_an_id(make, load, index_type: str, metric: str, tmp_path: Path) -> None:
    gallery, base, ids = filled(make, index_type, metric)
    gallery.remove([ids[-1], ids[5]])  # removing the newest id must not let a later add reuse it
    queries = noisy(base[:50], np.random.default_rng(2))
    gallery.save(tmp_path / "g")
    # Milvus indexes the sealed segments in the background after the save's flush: a search during that build
    # scans them exhaustively, one after it reads the IVF lists (a CI run compared one of each and failed).
    getattr(gallery, "wait_indexed", lambda: 0.0)()
    loaded = load(tmp_path / "g", expected_model="model-a", expected_dim=DIM)
    assert hit_ids(loaded.search(queries, k=5)) == hit_ids(gallery.search(queries, k=5))
    assert loaded.labels == gallery.labels and len(loaded) == len(gallery) == COUNT - 2
    info = loaded.info()
    assert (info["model_name"], info["feature_dim"], info["index_type"], info["metric"]) == ("model-a", DIM, index_type, metric)
    assert info["created"] == gallery.created
    assert loaded.add(unit(np.random.default_rng(3), 2), ["new-a", "new-b"]) == [COUNT, COUNT + 1]
    loaded.remove([ids[1]])  # the loaded gallery supports removal too (FAISS HNSW rebuilds from the saved vectors)
    assert ids[1] not in {hit for row in hit_ids(loaded.search(base[:5], k=5)) for hit in row}


def test_load_refuses_another_model_or_dimension(make, load, tmp_path: Path) -> None:
    gallery = make()
    gallery.add(unit(np.random.default_rng(4), 10), [str(i) for i in range(10)])
    gallery.save(tmp_path / "g")
    with pytest.raises(GalleryMismatchError, match="built with model 'model-a'.*uses model 'model-b'"):
        load(tmp_path / "g", expected_model="model-b")
    with pytest.raises(GalleryMismatchError, match=f"holds {DIM}-d features.*produces 512-d"):
        load(tmp_path / "g", expected_model="model-a", expected_dim=512)
    assert issubclass(GalleryMismatchError, ValueError)
    assert len(load(tmp_path / "g", expected_model="model-a", expected_dim=DIM)) == 10


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_bad_inputs_raise_value_error(make, index_type: str) -> None:
    gallery = make(index_type)
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
    with pytest.raises(ValueError, match="labels must be strings"):
        gallery.add(unit(np.random.default_rng(6), 1), [7])
    with pytest.raises(ValueError, match=f"shape \\[n, {DIM}\\]"):
        gallery.search(np.zeros((1, DIM - 1), np.float32))
    with pytest.raises(ValueError, match="k must be at least 1"):
        gallery.search(unit(np.random.default_rng(6), 1), k=0)
    with pytest.raises(KeyError, match="99"):
        gallery.remove([99])
    assert len(gallery) == 0 and gallery.add(np.empty((0, DIM), np.float32), []) == []


def test_unknown_index_type_metric_or_dimension_names_what_is_allowed(make) -> None:
    with pytest.raises(ValueError, match="Flat, IVF, HNSW32"):
        make("LSH")
    with pytest.raises(ValueError, match="IP, L2"):
        make("Flat", "cosine")
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        make(dim=0)
    with pytest.raises(ValueError, match="model_name must be a non-empty string"):
        make(model="")


@pytest.mark.parametrize("index_type", INDEX_TYPES)
def test_one_at_a_time_and_k_beyond_the_size(make, index_type: str) -> None:
    gallery = make(index_type)
    base = unit(np.random.default_rng(7), 30)
    for i, vector in enumerate(base):
        assert gallery.add(vector, [f"p{i}"]) == [i]
    assert [row[0][0] for row in gallery.search(base, k=1)] == list(range(30))
    assert len(gallery.search(base[:1], k=500)[0]) == 30  # no padding beyond the gallery size


def test_l2_scores_are_cosine_units(make) -> None:
    base = unit(np.random.default_rng(8), 50)
    results = {}
    for metric in METRICS:
        gallery = make("Flat", metric)
        gallery.add(base, [str(i) for i in range(50)])
        results[metric] = gallery.search(base[:5], k=4)
    for row_ip, row_l2 in zip(results["IP"], results["L2"]):
        assert [h[0] for h in row_ip] == [h[0] for h in row_l2]
        np.testing.assert_allclose([h[2] for h in row_ip], [h[2] for h in row_l2], atol=1e-5)
    assert results["IP"][0][0][2] == pytest.approx(1.0, abs=1e-5)  # a vector against itself


def test_the_factory_loads_whichever_backend_saved_the_folder(make, tmp_path: Path) -> None:
    """``frood index info`` and the API load through ``service.backends.load_gallery``: the info file says which backend."""
    from service.backends import load_gallery

    gallery = make("HNSW32", "L2")
    gallery.add(unit(np.random.default_rng(9), 12), [f"p{i}" for i in range(12)])
    gallery.save(tmp_path / "g")
    loaded = load_gallery(tmp_path / "g", expected_model="model-a", expected_dim=DIM)
    assert type(loaded) is type(gallery) and len(loaded) == 12
    assert (loaded.info()["index_type"], loaded.info()["metric"]) == ("HNSW32", "L2")
    with pytest.raises(GalleryMismatchError):
        load_gallery(tmp_path / "g", expected_model="model-b")


@pytest.fixture(scope="module")
def enrolment_split(faces_dir: Path):
    """Per identity with ≥ 4 photos: the first two enrol, the last one is the probe (sorted names, fixed)."""
    with open(faces_dir / "identities.csv", newline="") as handle:
        by_identity: dict[str, list[str]] = {}
        for row in csv.DictReader(handle):
            by_identity.setdefault(row["identity"], []).append(row["file"])
    chosen = {identity: sorted(files) for identity, files in sorted(by_identity.items()) if len(files) >= 4}
    enrol = [(faces_dir / files[0], identity, files[0]) for identity, files in chosen.items()]
    enrol += [(faces_dir / files[1], identity, files[1]) for identity, files in chosen.items()]
    probes = [(faces_dir / files[-1], identity) for identity, files in chosen.items()]
    return enrol, probes


def test_enrol_and_identify_real_faces_give_the_same_answers_on_both_backends(pipeline, enrolment_split, milvus_uri) -> None:
    enrol, probes = enrolment_split
    answers = {}
    for backend in BACKENDS:
        if backend == "faiss":
            gallery = gallery_service.new_gallery(pipeline)
        else:
            gallery = MilvusGallery.create(pipeline.embedder.dim, pipeline.model, uri=milvus_uri)
        result = gallery_service.enrol(pipeline, gallery, enrol)
        assert len(result.ids) + len(result.skipped) == len(enrol) and len(result.ids) >= len(enrol) - 2
        answers[backend] = [gallery_service.identify(pipeline, gallery, image, top_k=3)[0] for image, _ in probes]
    for faiss_face, milvus_face in zip(answers["faiss"], answers["milvus"]):
        assert faiss_face.label == milvus_face.label
        assert [label for label, _ in faiss_face.matches] == [label for label, _ in milvus_face.matches]
        np.testing.assert_allclose([s for _, s in faiss_face.matches], [s for _, s in milvus_face.matches], atol=1e-4)
    correct = sum(face.label == identity for face, (_, identity) in zip(answers["milvus"], probes))
    assert correct >= len(probes) - 1, [(face.label, identity) for face, (_, identity) in zip(answers["milvus"], probes)]


def test_two_handles_on_one_milvus_gallery_see_each_others_writes(milvus_uri) -> None:
    """Milvus only (what two replicas do): one enrols, the other (already holding the gallery) searches and enrols next;
    ids never collide."""
    first = MilvusGallery.create(DIM, "model-a", uri=milvus_uri)
    second = MilvusGallery.open(first.collection, uri=milvus_uri, expected_model="model-a", expected_dim=DIM)
    base = unit(np.random.default_rng(10), 6)
    assert first.add(base[:3], ["a", "b", "c"]) == [0, 1, 2]
    assert [row[0][1] for row in second.search(base[:3], k=1)] == ["a", "b", "c"]
    assert second.add(base[3:], ["d", "e", "f"]) == [3, 4, 5]
    first.remove([4])
    assert second.labels == {0: "a", 1: "b", 2: "c", 3: "d", 5: "f"} and len(second) == 5
