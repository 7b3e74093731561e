"""Benchmark (not a test): human keypoints accuracy (COCO OKS AP) and speed; prints JSON.

    python bench/keypoints.py [--data ../shared/data/keypoints] [--repeats 3] [--device cpu|cuda] [--threads 2]

Accuracy: COCO keypoint AP (OKS with COCO's sigmas, thresholds 0.50:0.05:0.95) on the shared OCHuman +
PoseTrack18 sample (PoseTrack's head_bottom/head_top are left out; detections centred in PoseTrack's
ignore regions are not counted), for each step of the pipeline: MultiPose alone, + tiles, + Thunder
refinement, + the CenterNet person detector, + pose-level de-duplication, + the second look behind each
person (the default). Detections down to score 0.05 (calibrated scale) are ranked, as AP needs.
Speed: per-image p50/p95 (wall and process CPU time; use --threads 1 on a shared machine) at batch 1
(decode → people → keypoints, the default configuration) and the
throughput of one ``detect_many`` call over all photos. PaddleX's published figures are printed beside
ours for reference; they were measured on COCO val2017 (AP) and a T4 GPU (ms), ours on this tiny sample.
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

from engine.keypoints.engine import KeypointEngine  # noqa: E402
from evaluation.keypoints import AnnotatedImage, average_precision, load_coco_keypoints  # noqa: E402
from settings import get_settings  # noqa: E402

PADDLEX = {
    "source": "PaddleX human keypoint detection docs (COCO val2017; GPU ms on T4, CPU ms on Xeon Gold 6271C)",
    "PP-TinyPose_128x96": {"AP": 58.4},
    "PP-TinyPose_256x192": {"AP": 68.3},
    "PP-YOLOE-S_human": {"mAP": 42.5},
}


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1), "n": len(values)}


def load_sets(root: Path) -> dict[str, list[AnnotatedImage]]:
    return {
        "ochuman": load_coco_keypoints(root / "ochuman" / "test_ochuman.json", root / "ochuman"),
        "posetrack18": load_coco_keypoints(root / "posetrack18" / "annotations" / "test_posetrack18_val.json", root / "posetrack18"),
    }


def accuracy(engine: KeypointEngine, sets: dict[str, list[AnnotatedImage]]) -> dict:
    report, everything = {}, []
    for name, images in sets.items():
        per_image = []
        for image in images:
            result = engine.detect(image.path, det_threshold=0.05)
            detections = [(p.det_score, p.keypoints) for p in result.persons if not image.ignored(p.bbox)]
            per_image.append((detections, image.people))
        everything += per_image
        report[name] = {k: round(v * 100, 1) if k.startswith("AP") else v for k, v in average_precision(per_image).items()}
    report["all"] = {k: round(v * 100, 1) if k.startswith("AP") else v for k, v in average_precision(everything).items()}
    return report


def speed(engine: KeypointEngine, photos: list[Path], repeats: int, threshold: float) -> dict:
    engine.detect(photos[0], det_threshold=threshold)  # warm-up
    single, cpu = [], []
    for _ in range(repeats):
        for photo in photos:
            data = photo.read_bytes()
            start, start_cpu = time.perf_counter(), time.process_time()
            engine.detect(data, det_threshold=threshold)
            single.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
    start = time.perf_counter()
    for _ in range(repeats):
        engine.detect_many([photo.read_bytes() for photo in photos], det_threshold=threshold)
    elapsed = time.perf_counter() - start
    return {
        "batch1_ms": percentiles(single),
        "batch1_cpu_ms": percentiles(cpu),  # CPU time of this process: steadier than wall time on a shared machine
        "batch_throughput": {"images_per_s": round(repeats * len(photos) / elapsed, 2), "batch_size": len(photos)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "keypoints")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input-size", type=int, default=None, help="MultiPose input side (default KEYPOINTS_INPUT_SIZE)")
    parser.add_argument("--only-default", action="store_true", help="only the last three steps (box-level NMS, pose-level NMS, the default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = get_settings()
    size = args.input_size or settings.keypoints_input_size
    if not (args.data / "ochuman" / "test_ochuman.json").is_file():
        sys.exit(f"the keypoint data set is not at {args.data}")
    sets = load_sets(args.data)
    photos = [image.path for images in sets.values() for image in images]
    before = {"pose_nms": False, "second_look": False}  # the steps before pose-level de-duplication
    configurations = {
        "multipose": {"tiles": False, "refine": False, "detector": False, **before},
        "multipose+tiles": {"tiles": True, "refine": False, "detector": False, **before},
        "multipose+tiles+thunder": {"tiles": True, "refine": True, "detector": False, **before},
        "multipose+tiles+centernet+thunder, box-level NMS": {"tiles": True, "refine": True, "detector": True, **before},
        "+ pose-level NMS": {"tiles": True, "refine": True, "detector": True, "second_look": False},
        "+ pose-level NMS + second look (default)": {"tiles": True, "refine": True, "detector": True},
    }
    if args.only_default:
        configurations = dict(list(configurations.items())[-3:])
    report: dict = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads, "device": args.device, "cpu": platform.machine()},
        "data": {name: {"images": len(images), "people": sum(len(i.people) for i in images)} for name, images in sets.items()},
        "input_size": size,
        "det_threshold_for_speed": settings.keypoints_det_threshold,
        "accuracy_AP_percent": {},
        "speed": {},
        "paddlex_reference": PADDLEX,
    }
    for label, options in configurations.items():
        engine = KeypointEngine(settings.models_dir, device=args.device, input_size=size, **options)
        report["accuracy_AP_percent"][label] = accuracy(engine, sets)
        report["speed"][label] = speed(engine, photos, args.repeats, settings.keypoints_det_threshold)
    if args.device == "cpu":
        report["gpu"] = "no GPU figures (no GPU lent to this run)"
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
