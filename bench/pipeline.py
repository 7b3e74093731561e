"""Benchmark (not a test): the batched face engine against facenet-pytorch's pipeline, in one run; prints JSON.

    python bench/pipeline.py [--photos ../shared/data/faces] [--device cpu|cuda] [--batch-sizes 1,4,16,64]
    python bench/pipeline.py --grid [--threads 2]   # the detector x recognizer grid (issue 23), reference after it

Reports, for our engine and for the reference pipeline measured in the same process:
- single photo (batch of one): p50/p95 ms per stage (decode, detect, align, feature, quality) and end to end;
- batch throughput in photos/s for each batch size over the same photos (quality and decoding from JPEG bytes included);
- the recognizer's ceiling: aligned faces/s through the recognizer module alone at its best batch;
and each of ours as a ratio to the reference (``speedup``: > 1 means we are faster).

``--grid``: instead, every detector (``DETECTOR=mtcnn|yunet``) × recognizer (faceplugin-r512, sface) pipeline,
quality stage included, each with the single-photo p50/p95 (detect, feature and end to end) and the batch
throughput over the same photos (docs/models.md tabulates a run on the 2-core CPU).

The reference is facenet-pytorch as its README uses it: ``MTCNN`` on the full image (PIL) then
``InceptionResnetV1`` on the 160×160 crops, with RANDOM weights (its numbers are for speed only). It
has no quality stage, so the ratios flatter it. On a shared machine, say how many repeats you used.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.face.pipeline import FacePipeline  # noqa: E402
from service.models import create_pipeline  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2), "n": len(values)}


def single_photo(pipeline: FacePipeline, photos: list[bytes], repeats: int) -> dict:
    stages: dict[str, list[float]] = {}
    pipeline.analyze(photos[0])  # warm-up
    for _ in range(repeats):
        for data in photos:
            result = pipeline.analyze(data)
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
    return {stage: percentiles(values) for stage, values in stages.items()}


def batch_throughput(pipeline: FacePipeline, photos: list[bytes], sizes: list[int], budget_s: float) -> dict:
    """Photos/s of ``analyze_batch`` per batch size over the same photos for every size (the photos cycled to
    the largest size, cut into batches of each size), so the sizes compare the batching, not the photos; the
    whole sequence runs at least once per size, more while within budget."""
    sequence = [photos[index % len(photos)] for index in range(max(sizes))]
    report = {}
    for size in sizes:
        elapsed, runs, errors = 0.0, 0, 0
        while runs == 0 or (elapsed < budget_s and runs < 3):
            start = time.perf_counter()
            results = [result for first in range(0, len(sequence), size) for result in pipeline.analyze_batch(sequence[first : first + size])]
            elapsed += time.perf_counter() - start
            runs += 1
            errors = sum(isinstance(result, Exception) for result in results)
        report[str(size)] = {"photos_per_s": round(len(sequence) * runs / elapsed, 2), "runs": runs, "photos_per_run": len(sequence), "errors": errors}
    return report


def recognizer_ceiling(pipeline: FacePipeline, faces: np.ndarray, batch: int) -> dict:
    crops = np.concatenate([faces] * (batch // len(faces) + 1))[:batch]
    pipeline.embedder.embed(crops)  # warm-up at the measured batch size (cuDNN picks its kernels per shape)
    start = time.perf_counter()
    pipeline.embedder.embed(crops)  # returns host arrays, so the device work is finished
    return {"faces_per_s": round(batch / (time.perf_counter() - start), 1), "batch": batch, "precision": pipeline.embedder.precision}


GRID_MODELS = ("faceplugin-r512", "sface")


def detector_grid(device: str, photos: list[bytes], all_photos: list[bytes], sizes: list[int], budget_s: float, repeats: int) -> list[dict]:
    """One row per detector × recognizer: single-photo stage percentiles and batch throughput.

    The cells are interleaved (each repeat, each photo and each batch run goes through every pipeline in turn),
    so on a shared machine a burst of other work lands on all cells alike instead of on whichever ran then."""
    from engine.face.pipeline import DETECTORS
    from settings import Settings

    rows, pipelines = [], []
    for detector in DETECTORS:
        for model in GRID_MODELS:
            row: dict = {"detector": detector, "model": model}
            try:
                pipelines.append(create_pipeline(model, device=device, settings=Settings(detector=detector)))
            except Exception as error:  # weights or calibration absent: say so, measure the rest
                rows.append({**row, "skipped": f"{type(error).__name__}: {error}"})
                pipelines.append(None)
                continue
            rows.append(row)
    cells = [(row, pipeline) for row, pipeline in zip(rows, pipelines) if pipeline is not None]
    stages: list[dict[str, list[float]]] = [{} for _ in cells]
    for _, pipeline in cells:
        pipeline.analyze(photos[0])  # warm-up
    for _ in range(repeats):
        for data in photos:
            for index, (_, pipeline) in enumerate(cells):
                for stage, ms in pipeline.analyze(data).timings_ms.items():
                    stages[index].setdefault(stage, []).append(ms)
    for index, (row, _) in enumerate(cells):
        row["single_photo_ms"] = {stage: percentiles(values) for stage, values in stages[index].items() if stage in ("detect", "feature", "quality", "total")}
    sequence = [all_photos[index % len(all_photos)] for index in range(max(max(sizes), len(all_photos)))]
    for size in sizes:
        elapsed = [0.0] * len(cells)
        runs = 0
        while runs == 0 or (max(elapsed) < budget_s and runs < 3):
            for index, (_, pipeline) in enumerate(cells):
                start = time.perf_counter()
                for first in range(0, len(sequence), size):
                    pipeline.analyze_batch(sequence[first : first + size])
                elapsed[index] += time.perf_counter() - start
            runs += 1
        for index, (row, _) in enumerate(cells):
            row.setdefault("batch_photos_per_s", {})[str(size)] = {"photos_per_s": round(len(sequence) * runs / elapsed[index], 2), "runs": runs,
                                                                   "photos_per_run": len(sequence)}
    return rows


class Reference:
    """facenet-pytorch's pipeline: MTCNN (full image) + InceptionResnetV1 (random weights), image by image."""

    def __init__(self, device: str):
        from facenet_pytorch import MTCNN, InceptionResnetV1

        self.device = device
        self.mtcnn = MTCNN(image_size=160, device=device)
        self.network = InceptionResnetV1(pretrained=None, classify=False).eval().to(device)

    def run(self, data: bytes) -> dict[str, float]:
        from PIL import Image

        timings = {}
        start = time.perf_counter()
        image = Image.open(io.BytesIO(data)).convert("RGB")
        timings["decode"] = (time.perf_counter() - start) * 1000
        mark = time.perf_counter()
        crop = self.mtcnn(image)
        timings["detect_align"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        if crop is not None:
            with torch.inference_mode():
                self.network(crop[None].to(self.device))
        timings["feature"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        return timings

    def single(self, photos: list[bytes], repeats: int) -> dict:
        stages: dict[str, list[float]] = {}
        self.run(photos[0])
        for _ in range(repeats):
            for data in photos:
                for stage, ms in self.run(data).items():
                    stages.setdefault(stage, []).append(ms)
        return {stage: percentiles(values) for stage, values in stages.items()}

    def throughput(self, photos: list[bytes], count: int) -> float:
        start = time.perf_counter()
        for index in range(count):
            self.run(photos[index % len(photos)])
        return round(count / (time.perf_counter() - start), 2)

    def ceiling(self, batch: int) -> dict:
        crops = torch.rand(batch, 3, 160, 160, device=self.device)
        with torch.inference_mode():
            self.network(crops)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            self.network(crops).cpu()
        return {"faces_per_s": round(batch / (time.perf_counter() - start), 1), "batch": batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"))
    parser.add_argument("--limit", type=int, default=20, help="photos for the single-photo timings")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,4,16,64 on CPU; 1,...,256 on CUDA)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time per batch size before stopping its repeats")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grid", action="store_true", help="the detector x recognizer grid instead of the reference comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted(Path(args.photos).glob("img*.jpg")) or sorted(Path(args.photos).glob("*.jpg"))
    if not paths:
        sys.exit(f"no photos under {args.photos}")
    photos = [path.read_bytes() for path in paths[: args.limit]]
    cuda = args.device.startswith("cuda")
    sizes = [int(size) for size in args.batch_sizes.split(",")] if args.batch_sizes else ([1, 4, 16, 64, 256] if cuda else [1, 4, 16, 64])

    if args.grid:
        grid_sizes = [int(size) for size in args.batch_sizes.split(",")] if args.batch_sizes else [1, 16]
        rows = detector_grid(args.device, photos, [path.read_bytes() for path in paths], grid_sizes, args.budget_s, args.repeats)
        machine = {"python": platform.python_version(), "torch": torch.__version__, "device": args.device, "threads": args.threads,
                   "cpu_count": os.cpu_count(), "gpu": torch.cuda.get_device_name() if cuda else None}
        photos_info = {"folder": args.photos, "single_photo_count": len(photos), "batch_photos": len(paths), "repeats": args.repeats}
        reference = Reference(args.device)  # the same run, after the grid (its cells are interleaved among themselves only)
        ref = {
            "label": "facenet-pytorch MTCNN (full image) + InceptionResnetV1, RANDOM weights, image by image, no quality stage",
            "single_photo_ms": reference.single(photos, args.repeats),
            "photos_per_s": reference.throughput(photos, max(8, min(len(photos), 32))),
        }
        print(json.dumps({"machine": machine, "photos": photos_info, "grid": rows, "reference_facenet_pytorch": ref}, indent=2))
        return

    started = time.perf_counter()
    pipeline = create_pipeline(device=args.device)
    build_s = time.perf_counter() - started
    ours_single = single_photo(pipeline, photos, args.repeats)
    faces = np.stack([result.face.aligned for result in pipeline.analyze_batch(photos[:16]) if not isinstance(result, Exception) and result.faces])
    ours_batches = batch_throughput(pipeline, [path.read_bytes() for path in paths], sizes, args.budget_s)
    ceiling_batch = 1024 if cuda else 64
    ours_ceiling = recognizer_ceiling(pipeline, faces, ceiling_batch)

    reference = Reference(args.device)
    ref_single = reference.single(photos, args.repeats)
    ref_throughput = reference.throughput(photos, max(8, min(len(photos), 32)))
    ref_ceiling = reference.ceiling(ceiling_batch)

    def speedup(ref_ms: float, ours_ms: float) -> float:
        return round(ref_ms / ours_ms, 2) if ours_ms else float("nan")

    report = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": args.device,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if cuda else None,
        },
        "photos": {"folder": args.photos, "single_photo_count": len(photos), "repeats": args.repeats},
        "pipeline_build_s": round(build_s, 2),
        "ours": {"single_photo_ms": ours_single, "batch_photos_per_s": ours_batches, "recognizer_ceiling": ours_ceiling},
        "reference_facenet_pytorch": {
            "label": "facenet-pytorch MTCNN (full image) + InceptionResnetV1, RANDOM weights, image by image, no quality stage",
            "single_photo_ms": ref_single,
            "photos_per_s": ref_throughput,
            "recognizer_ceiling": ref_ceiling,
        },
        "ratios": {
            "single_p50_speedup": speedup(ref_single["total"]["p50"], ours_single["total"]["p50"]),
            "single_p95_speedup": speedup(ref_single["total"]["p95"], ours_single["total"]["p95"]),
            "batch_throughput_vs_reference": {size: round(value["photos_per_s"] / ref_throughput, 2) for size, value in ours_batches.items()},
            "recognizer_ceiling_vs_reference": round(ours_ceiling["faces_per_s"] / ref_ceiling["faces_per_s"], 2),
        },
        "targets": {"cpu_single_p50_ms": 100, "cuda_single_p50_ms": 15, "cuda_photos_per_s": 2000},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
