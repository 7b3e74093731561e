"""Benchmark (not a test): per-stage latency of the face pipeline; prints JSON.

    python bench/pipeline.py [--photos ../shared/data/faces] [--repeats 3] [--device cpu|cuda]

Reports p50/p95 ms per stage (decode, detect, align, feature, quality) and end to end for single
photos (batch 1), the feature + quality stages for a batch of 16 aligned faces, and, in the same run,
the reference pipeline of facenet-pytorch (MTCNN at full size + InceptionResnetV1 with RANDOM weights:
its numbers are for speed only, never for accuracy).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recognition.pipeline import FacePipeline  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2), "n": len(values)}


def bench_pipeline(pipeline: FacePipeline, photos: list[Path], repeats: int) -> dict:
    stages: dict[str, list[float]] = {}
    single_face_totals: list[float] = []
    pipeline.analyze(photos[0])  # warm-up
    for _ in range(repeats):
        for photo in photos:
            result = pipeline.analyze(photo.read_bytes())
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            if len(result.faces) == 1:
                single_face_totals.append(result.timings_ms["total"])
    return {
        "stages_ms": {stage: percentiles(values) for stage, values in stages.items()},
        "end_to_end_single_face_ms": percentiles(single_face_totals),
    }


def bench_batch16(pipeline: FacePipeline, photos: list[Path], repeats: int) -> dict:
    faces, images, detections = [], [], []
    for photo in photos:
        decoded = pipeline.decode(photo)
        found = pipeline.detector.detect(decoded.rgb)
        if found:
            images.append(decoded.rgb)
            detections.append(found[:1])
            faces.append(pipeline.align(decoded.rgb, found[:1])[0])
        if len(faces) == 16:
            break
    batch = np.stack(faces)
    feature_ms, quality_ms = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        embedding = pipeline.embedder.embed(batch)
        feature_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for index, (rgb, found) in enumerate(zip(images, detections)):
            signals = pipeline.signals.extract(rgb, found, batch[index : index + 1], embedding.norms[index : index + 1])
            pipeline.scorer.score(signals[0])
        quality_ms.append((time.perf_counter() - start) * 1000)
    return {
        "faces": len(batch),
        "feature_ms_per_batch": percentiles(feature_ms[1:]),
        "feature_ms_per_face": round(float(np.median(feature_ms[1:])) / len(batch), 2),
        "quality_ms_per_face": round(float(np.median(quality_ms[1:])) / len(batch), 2),
    }


def bench_reference(photos: list[Path], device: str, repeats: int) -> dict:
    """facenet-pytorch's own pipeline: MTCNN on the full image + InceptionResnetV1 (random weights)."""
    from facenet_pytorch import MTCNN, InceptionResnetV1
    from PIL import Image

    mtcnn = MTCNN(image_size=160, device=device)
    network = InceptionResnetV1(pretrained=None, classify=False).eval().to(device)
    totals = []
    for _ in range(repeats):
        for photo in photos:
            start = time.perf_counter()
            crop = mtcnn(Image.open(photo).convert("RGB"))
            if crop is not None:
                with torch.inference_mode():
                    network(crop[None].to(device))
            totals.append((time.perf_counter() - start) * 1000)
    return {"label": "facenet-pytorch MTCNN + InceptionResnetV1, RANDOM weights (speed only)", "end_to_end_ms": percentiles(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=30, help="photos to use")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = sorted(Path(args.photos).glob("img*.jpg"))[: args.limit]
    if not photos:
        sys.exit(f"no photos under {args.photos}")
    devices = ["cpu"] + (["cuda"] if args.device == "cuda" else [])
    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads, "cpu": platform.machine()},
        "photos": len(photos),
        "target": "end-to-end p50 <= 150 ms per single-face photo on the 2-core CPU, quality included",
        "results": {},
    }
    for device in devices:
        pipeline = FacePipeline(device=device)
        report["results"][device] = {
            "batch_1": bench_pipeline(pipeline, photos, args.repeats),
            "batch_16": bench_batch16(pipeline, photos, args.repeats),
            "reference_facenet_pytorch": bench_reference(photos, device, 1),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
