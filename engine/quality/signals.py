"""Per-face quality signals from models that really exist here, each cheap enough to run on every face.

Signals (all measured, none guessed):
- ``feature_norm``: the recognizer's pre-normalisation feature norm (≈3.7 clean, lower when degraded);
- ``det_score``: the detector's face probability; ``face_px``: the face box's short side in original pixels;
- ``yaw/pitch``: degrees from ``fr_pose`` (Hopenet-style, 66 bins of 3°); ``roll``: the angle of the detector's eye line;
- ``sharpness``: log10 variance of the Laplacian of the aligned face; ``brightness``, ``contrast``,
  ``overexposed``/``underexposed`` shares: exposure of the aligned face's inner region;
- ``real_prob``: probability of a live (not screen/print recaptured) face from ``fr_liveness``;
- ``eyes_open``: mean probability of open eyes from ``fr_landmark`` (68 points) + ``fr_eye``;
- ``stability`` (thorough mode only): mean cosine between the feature and K perturbed copies' features.

The preprocessing of each helper model mirrors the package's ``lib/*.js``.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
POSE_BINS = torch.arange(66, dtype=torch.float32)
LIVENESS_SCALE = 2.7
log = logging.getLogger("frood.signals")


def liveness_context(bbox: np.ndarray | list[float], image_size: tuple[int, int]) -> float:
    """The context factor ``alignLivenessImage`` reaches: min(2.7, image side / box side) (scale-free)."""
    height, width = image_size
    box_w, box_h = max(float(bbox[2] - bbox[0]), 1.0), max(float(bbox[3] - bbox[1]), 1.0)
    return float(min((height - 1) / box_h, (width - 1) / box_w, LIVENESS_SCALE))
HELPER_MODELS = ("fr_pose", "fr_liveness", "fr_landmark", "fr_eye")
ModuleLoader = Callable[[str], torch.nn.Module]
"""Builds one helper model by name (``HELPER_MODELS``), a fresh copy per call: the pipeline passes one that
converts the packaged ONNX files (``engine.weights``), so ``ood`` imports nothing from ``recognition``."""


class Detection(Protocol):
    """What the quality stage reads of a detected face (``engine.face.detect.Detection`` has it)."""

    bbox: np.ndarray  # [x1, y1, x2, y2] in image pixels
    score: float
    landmarks: np.ndarray  # 5×2
    outside: float  # share of the landmark box outside the image (engine.quality.geometry)

    @property
    def width(self) -> float: ...

    @property
    def height(self) -> float: ...


HELPER_BATCH = 64  # faces per helper-model call (bounds the 224×224 pose batch's memory)


@dataclass
class QualitySignals:
    det_score: float
    face_px: float
    feature_norm: float
    yaw: float
    pitch: float
    roll: float
    sharpness: float
    brightness: float
    contrast: float
    overexposed: float
    underexposed: float
    real_prob: float
    # None until measured: the pipeline runs the landmark and eye nets only where the eye state can matter
    # (see SignalExtractor.add_eye_signals).
    eyes_open: float | None
    stability: float | None = None
    # Share of the landmark box outside the image (a face cut by the border); see engine/quality/geometry.py.
    truncation: float = 0.0
    # Distance between fr_landmark's eye centres and the detector's eye points, in face-box widths: the
    # eye-state signal is trusted only when the two landmark models agree (see engine/quality/reasons.py).
    eye_landmark_error: float | None = 0.0
    # How much surroundings the liveness crop holds, in face-box sizes (at most 2.7, see liveness_crop):
    # fr_liveness judges a recapture from the face's context, and on a tight crop it has none.
    liveness_context: float = LIVENESS_SCALE
    # Lower-face occlusion (mask, hand, scarf), from the aligned face (see lower_face_signals): how far the
    # mouth/chin region's colour lies from the cheeks' skin colour (CrCb units), and its texture relative
    # to the cheeks' (log ratio of Laplacian variances; a mask is smoother than lips and chin).
    lower_face_chroma: float = 0.0
    lower_face_texture: float = 0.0
    # P(lower face covered) read from the unit feature by the calibrated mask probe (engine/quality/probes.py);
    # None where no probe ran (a params file without one).
    mask_prob: float | None = None
    # The recognizer's certainty about this face as the certainty head predicts it from the last convolutional
    # map (engine/quality/probes.py, CR-FIQA's certainty ratio); None where no head ran (a params file without
    # one, or a model that exposes no map).
    certainty: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _crop_resize(rgb: np.ndarray, left: float, top: float, right: float, bottom: float, size: int) -> np.ndarray:
    """Crop a box (clipped to the image) and resize it; an empty box gives a grey square."""
    height, width = rgb.shape[:2]
    x1, y1 = max(int(left), 0), max(int(top), 0)
    x2, y2 = min(int(right), width), min(int(bottom), height)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.full((size, size, rgb.shape[2]) if rgb.ndim == 3 else (size, size), 127, np.uint8)
    return cv2.resize(rgb[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_LINEAR)


def eye_line_roll(landmarks: np.ndarray) -> float:
    """Roll in degrees: the angle of the line through the detector's two eye points, negative when the face turns
    anticlockwise (fr_pose's sign). Exact for an in-plane rotation, where fr_pose's roll, read off a box crop, was
    off by up to 8° and moved with the detector's box (docs/quality.md); the score does not read roll."""
    (x1, y1), (x2, y2) = sorted(np.asarray(landmarks, float)[:2].tolist())
    return float(np.degrees(np.arctan2(y2 - y1, x2 - x1)))


def pose_crop(rgb: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """fr_pose.js: the box grown by a quarter on each side, 224×224. Where that box leaves the image the missing
    part is grey, as in MTCNN's re-detection inside a grey border: clipped and stretched instead, a frontal face at
    the image's edge read as turned by up to 35° (tests/test_quality_components.py)."""
    x1, y1, x2, y2 = bbox
    width, height = x2 - x1, y2 - y1
    left, top, right, bottom = x1 - width / 4, y1 - height / 4, x2 + width / 4, y2 + height / 4
    outside = int(math.ceil(max(0.0, -left, -top, right - rgb.shape[1], bottom - rgb.shape[0])))
    if outside:
        rgb = cv2.copyMakeBorder(rgb, outside, outside, outside, outside, cv2.BORDER_CONSTANT, value=(127,) * 3)
        left, top, right, bottom = left + outside, top + outside, right + outside, bottom + outside
    return _crop_resize(rgb, left, top, right, bottom, 224)


def liveness_crop(rgb: np.ndarray, bbox: np.ndarray, scale_value: float = LIVENESS_SCALE) -> np.ndarray:
    """fr_liveness.js ``alignLivenessImage``: a 2.7× context box shifted inside the image, 128×128."""
    height, width = rgb.shape[:2]
    x, y = bbox[0], bbox[1]
    box_w, box_h = max(bbox[2] - bbox[0], 1.0), max(bbox[3] - bbox[1], 1.0)
    scale = min((height - 1) / box_h, (width - 1) / box_w, scale_value)
    new_w, new_h = box_w * scale, box_h * scale
    center_x, center_y = x + box_w / 2, y + box_h / 2
    left, top, right, bottom = center_x - new_w / 2, center_y - new_h / 2, center_x + new_w / 2, center_y + new_h / 2
    if left < 0:
        right, left = right - left, 0
    if top < 0:
        bottom, top = bottom - top, 0
    if right > width - 1:
        left, right = left - (right - width + 1), width - 1
    if bottom > height - 1:
        top, bottom = top - (bottom - height + 1), height - 1
    return _crop_resize(rgb, left, top, right, bottom, 128)


def exposure_signals(aligned: np.ndarray) -> dict[str, float]:
    """Sharpness and exposure of the aligned face's inner region (cheeks, eyes, nose, mouth)."""
    gray = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    size = gray.shape[0]
    inner = gray[size * 3 // 16 : size * 15 // 16, size * 3 // 16 : size * 13 // 16]
    laplacian = cv2.Laplacian(inner, cv2.CV_32F)
    return {
        "sharpness": float(np.log10(laplacian.var() + 1.0)),
        "brightness": float(inner.mean()),
        "contrast": float(inner.std()),
        "overexposed": float((inner >= 250).mean()),
        "underexposed": float((inner <= 15).mean()),
    }


# Regions of the 112×112 aligned face (ArcFace template: eyes at y≈52, nose tip y≈72, mouth y≈92): the
# cheeks just under the eyes (left and right) and the mouth/chin region a mask, hand or scarf covers.
CHEEK_ROWS, CHEEK_COLUMNS = (54, 66), ((18, 40), (72, 94))
LOWER_ROWS, LOWER_COLUMNS = (80, 104), (34, 78)


def lower_face_signals(aligned: np.ndarray) -> dict[str, float]:
    """Is the lower face covered? Compares the mouth/chin region of the aligned face with the cheeks.

    Skin keeps one chroma (YCrCb's Cr, Cb) across the face whatever the light, so a lower face whose
    median chroma is far from the cheeks' is covered by something else; a fabric mask is also smoother
    than lips and chin. Grey images give chroma 0 (no evidence either way). Scaled to the 112 template."""
    size = aligned.shape[0]

    def rows(span: tuple[int, int]) -> slice:
        return slice(span[0] * size // 112, span[1] * size // 112)

    def cols(span: tuple[int, int]) -> slice:
        return slice(span[0] * size // 112, span[1] * size // 112)

    ycrcb = cv2.cvtColor(aligned, cv2.COLOR_RGB2YCrCb)
    cheeks = np.concatenate([ycrcb[rows(CHEEK_ROWS), cols(span)].reshape(-1, 3) for span in CHEEK_COLUMNS]).astype(np.float32)
    lower = ycrcb[rows(LOWER_ROWS), cols(LOWER_COLUMNS)].reshape(-1, 3).astype(np.float32)
    chroma = float(np.linalg.norm(np.median(lower[:, 1:], axis=0) - np.median(cheeks[:, 1:], axis=0)))
    luma = ycrcb[..., 0]
    lower_texture = cv2.Laplacian(luma[rows(LOWER_ROWS), cols(LOWER_COLUMNS)], cv2.CV_32F).var()
    cheek_texture = cv2.Laplacian(luma[rows(CHEEK_ROWS), cols((CHEEK_COLUMNS[0][0], CHEEK_COLUMNS[1][1]))], cv2.CV_32F).var()
    return {"lower_face_chroma": chroma, "lower_face_texture": float(np.log((lower_texture + 1.0) / (cheek_texture + 1.0)))}


class FrozenPerShape:
    """A module traced and frozen (``torch.jit``) once per input shape, checked against the eager module on
    that first input; the eager module answers whenever a trace fails, disagrees, or too many shapes came.

    onnx2torch's graphs bake some shapes in (a flatten to the traced batch size), so one trace per shape
    is the safe form. Only small batches (a photo or two: ``max_batch`` inputs) are traced: they are the
    interactive case that reuses a few shapes forever; a large batch already amortises the eager overhead
    and its sizes vary, so tracing it would cost more than it saves."""

    def __init__(self, module: torch.nn.Module, name: str, max_batch: int = 4, max_shapes: int = 8, tolerance: float = 1e-3):
        self.module = module.eval()
        self.name = name
        self.max_batch = max_batch
        self.max_shapes = max_shapes
        self.tolerance = tolerance
        self.traced: dict[tuple[int, ...], torch.jit.ScriptModule | None] = {}

    def __call__(self, batch: torch.Tensor):
        shape = tuple(batch.shape)
        if shape not in self.traced:
            if len(self.traced) >= self.max_shapes or shape[0] > self.max_batch:
                return self.module(batch)
            eager = self.module(batch)
            self.traced[shape] = self._trace(batch, eager)
            return eager
        traced = self.traced[shape]
        return self.module(batch) if traced is None else traced(batch)

    def _trace(self, batch: torch.Tensor, eager) -> torch.jit.ScriptModule | None:
        try:
            with warnings.catch_warnings():  # onnx2torch's shape arithmetic warns that it is being traced: we check the result
                warnings.simplefilter("ignore")
                traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(self.module, batch, check_trace=False)))
            outputs = traced(batch)
            pairs = zip(eager, outputs) if isinstance(eager, (list, tuple)) else [(eager, outputs)]
            if all(float((a - b).abs().max()) <= self.tolerance for a, b in pairs):
                return traced
            log.warning("%s: the traced net disagrees with the eager one on %s; running it eagerly", self.name, tuple(batch.shape))
        except Exception as error:  # a torch that cannot trace this graph: the eager module works the same
            log.warning("%s: not traced (%s); running it eagerly", self.name, type(error).__name__)
        return None


class SignalExtractor:
    """Runs the helper models (pose, liveness, landmarks, eyes) once over every face of a batch of images.

    Each extractor owns its modules (``load`` hands out copies), so extractors on different
    devices in one process never move each other's weights. The helpers stay in fp32 on every device:
    the quality score is calibrated on their fp32 outputs.
    """

    def __init__(self, load: ModuleLoader, device: str = "cpu"):
        self.device = torch.device(device)
        self.pose = load("fr_pose").to(self.device)
        self.liveness = load("fr_liveness").to(self.device)
        self.landmark = load("fr_landmark").to(self.device)
        self.eye = load("fr_eye").to(self.device)
        self._bins = POSE_BINS.to(self.device)
        self._imagenet_mean = torch.from_numpy(IMAGENET_MEAN).to(self.device)
        self._imagenet_std = torch.from_numpy(IMAGENET_STD).to(self.device)
        self._speed_up_on_cpu()

    def _speed_up_on_cpu(self) -> None:
        """CPU only: the pose, liveness, landmark and eye nets run traced and frozen (onnx2torch's reshapes,
        splits and PReLUs fused; the pose net ~1.5× faster, the liveness net ~1.4×, landmarks + eyes ~1.5×), the liveness net in
        channels_last. Outputs move by float rounding only (the quality score by < 1e-4; see
        tests/test_quality_speedup.py)."""
        if self.device.type != "cpu":
            return
        self.liveness = self.liveness.to(memory_format=torch.channels_last)
        self.pose = FrozenPerShape(self.pose, "fr_pose")
        self.liveness = FrozenPerShape(self.liveness, "fr_liveness")
        self.eye = FrozenPerShape(self.eye, "fr_eye", max_batch=8)  # two eyes per face
        self.landmark = FrozenPerShape(self.landmark, "fr_landmark")

    def _tensor(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)

    @torch.inference_mode()
    def head_pose(self, crops: np.ndarray) -> np.ndarray:
        """N×3 (yaw, pitch, roll) in degrees. fr_pose.js swaps R and B before ImageNet normalisation: so do we."""
        # uint8 pixels travel to the device and are normalised there (a quarter of the bytes; on CUDA
        # the numpy float conversion had cost 20 times the network). Same float32 operations, same values.
        bgr = self._tensor(crops).flip(-1).float() / 255.0
        normalised = (bgr - self._imagenet_mean) / self._imagenet_std
        outputs = self.pose(normalised.permute(0, 3, 1, 2))  # an NCHW view in channels_last order
        angles = [(torch.softmax(out, dim=1) * self._bins).sum(dim=1) * 3 - 99 for out in outputs]
        return torch.stack(angles, dim=1).cpu().numpy()

    @torch.inference_mode()
    def real_probability(self, crops: np.ndarray) -> np.ndarray:
        """P(live face) from fr_liveness: raw 0–255 pixels; class 0 is "real" in fr_liveness.js.

        The pixels go in BGR order (as in the Silent-Face models this one descends from): measured on
        our real photos, BGR gives P(real) ≈ 0.998 on every one, RGB flags a fifth of them.
        """
        # NHWC pixels viewed as NCHW are already channels_last: no transposing copy.
        logits = self.liveness(self._tensor(crops).flip(-1).float().permute(0, 3, 1, 2))
        return torch.softmax(logits, dim=1)[:, 0].cpu().numpy()

    @torch.inference_mode()
    def eyes_open(self, grays: list[np.ndarray], boxes: list[np.ndarray], eye_points: list[np.ndarray] | None = None) -> np.ndarray:
        """fr_landmark (64×64 grey box crop, /256) → 68 points → fr_eye on 24×24 eye crops (/255).

        With ``eye_points`` (the detector's two eye landmarks per face) returns an N×2 array: the open
        probability and the landmark disagreement (mean eye-centre distance / box width)."""
        if not boxes:
            return np.zeros((0, 2) if eye_points is not None else 0, np.float32)
        crops = np.stack([_crop_resize(gray, *box, 64) for gray, box in zip(grays, boxes)]).astype(np.float32) / 256.0
        points = self.landmark(self._tensor(crops[:, None])).cpu().numpy().reshape(len(boxes), 68, 2)
        eye_crops: list[np.ndarray] = []
        errors: list[float] = []
        for index, (gray, box, face_points) in enumerate(zip(grays, boxes, points)):
            width, height = box[2] - box[0], box[3] - box[1]
            absolute = face_points * np.array([width, height]) + box[:2]
            if eye_points is not None:
                centres = np.stack([absolute[36:42].mean(axis=0), absolute[42:48].mean(axis=0)])
                errors.append(float(np.linalg.norm(centres - eye_points[index][:2], axis=1).mean() / max(width, 1.0)))
            for corner_ids, left_id, right_id in (((37, 38, 40, 41), 36, 39), ((43, 44, 46, 47), 42, 45)):
                center = absolute[list(corner_ids)].mean(axis=0)
                side = max((absolute[right_id, 0] - absolute[left_id, 0]) * 1.6, 2.0)
                eye_crops.append(_crop_resize(gray, center[0] - side / 2, center[1] - side / 2, center[0] + side / 2, center[1] + side / 2, 24))
        eyes = np.stack(eye_crops).astype(np.float32)[:, None] / 255.0
        open_prob = torch.softmax(self.eye(self._tensor(eyes)), dim=1)[:, 1].cpu().numpy()
        open_mean = open_prob.reshape(len(boxes), 2).mean(axis=1)
        if eye_points is None:
            return open_mean
        return np.stack([open_mean, np.asarray(errors, np.float32)], axis=1)

    def extract(
        self,
        rgb: np.ndarray,
        detections: list[Detection],
        aligned: np.ndarray,
        feature_norms: np.ndarray,
    ) -> list[QualitySignals]:
        """Signals for each detection of one (decoded) image: sizes are in the pixels the models saw."""
        return self.extract_batch([(rgb, detections)], aligned, feature_norms)[0]

    def eye_state(self, faces: list[tuple[np.ndarray, Detection]]) -> np.ndarray:
        """N×2 (open probability, landmark disagreement) for (rgb, detection) pairs, HELPER_BATCH at a time."""
        grays = {id(rgb): cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for rgb, _ in faces}
        chunks = [faces[start : start + HELPER_BATCH] for start in range(0, len(faces), HELPER_BATCH)]
        return np.concatenate(
            [self.eyes_open([grays[id(rgb)] for rgb, _ in chunk], [det.bbox for _, det in chunk], [det.landmarks[:2] for _, det in chunk]) for chunk in chunks]
        )

    def add_eye_signals(self, faces: list[tuple[np.ndarray, Detection, QualitySignals]]) -> None:
        """Measures the eye state of faces extracted with ``eyes=False`` (in place)."""
        if not faces:
            return
        for (_, _, signals), (open_prob, error) in zip(faces, self.eye_state([(rgb, det) for rgb, det, _ in faces])):
            signals.eyes_open, signals.eye_landmark_error = float(open_prob), float(error)

    def extract_batch(
        self,
        images: list[tuple[np.ndarray, list[Detection]]],
        aligned: np.ndarray,
        feature_norms: np.ndarray,
        eyes: bool = True,
    ) -> list[list[QualitySignals]]:
        """Signals of every face of several images, each helper model run once over all of them.

        ``images`` are (rgb, detections) pairs; ``aligned`` and ``feature_norms`` hold their faces in
        the same order (image by image, detection by detection). ``eyes=False`` leaves the eye state
        unmeasured (None) for :meth:`add_eye_signals` to fill where it is needed.
        """
        faces = [(rgb, det) for rgb, detections in images for det in detections]
        if not faces:
            return [[] for _ in images]
        poses, real = [], []
        for start in range(0, len(faces), HELPER_BATCH):
            chunk = faces[start : start + HELPER_BATCH]
            poses.append(self.head_pose(np.stack([pose_crop(rgb, det.bbox) for rgb, det in chunk])))
            real.append(self.real_probability(np.stack([liveness_crop(rgb, det.bbox) for rgb, det in chunk])))
        poses, real = np.concatenate(poses), np.concatenate(real)
        eye_values = self.eye_state(faces) if eyes else np.full((len(faces), 2), np.nan)
        signals = [
            QualitySignals(
                det_score=det.score,
                face_px=float(min(det.width, det.height)),
                feature_norm=float(feature_norms[index]),
                yaw=float(poses[index, 0]),
                pitch=float(poses[index, 1]),
                roll=eye_line_roll(det.landmarks),
                real_prob=float(real[index]),
                eyes_open=None if np.isnan(eye_values[index, 0]) else float(eye_values[index, 0]),
                truncation=float(det.outside),
                eye_landmark_error=None if np.isnan(eye_values[index, 1]) else float(eye_values[index, 1]),
                liveness_context=liveness_context(det.bbox, rgb.shape[:2]),
                **exposure_signals(aligned[index]),
                **lower_face_signals(aligned[index]),
            )
            for index, (rgb, det) in enumerate(faces)
        ]
        grouped, offset = [], 0
        for _, detections in images:
            grouped.append(signals[offset : offset + len(detections)])
            offset += len(detections)
        return grouped
