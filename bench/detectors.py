"""Measurement (not a test): YuNet against MTCNN on face recall, verification accuracy and CPU time; prints JSON.

    python bench/detectors.py [--data-root ../shared/data] [--threads 2]

The numbers docs/models.md tabulates (issue 23). Both detectors run at ``detect_max_side`` 640 with the
pipeline's tight-crop handling (engine.face.detect.finish_detections), exactly as ``DETECTOR=mtcnn|yunet``.

Recall, per set (a hit is a detected face that overlaps the expected one, IoU >= 0.5 unless said otherwise):
- ``wild``: the held-out third of wild/ (the calibration split's identities, seed 8): a face found at all
  (each photo shows its labelled person);
- ``faces``: faces/ ``img*.jpg`` (one subject each): a face found; and the group photos' faces each
  detector finds that the other finds too;
- ``keypoints_people``: every annotated person of keypoints/ (OCHuman, PoseTrack18) whose nose is labelled
  (some face away or are far from the camera: neither detector can reach 100 %): a hit when a detected box
  contains the nose;
- ``tight_crops``: faces/ ``img*.jpg`` cut to the face box (the mean of both detectors' full-photo boxes)
  grown by 0 % and by 20 % of its side, and Extended Yale B near-frontal crops (dark/, |azimuth|, |elevation|
  <= 20°, 168×192 grey): a face found, IoU >= 0.3 with the cut box for faces/ crops;
- ``small_faces``: each faces/ ``img*.jpg`` scaled so its face box is 16, 24 and 40 px wide, on a 640×480 grey
  canvas: IoU >= 0.4 with the scaled box (a 24 px box moves its IoU a lot per pixel).

Accuracy: the held-out wild photos' main faces (the pipeline's choice), aligned and embedded by each recognizer;
TAR at the FMR 1e-3 / 1e-4 operating point of each detector × recognizer's own held-out impostor pairs, a
photo without a face failing every genuine pair it is in.
CPU time: ms per photo of ``detect_batch`` over faces/ (62 photos, 640 px) and over the held-out wild photos.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.decode import decode_image  # noqa: E402
from engine.face.align import align_face  # noqa: E402
from engine.face.choose import main_face_order  # noqa: E402
from engine.face.models import create_embedder  # noqa: E402
from engine.face.pipeline import PipelineConfig, create_detector  # noqa: E402
from engine.face.yunet import create_yunet  # noqa: E402
from evaluation import metrics  # noqa: E402
from evaluation.calibdata import DEFAULT_SEED, split_identities  # noqa: E402

DETECTORS = ("mtcnn", "yunet", "yunet-raw")  # yunet-raw: YuNet's own points and score, without O-Net
MODELS = ("faceplugin-r512", "sface")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def best_iou(box: np.ndarray, faces: list) -> float:
    return max((iou(box, face.bbox) for face in faces), default=0.0)


def load(path: Path) -> np.ndarray:
    return decode_image(path).rgb


def timed(detector, images: list[np.ndarray]) -> tuple[list, float]:
    start = time.perf_counter()
    found = detector.detect_batch(images)
    return found, (time.perf_counter() - start) * 1000 / max(len(images), 1)


def share(hits: list[bool]) -> dict:
    return {"found": int(sum(hits)), "of": len(hits), "recall": round(float(np.mean(hits)), 4) if hits else None}


def keypoint_people(root: Path) -> list[tuple[Path, list[np.ndarray]]]:
    """(photo, visible noses) of the keypoint sets' annotated people."""
    sets = [(root / "ochuman", root / "ochuman" / "test_ochuman.json"),
            (root / "posetrack18", root / "posetrack18" / "annotations" / "test_posetrack18_val.json")]
    people: list[tuple[Path, list[np.ndarray]]] = []
    for folder, annotation_file in sets:
        if not annotation_file.is_file():
            continue
        data = json.loads(annotation_file.read_text())
        noses: dict[int, list[np.ndarray]] = {}
        for annotation in data["annotations"]:
            points = np.asarray(annotation["keypoints"], float).reshape(-1, 3)
            if points[0, 2] >= 1:  # the nose is labelled (PoseTrack18 marks labelled points 1, OCHuman 2)
                noses.setdefault(annotation["image_id"], []).append(points[0, :2])
        for image in data["images"]:
            path = folder / image["file_name"]
            if path.is_file() and image["id"] in noses:
                people.append((path, noses[image["id"]]))
    return people


def tar_at(features: list[np.ndarray | None], labels: list[str], fmrs: tuple[float, ...] = (1e-3, 1e-4)) -> dict:
    present = [index for index, feature in enumerate(features) if feature is not None]
    x = np.stack([features[index] for index in present])
    y = np.array([labels[index] for index in present])
    values, same = metrics.pair_similarities(x, y)
    impostors = np.sort(values[~same])[::-1]
    all_labels = np.array(labels)
    genuine_total = int(sum(int((all_labels == name).sum()) * (int((all_labels == name).sum()) - 1) // 2 for name in set(labels)))
    report = {"photos": len(labels), "no_face": len(labels) - len(present), "genuine_pairs": genuine_total, "impostor_pairs": int(len(impostors))}
    for fmr in fmrs:
        allowed = int(np.floor(fmr * len(impostors)))
        threshold = float(np.nextafter(impostors[allowed - 1], np.inf)) if allowed >= 1 else float(impostors[0])
        report[f"tar_at_fmr_{fmr:g}"] = round(float((values[same] >= threshold).sum()) / genuine_total, 4)
        report[f"threshold_at_fmr_{fmr:g}"] = round(threshold, 4)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--models-dir", default=str(Path(__file__).resolve().parents[1] / "models"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the calibration split's seed (held-out wild identities)")
    parser.add_argument("--sets", default="tight,small,keypoints,wild", help="which measurements besides faces/ (comma-separated)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many photos per set (a quick smoke run; 0 = all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    root = Path(args.data_root)
    config = PipelineConfig(models_dir=Path(args.models_dir))
    detectors = {name: create_detector(name, "cpu", config) for name in DETECTORS if name != "yunet-raw"}
    detectors["yunet-raw"] = create_yunet(config.models_dir, config.detect_max_side, refine=False)
    report: dict = {"threads": args.threads, "detect_max_side": config.detect_max_side, "recall": {}, "accuracy": {}, "detect_ms_per_photo": {}}

    # faces/: recall and the reference boxes the crops below are cut from
    faces_dir = root / "faces"
    singles = sorted(faces_dir.glob("img*.jpg"), key=lambda path: (len(path.name), path.name))[: args.limit or None]
    groups = [faces_dir / name for name in ("couple.jpg", "selfie-many-people.jpg") if (faces_dir / name).is_file()]
    photos = [load(path) for path in singles]
    found = {}
    for name, detector in detectors.items():
        detector.detect_batch(photos[:1])  # warm-up
        found[name], report["detect_ms_per_photo"].setdefault("faces", {})[name] = timed(detector, photos)
    report["recall"]["faces"] = {name: share([bool(faces) for faces in found[name]]) for name in DETECTORS}
    group_images = [load(path) for path in groups]
    group_found = {name: detector.detect_batch(group_images) for name, detector in detectors.items()}
    report["recall"]["faces_groups"] = {
        path.name: {name: len(group_found[name][index]) for name in DETECTORS}
        | {"both": sum(best_iou(face.bbox, group_found["yunet"][index]) >= 0.5 for face in group_found["mtcnn"][index])}
        for index, path in enumerate(groups)
    }
    references: list[tuple[np.ndarray, np.ndarray]] = []  # (photo, consensus box of its main face)
    for index, rgb in enumerate(photos):
        mains = []
        for name in ("mtcnn", "yunet"):
            faces = found[name][index]
            if faces:
                order = main_face_order([face.bbox for face in faces], rgb.shape[:2])
                mains.append(faces[order[0]].bbox)
        if len(mains) == 2 and iou(*mains) >= 0.5:
            references.append((rgb, (mains[0] + mains[1]) / 2))
    report["reference_boxes"] = {"photos": len(references), "rule": "both detectors' main boxes overlap (IoU >= 0.5); their mean"}

    sets = set(args.sets.split(","))
    if "tight" in sets:
        # tight crops: faces/ cut to the box (+0 %, +20 %), and Yale B near-frontal crops
        tight: dict[str, list[bool]] = {f"{name}:{grow}": [] for name in DETECTORS for grow in ("crop_0", "crop_20", "yaleb")}
        for grow_name, grow in (("crop_0", 0.0), ("crop_20", 0.2)):
            crops, boxes = [], []
            for rgb, box in references:
                side = np.array([box[2] - box[0], box[3] - box[1]]) * grow
                x1, y1 = np.maximum(0, np.floor(box[:2] - side)).astype(int)
                x2, y2 = np.minimum([rgb.shape[1], rgb.shape[0]], np.ceil(box[2:] + side)).astype(int)
                crops.append(np.ascontiguousarray(rgb[y1:y2, x1:x2]))
                boxes.append(box - np.array([x1, y1, x1, y1]))
            for name, detector in detectors.items():
                for faces, box in zip(detector.detect_batch(crops), boxes):
                    tight[f"{name}:{grow_name}"].append(best_iou(box, faces) >= 0.3)
        yale = []
        for person in sorted(path for path in (root / "dark").iterdir() if path.is_dir()) if (root / "dark").is_dir() else []:
            for path in sorted(person.glob("*.png")):
                stem = path.stem.split("_P00A")[-1] if "_P00A" in path.stem else ""
                if not stem or "Ambient" in path.name:
                    continue
                azimuth, elevation = int(stem[:4]), int(stem[5:])
                if abs(azimuth) <= 20 and abs(elevation) <= 20:
                    yale.append(load(path))
        yale = yale[: args.limit or None]
        for name, detector in detectors.items():
            found_yale, report["detect_ms_per_photo"].setdefault("yaleb", {})[name] = timed(detector, yale)
            tight[f"{name}:yaleb"] = [bool(faces) for faces in found_yale]
        report["recall"]["tight_crops"] = {key: share(hits) for key, hits in tight.items()}

    if "small" in sets:
        # small faces: the face box scaled to 16, 24 and 40 px wide on a 640×480 grey canvas
        small: dict[str, list[bool]] = {f"{name}:{px}px": [] for name in DETECTORS for px in (16, 24, 40)}
        for px in (16, 24, 40):
            canvases, boxes = [], []
            for rgb, box in references:
                scale = px / (box[2] - box[0])
                width, height = max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))
                shrunk = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
                canvas = np.full((480, 640, 3), 127, np.uint8)
                centre = (box[:2] + box[2:]) / 2 * scale
                ox, oy = int(320 - centre[0]), int(240 - centre[1])
                sx1, sy1 = max(0, -ox), max(0, -oy)
                dx1, dy1 = max(0, ox), max(0, oy)
                w, h = min(width - sx1, 640 - dx1), min(height - sy1, 480 - dy1)
                canvas[dy1 : dy1 + h, dx1 : dx1 + w] = shrunk[sy1 : sy1 + h, sx1 : sx1 + w]
                canvases.append(canvas)
                boxes.append(box * scale + np.array([ox, oy, ox, oy]))
            for name, detector in detectors.items():
                for faces, box in zip(detector.detect_batch(canvases), boxes):
                    small[f"{name}:{px}px"].append(best_iou(box, faces) >= 0.4)
        report["recall"]["small_faces"] = {key: share(hits) for key, hits in small.items()}

    if "keypoints" in sets:
        # keypoint people: a visible nose inside a detected box
        people = keypoint_people(root / "keypoints")[: args.limit or None]
        images = [load(path) for path, _ in people]
        report["recall"]["keypoints_people"] = {}
        for name, detector in detectors.items():
            hits = []
            for faces, (_, noses) in zip(detector.detect_batch(images), people):
                for nose in noses:
                    hits.append(any(face.bbox[0] <= nose[0] <= face.bbox[2] and face.bbox[1] <= nose[1] <= face.bbox[3] for face in faces))
            report["recall"]["keypoints_people"][name] = share(hits)

    if "wild" in sets:
        # wild held-out: recall, time, and verification through each recognizer
        with open(root / "wild" / "identities.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        held = split_identities([f"wild:{row['identity']}" for row in rows], "wild", args.seed)
        rows = [row for row in rows if f"wild:{row['identity']}" in held][: args.limit * 10 or None]
        wild = [load(root / "wild" / row["file"]) for row in rows]
        labels = [row["identity"] for row in rows]
        embedders = {model: create_embedder(model, Path(args.models_dir)) for model in MODELS}
        report["recall"]["wild_held_out"] = {}
        for name, detector in detectors.items():
            found_wild, report["detect_ms_per_photo"].setdefault("wild_held_out", {})[name] = timed(detector, wild)
            report["recall"]["wild_held_out"][name] = share([bool(faces) for faces in found_wild])
            for model, embedder in embedders.items():
                features: list[np.ndarray | None] = []
                for rgb, faces in zip(wild, found_wild):
                    if not faces:
                        features.append(None)
                        continue
                    main = faces[main_face_order([face.bbox for face in faces], rgb.shape[:2])[0]]
                    crop = align_face(rgb, main.landmarks, embedder.input_size)
                    features.append(embedder.embed(crop[None]).features[0])
                report["accuracy"][f"{name}+{model}"] = tar_at(features, labels)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
