"""COCO keypoint evaluation: OKS, OKS-based AP (COCO's definition), and loading COCO-format sets.

Written out here (about 100 lines) instead of depending on pycocotools, and kept to COCO's rules: OKS
with COCO's per-keypoint sigmas over the labelled keypoints, greedy matching of detections by score at
each OKS threshold 0.50:0.05:0.95, 101-point interpolated precision, AP = mean over thresholds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

# COCO's keypoint sigmas (pycocotools ``COCOeval.Params.kpt_oks_sigmas``), in COCO keypoint order.
COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
SAME_POSE_OKS = 0.5  # COCO's loosest match: two poses at least this similar are one pose to the evaluation


@dataclass
class GroundTruth:
    """One annotated person: ``keypoints`` 17 × 3 (x, y, visibility), ``bbox`` x, y, w, h, ``area``."""

    keypoints: np.ndarray
    bbox: tuple[float, float, float, float]
    area: float
    used: np.ndarray  # which of the 17 keypoints this data set defines as COCO's (bool mask)

    @property
    def labelled(self) -> int:
        return int(((self.keypoints[:, 2] > 0) & self.used).sum())


@dataclass
class AnnotatedImage:
    path: Path
    people: list[GroundTruth]
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons (x, y) of unannotated people

    def ignored(self, bbox: tuple[float, float, float, float]) -> bool:
        """PoseTrack marks regions with people it did not annotate; a detection centred in one is not
        counted (neither hit nor false positive), as PoseTrack's own evaluation does."""
        centre = ((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2)
        return any(cv2.pointPolygonTest(region, centre, False) >= 0 for region in self.ignore_regions)


def load_coco_keypoints(annotations: Path, images_root: Path) -> list[AnnotatedImage]:
    """A COCO-format keypoint file → images with their people. Keypoint slots whose name is not COCO's
    (PoseTrack's ``head_bottom``/``head_top`` where COCO has the eyes) are left out of every OKS."""
    from engine.keypoints.engine import COCO_KEYPOINTS

    spec = json.loads(Path(annotations).read_text())
    names = spec["categories"][0]["keypoints"]
    used = np.array([name == coco for name, coco in zip(names, COCO_KEYPOINTS)])
    by_image: dict = {}
    for image in spec["images"]:
        regions = [
            np.array(list(zip(xs, ys)), dtype=np.float32).reshape(-1, 1, 2)
            for xs, ys in zip(image.get("ignore_regions_x", []), image.get("ignore_regions_y", []))
            if len(xs) >= 3
        ]
        by_image[image["id"]] = AnnotatedImage(Path(images_root) / image["file_name"], [], regions)
    for annotation in spec["annotations"]:
        if annotation.get("iscrowd"):
            continue
        keypoints = np.array(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
        x, y, w, h = annotation["bbox"]
        area = float(annotation.get("area") or w * h)  # PoseTrack has no segmentation area: use the box
        by_image[annotation["image_id"]].people.append(GroundTruth(keypoints, (x, y, w, h), area, used))
    return list(by_image.values())


def _keypoint_similarity(a: np.ndarray, b: np.ndarray, counted: np.ndarray, area: float) -> float:
    """COCO's OKS formula: the mean over the ``counted`` keypoints of exp(-d² / (2 · area · (2σ)²))."""
    if not counted.any():
        return 0.0
    distances = ((a[:, :2] - b[:, :2]) ** 2).sum(axis=1)
    e = distances / (2 * COCO_SIGMAS) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-e[counted]).mean())


def oks(predicted: np.ndarray, truth: GroundTruth) -> float:
    """Object keypoint similarity of a 17 × 2+ prediction with one annotated person (COCO's formula)."""
    return _keypoint_similarity(predicted, truth.keypoints, (truth.keypoints[:, 2] > 0) & truth.used, truth.area)


def annotated_pose_similarity(a: GroundTruth, b: GroundTruth) -> float:
    """OKS between two annotated people over the keypoints both label, scaled by the smaller person's area
    (the stricter of the two scales); 0 when they share no labelled keypoint."""
    both = (a.keypoints[:, 2] > 0) & (b.keypoints[:, 2] > 0) & a.used & b.used
    return _keypoint_similarity(a.keypoints, b.keypoints, both, min(a.area, b.area))


def shadowed_annotations(people: list[GroundTruth]) -> set[int]:
    """Indices of annotated people whose labelled joints coincide (OKS >= SAME_POSE_OKS) with another annotated
    person's who labels more of them (ties: the larger area).

    Why: two people cannot both be seen at the same joints, so such a pair has at most one visible person at
    those places; the other's "visible" labels lie on the first one's body (an annotator tracing the person
    behind along the one in front), and OKS cannot tell which of the two a pose found there belongs to.
    AP (``average_precision``) keeps every annotation, as COCO does; only the "mostly visible" count leaves
    the shadowed one out.
    """
    shadowed = set()
    for i, person in enumerate(people):
        for j in range(i + 1, len(people)):
            other = people[j]
            if annotated_pose_similarity(person, other) >= SAME_POSE_OKS:
                shadowed.add(j if (person.labelled, person.area) >= (other.labelled, other.area) else i)
    return shadowed


def box_iou(a: tuple[float, float, float, float], b_xywh: tuple[float, float, float, float]) -> float:
    """IoU of an ``x1, y1, x2, y2`` box with an ``x, y, w, h`` box."""
    bx1, by1, bx2, by2 = b_xywh[0], b_xywh[1], b_xywh[0] + b_xywh[2], b_xywh[1] + b_xywh[3]
    iw = max(0.0, min(a[2], bx2) - max(a[0], bx1))
    ih = max(0.0, min(a[3], by2) - max(a[1], by1))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def average_precision(per_image: list[tuple[list[tuple[float, np.ndarray]], list[GroundTruth]]]) -> dict[str, float]:
    """COCO keypoint AP. ``per_image``: (detections as (score, 17×3 keypoints), ground truths) per image.

    Ground truths with no labelled keypoint are ignored (COCO does the same); detections are matched
    greedily by score, each to the unmatched ground truth with the highest OKS above the threshold.
    """
    scores, matched = [], {t: [] for t in range(len(OKS_THRESHOLDS))}
    total = 0
    for detections, truths in per_image:
        truths = [truth for truth in truths if truth.labelled > 0]
        total += len(truths)
        detections = sorted(detections, key=lambda d: -d[0])
        table = np.array([[oks(points, truth) for truth in truths] for _, points in detections]).reshape(len(detections), len(truths))
        scores.extend(score for score, _ in detections)
        for t, threshold in enumerate(OKS_THRESHOLDS):
            taken = np.zeros(len(truths), dtype=bool)
            for row in table:
                candidates = np.where(~taken & (row >= threshold))[0]
                if candidates.size:
                    taken[candidates[np.argmax(row[candidates])]] = True
                    matched[t].append(True)
                else:
                    matched[t].append(False)
    order = np.argsort(-np.array(scores), kind="mergesort")
    results = []
    for t in range(len(OKS_THRESHOLDS)):
        hits = np.array(matched[t], dtype=bool)[order]
        tp, fp = np.cumsum(hits), np.cumsum(~hits)
        recall = tp / max(total, 1)
        precision = tp / np.maximum(tp + fp, np.spacing(1))
        for i in range(len(precision) - 2, -1, -1):  # make precision monotonically decreasing
            precision[i] = max(precision[i], precision[i + 1])
        sampled = [precision[np.searchsorted(recall, r, side="left")] if np.searchsorted(recall, r, side="left") < len(recall) else 0.0 for r in RECALL_POINTS]
        results.append(float(np.mean(sampled)))
    return {"AP": float(np.mean(results)), "AP50": results[0], "AP75": results[5], "ground_truths": total, "detections": len(scores)}
