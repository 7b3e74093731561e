"""Benchmark (not a test): the engine on CUDA against the same engine on the CPU, same photos; prints JSON.

    python bench/gpu_engine.py --photos DIR [--parity 64] [--batch-sizes 64,256,512] [--decode-workers 8]

Reports:
- parity: CUDA fp16 / bf16 / fp32 against the CPU fp32 engine on the same photos (main face's cosine,
  |Δquality|, same face count), and the recognizer alone on identical aligned crops (the precision's
  own error, detection differences removed);
- batch throughput in photos/s per batch size, from JPEG bytes (decode included) and from decoded
  images (decode excluded), with the batch's stage timings;
- the recognizer's ceiling (aligned faces/s through the recognizer at batch 1024, uint8 upload included).

Needs a CUDA device; CI never runs it. The CPU tests cover the same code paths (device-independent).
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

from engine.face.pipeline import FacePipeline  # noqa: E402
from errors import FroodError  # noqa: E402
from service.models import create_pipeline  # noqa: E402
from settings import Settings  # noqa: E402


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {"n": len(values), "min": round(float(array.min()), 6), "p50": round(float(np.median(array)), 6), "max": round(float(array.max()), 6)}


def parity(reference: list, candidate: list) -> dict:
    """Main-face agreement between two engines' results on the same inputs."""
    cosines, quality_deltas, count_mismatch, errors = [], [], 0, 0
    for ref, cand in zip(reference, candidate):
        if isinstance(ref, FroodError) or isinstance(cand, FroodError):
            errors += isinstance(ref, FroodError) != isinstance(cand, FroodError)
            continue
        if len(ref.faces) != len(cand.faces):
            count_mismatch += 1
        if ref.faces and cand.faces:
            cosines.append(float(np.dot(ref.face.feature, cand.face.feature)))
            quality_deltas.append(abs(float(ref.face.quality) - float(cand.face.quality)))
    return {"main_face_cosine": _stats(cosines), "quality_abs_delta": _stats(quality_deltas), "face_count_mismatch": count_mismatch, "error_mismatch": errors}


def throughput(pipeline: FacePipeline, inputs: list, size: int, repeats: int) -> dict:
    batch = [inputs[index % len(inputs)] for index in range(size)]
    pipeline.analyze_batch(batch[: min(size, 8)])  # warm-up (cuDNN autotune, allocator)
    torch.cuda.synchronize()
    times, stages = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        results = pipeline.analyze_batch(batch)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        first = next(result for result in results if not isinstance(result, FroodError))
        for stage, ms in first.timings_ms.items():
            stages.setdefault(stage, []).append(ms)
    best = min(times)
    return {
        "photos_per_s": round(size / best, 1),
        "median_photos_per_s": round(size / float(np.median(times)), 1),
        "stage_ms_median": {stage: round(float(np.median(values)), 1) for stage, values in stages.items()},
        "errors": sum(isinstance(result, FroodError) for result in results),
        "repeats": repeats,
    }


def ceiling(pipeline: FacePipeline, crops: np.ndarray, batch: int = 1024, repeats: int = 5) -> dict:
    crops = np.concatenate([crops] * (batch // len(crops) + 1))[:batch]
    pipeline.embedder.embed(crops)
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipeline.embedder.embed(crops)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"faces_per_s": round(batch / min(times), 1), "batch": batch, "precision": pipeline.embedder.precision}


def quality_parts(pipeline: FacePipeline, decoded: list, count: int = 512) -> dict:
    """Where the quality stage's time goes on the device: each helper step over the same faces (ms)."""
    import cv2

    from engine.quality import signals as quality_signals

    rgbs = [item.rgb for item in decoded[:count]]
    detections = pipeline.detector.detect_batch(rgbs)
    pairs = [(rgb, found[:1]) for rgb, found in zip(rgbs, detections) if found]
    faces = [(rgb, found[0]) for rgb, found in pairs]
    aligned = np.stack([pipeline.align(rgb, [det])[0] for rgb, det in faces])
    extractor = pipeline.signals
    timings: dict[str, float] = {}

    def timed(name: str, step) -> object:
        torch.cuda.synchronize()
        start = time.perf_counter()
        value = step()
        torch.cuda.synchronize()
        timings[name] = round((time.perf_counter() - start) * 1000, 1)
        return value

    pose_crops = timed("pose_crops", lambda: np.stack([quality_signals.pose_crop(rgb, det.bbox) for rgb, det in faces]))
    timed("pose_net", lambda: extractor.head_pose(pose_crops))
    live_crops = timed("liveness_crops", lambda: np.stack([quality_signals.liveness_crop(rgb, det.bbox) for rgb, det in faces]))
    timed("liveness_net", lambda: extractor.real_probability(live_crops))
    grays = timed("grey_images", lambda: [cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for rgb, _ in faces])
    timed("landmarks_and_eyes", lambda: extractor.eyes_open(grays, [det.bbox for _, det in faces], [det.landmarks[:2] for _, det in faces]))
    timed("exposure_and_occlusion", lambda: [quality_signals.exposure_signals(face) | quality_signals.lower_face_signals(face) for face in aligned])
    timed("extract_batch_total", lambda: extractor.extract_batch(pairs, aligned, np.ones(len(faces), np.float32)))
    return {"faces": len(faces), "ms": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True)
    parser.add_argument("--parity", type=int, default=64, help="photos compared between CPU and CUDA")
    parser.add_argument("--batch-sizes", default="64,256,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-workers", type=int, default=8)
    parser.add_argument("--profile", default="", help="write torch.profiler's table for one batch of 256 decoded photos here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_engine.py needs a CUDA device")
    paths = sorted(Path(args.photos).rglob("*.jpg"))
    data = [path.read_bytes() for path in paths]
    report: dict = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "gpu": torch.cuda.get_device_name(), "photos": len(paths)}
    }

    cpu = create_pipeline(device="cpu", settings=Settings(precision="fp32"))
    engines = {
        precision: create_pipeline(device="cuda", settings=Settings(precision=precision, decode_workers=args.decode_workers))
        for precision in ("fp16", "bf16", "fp32")
    }
    sample = data[: args.parity]
    reference = cpu.analyze_batch(sample)
    crops = np.stack([result.face.aligned for result in reference if not isinstance(result, FroodError) and result.faces])
    cpu_features = cpu.embedder.embed(crops).features
    report["parity_vs_cpu_fp32"] = {}
    for precision, engine in engines.items():
        whole = parity(reference, engine.analyze_batch(sample))
        features = engine.embedder.embed(crops).features
        whole["recognizer_only_cosine"] = _stats(np.einsum("nd,nd->n", features, cpu_features).tolist())
        report["parity_vs_cpu_fp32"][precision] = whole
    print(json.dumps(report["parity_vs_cpu_fp32"]), flush=True)

    engine = engines["fp16"]
    decoded = engine.decode_batch(data, [path.name for path in paths])
    decoded = [item for item in decoded if not isinstance(item, FroodError)]
    report["batch_from_jpeg_bytes"] = {}
    report["batch_from_decoded"] = {}
    for size in [int(value) for value in args.batch_sizes.split(",")]:
        report["batch_from_jpeg_bytes"][str(size)] = throughput(engine, data, size, args.repeats)
        report["batch_from_decoded"][str(size)] = throughput(engine, decoded, size, args.repeats)
        print(json.dumps({size: report["batch_from_jpeg_bytes"][str(size)], "decoded": report["batch_from_decoded"][str(size)]}), flush=True)
    report["quality_parts"] = quality_parts(engine, decoded)
    print(json.dumps(report["quality_parts"]), flush=True)
    report["recognizer_ceiling"] = {precision: ceiling(engine, crops) for precision, engine in engines.items()}
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        batch = [decoded[index % len(decoded)] for index in range(256)]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
            engine.analyze_batch(batch)
            torch.cuda.synchronize()
        table = profiler.key_averages().table(sort_by="cpu_time_total", row_limit=40)
        Path(args.profile).write_text(table)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
