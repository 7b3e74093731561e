"""Benchmark (not a test): the gallery backends' index types on seeded random unit vectors; prints JSON.

    python bench/search.py [--sizes 10000,100000,1000000] [--max-gb 4] [--queries 200] [--types Flat,IVF,HNSW32] [--threads 0]
                           [--backends faiss,milvus] [--milvus-uri URI]

Backends: ``faiss`` (files, the default) and ``milvus`` (embedded Milvus Lite in a temporary file unless
``--milvus-uri`` points at a Milvus server), each through its gallery class, so the numbers include the
client path the service uses (for Milvus: gRPC to the embedded server, row conversion on insert).

For each size N and index type (metric IP, as the service uses): build time (create + one add of N,
IVF training included), memory (the serialised FAISS index and the stored vectors on disk, plus the
process RSS delta of the build), save/load time, query latency p50/p99 (batch of 1, k=5, through
``GalleryIndex.search``) and recall@1 against exact search (``faiss.knn``) for two query sets:

* ``near``: stored vectors plus noise (cosine ≈ 0.7 to the original), like a known face seen again;
* ``random``: fresh random unit vectors, the worst case for approximate search (no cluster structure).

Random vectors have no structure, so the approximate indexes' recall here is a lower bound for real
face features. A size whose estimated peak memory exceeds ``--max-gb`` is skipped, and the JSON says so.
Batch-1 latency on a busy small machine can be much better with ``--threads 1`` (with more OpenMP
threads than free cores, the threads wait for each other). Cost on 2 cores: 10k takes about 10 s (measured);
100k a minute or two and 1M (needs ``--max-gb 8``) 10-20 minutes, mostly the HNSW build (estimates).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.gallery_faiss import INDEX_FILE, INDEX_TYPES, VECTORS_FILE, GalleryIndex, current_version_dir  # noqa: E402

BACKENDS = ("faiss", "milvus")

DIM = 512
NEAR_COSINE = 0.7
HNSW_GRAPH_BYTES = 32 * 2 * 4 * 1.2  # level-0 links (2M int32) plus upper levels, per vector


def rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 where /proc is absent.

    Freed memory is handed back to the OS first (glibc ``malloc_trim``), so that an index freed earlier in
    the run does not hide the next one's growth.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def near_copies(rng: np.random.Generator, vectors: np.ndarray, cosine: float) -> np.ndarray:
    """Copies at about ``cosine`` to the originals: noise of norm tan(arccos(cosine)), renormalised."""
    dim = vectors.shape[1]
    noise = rng.standard_normal(vectors.shape, dtype=np.float32) * (np.tan(np.arccos(cosine)) / np.sqrt(dim))
    out = vectors + noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def estimated_peak_bytes(n: int, dim: int) -> float:
    """The data array, the gallery's stored copy and the FAISS index (HNSW adds its graph) alive at once."""
    vector_bytes = n * dim * 4
    return 3 * vector_bytes + n * (16 + HNSW_GRAPH_BYTES)


def dir_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) if path.is_dir() else path.stat().st_size


def create_gallery(backend: str, index_type: str, dim: int, milvus_uri: str):
    if backend == "faiss":
        return GalleryIndex.create(dim, "bench", index_type, "IP")
    from storage.gallery_milvus import MilvusGallery

    return MilvusGallery.create(dim, "bench", index_type, "IP", uri=milvus_uri)


def bench_index(
    index_type: str, data: np.ndarray, queries: dict[str, np.ndarray], truth: dict[str, np.ndarray], workdir: Path, backend: str = "faiss", milvus_uri: str = ""
) -> dict:
    n, dim = data.shape
    labels = [f"id-{i}" for i in range(n)]
    rss_before = rss_bytes()
    start = time.perf_counter()
    gallery = create_gallery(backend, index_type, dim, milvus_uri)
    gallery.add(data, labels)
    if backend == "milvus":
        gallery.wait_indexed()  # Milvus builds indexes in the background: part of building
        gallery.search(data[:1], k=1)
    build_s = time.perf_counter() - start
    rss_delta = rss_bytes() - rss_before

    result: dict = {"build_s": round(build_s, 3), "rss_delta_bytes": rss_delta}
    info = gallery.info()
    for key in ("ivf", "hnsw"):
        if key in info:
            result[key] = info[key]

    latencies = []
    gallery.search(queries["near"][:1], k=5)  # warm-up
    for query in queries["near"]:
        start = time.perf_counter()
        gallery.search(query[None, :], k=5)
        latencies.append((time.perf_counter() - start) * 1000)
    result["latency_ms"] = {"p50": round(float(np.percentile(latencies, 50)), 3), "p99": round(float(np.percentile(latencies, 99)), 3), "n": len(latencies)}

    result["recall_at_1"] = {}
    for name, batch in queries.items():
        top1 = np.array([row[0][0] if row else -1 for row in gallery.search(batch, k=1)])
        result["recall_at_1"][name] = round(float(np.mean(top1 == truth[name])), 4)

    directory = workdir / f"{backend}-{index_type}"
    start = time.perf_counter()
    gallery.save(directory)
    result["save_s"] = round(time.perf_counter() - start, 3)
    if backend == "faiss":
        result["index_bytes"] = (current_version_dir(directory) / INDEX_FILE).stat().st_size
        result["stored_vectors_bytes"] = (current_version_dir(directory) / VECTORS_FILE).stat().st_size
        del gallery
        gc.collect()
        start = time.perf_counter()
        GalleryIndex.load(directory, expected_model="bench", expected_dim=dim)
    else:
        from storage.gallery_milvus import MilvusGallery

        if "://" not in milvus_uri:
            result["milvus_lite_bytes"] = dir_bytes(Path(milvus_uri))
        start = time.perf_counter()
        MilvusGallery.load(directory, expected_model="bench", expected_dim=dim)
        gallery.drop()
    result["load_s"] = round(time.perf_counter() - start, 3)
    for path in directory.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return result


def bench_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    peak = estimated_peak_bytes(n, args.dim)
    entry: dict = {"n": n, "estimated_peak_gb": round(peak / 1e9, 2)}
    if peak > args.max_gb * 1e9:
        entry["skipped"] = f"estimated peak memory {peak / 1e9:.1f} GB exceeds --max-gb {args.max_gb}"
        return entry
    rng = np.random.default_rng(args.seed)
    data = unit_vectors(rng, n, args.dim)
    sources = rng.choice(n, size=args.queries, replace=False)
    queries = {"near": near_copies(rng, data[sources], NEAR_COSINE), "random": unit_vectors(rng, args.queries, args.dim)}
    truth = {name: faiss.knn(batch, data, 1, metric=faiss.METRIC_INNER_PRODUCT)[1][:, 0] for name, batch in queries.items()}
    entry["near_queries_whose_true_neighbour_is_their_source"] = round(float(np.mean(truth["near"] == sources)), 4)
    entry["indexes"] = {}
    for backend in args.backends:
        for index_type in args.types:
            name = index_type if backend == "faiss" else f"{backend}:{index_type}"
            entry["indexes"][name] = bench_index(index_type, data, queries, truth, workdir, backend, args.milvus_uri or str(workdir / "milvus.db"))
            print(f"N={n} {name}: {json.dumps(entry['indexes'][name])}", file=sys.stderr, flush=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--max-gb", type=float, default=4.0, help="skip sizes whose estimated peak memory exceeds this")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--types", default=",".join(INDEX_TYPES), help=f"comma-separated subset of {','.join(INDEX_TYPES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default, one per core)")
    parser.add_argument("--backends", default="faiss", help=f"comma-separated subset of {','.join(BACKENDS)}")
    parser.add_argument("--milvus-uri", default="", help="a Milvus server (http://host:19530); default: embedded Milvus Lite in a temp file")
    args = parser.parse_args()
    if args.threads > 0:
        faiss.omp_set_num_threads(args.threads)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    args.types = [name.strip() for name in args.types.split(",") if name.strip()]
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if sorted(set(args.backends) - set(BACKENDS)):
        parser.error(f"unknown backends {args.backends}: allowed values are {', '.join(BACKENDS)}")
    unknown = sorted(set(args.types) - set(INDEX_TYPES))
    if unknown:
        parser.error(f"unknown index types {unknown}: allowed values are {', '.join(INDEX_TYPES)}")
    if min(sizes) < args.queries:
        parser.error(f"every size must be at least --queries ({args.queries})")

    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "faiss_omp_threads": faiss.omp_get_max_threads(),
            "faiss": faiss.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "params": {
            "dim": args.dim,
            "metric": "IP",
            "queries": args.queries,
            "k_latency": 5,
            "near_cosine": NEAR_COSINE,
            "seed": args.seed,
            "max_gb": args.max_gb,
            "threads": faiss.omp_get_max_threads(),
            "backends": args.backends,
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-search-") as workdir:
        for n in sizes:
            report["results"].append(bench_size(n, args, Path(workdir)))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
