"""ISO/IEC 29794-5 component quality measures beside the calibrated OOD score (issue 26).

Each measure is a native value (degrees, pixels, a share, a probability) mapped to an integer quality in
0–100, and, where a requirement exists, whether the face passes it. The names are OFIQ's (BSI's reference
implementation of the standard, ``data/ofiq_config.jaxn`` and ``OFIQlib/modules/measures``); the code is
written here from the definitions (OFIQ's own code is not copied). ``definition`` says how close each is:

- ``"ofiq"``: OFIQ's definition and mapping on equivalent inputs (the pose estimator is an input);
- ``"ofiq-approx"``: OFIQ's formula and mapping, but our inputs differ (MTCNN's 5 points and fr_landmark's
  68 points instead of ADNet's 98, a landmark hull instead of face parsing/occlusion segmentation);
- ``"frood"``: our own measure (no model for OFIQ's, or the measure behind one of our reason codes); its
  quality is a logistic curve that crosses 50 at the requirement, so ``quality >= 50`` ⇔ ``passes``.

Requirements (``passes``): ISO/IEC 29794-5 defines qualities, not pass/fail. A component has a requirement
only where one of our reason rules (``engine/quality/reasons.py``) enforces one, with the rule's very
threshold, so :func:`component_reasons` gives exactly ``rule_reasons``; elsewhere ``passes`` is ``None``.
A measure that cannot be computed honestly (no dense landmarks, no background in the photo, a tight crop
for the recapture check, no mask probe) is absent. The engine returns dataclasses; JSON is in
``schemas/components.py``, sentences in ``schemas/component_messages.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from engine.quality.geometry import TRUNCATED_SHARE, is_truncated
from engine.quality.reasons import (
    BRIGHT_BRIGHTNESS,
    CHROMA_SPREAD,
    CHROMA_TYPICAL,
    DARK_BRIGHTNESS,
    MASK_PROB,
    MAX_OVEREXPOSED_SHARE,
    MAX_PITCH,
    MAX_YAW,
    MIN_DET_SCORE,
    MIN_EYES_OPEN,
    MIN_FACE_PX,
    MIN_SHARPNESS,
    MIN_STABILITY,
    OCCLUDED_LEVEL,
    RECAPTURE_REAL_PROB,
    eye_signal_trusted,
    liveness_trusted,
)
from engine.quality.signals import QualitySignals

OFIQ, OFIQ_APPROX, FROOD = "ofiq", "ofiq-approx", "frood"


@dataclass(frozen=True)
class Sigmoid:
    """OFIQ's quality mapping: ``clamp(round(h·(a + s·σ((x − x0)/w))), 0, 100)``."""

    h: float = 100.0
    a: float = 0.0
    s: float = 1.0
    x0: float = 0.0
    w: float = 1.0

    def __call__(self, value: float) -> int:
        z = (self.x0 - value) / self.w
        sigma = 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))
        return _clamp(self.h * (self.a + self.s * sigma))


# The constants of OFIQ's data/ofiq_config.jaxn (the C++ defaults agree), by measure name.
OFIQ_SIGMOIDS: dict[str, Sigmoid] = {
    "InterEyeDistance": Sigmoid(h=100, x0=70.0, w=20.0),
    "HeadSize": Sigmoid(h=200, a=1, s=-1, x0=0.0, w=0.05),  # applied to |value - 0.45|
    "LeftwardCropOfTheFaceImage": Sigmoid(h=100, x0=0.9, w=0.1),
    "RightwardCropOfTheFaceImage": Sigmoid(h=100, x0=0.9, w=0.1),
    "MarginAboveOfTheFaceImage": Sigmoid(h=100, x0=1.4, w=0.1),
    "MarginBelowOfTheFaceImage": Sigmoid(h=100, x0=1.8, w=0.1),
    "UnderExposurePrevention": Sigmoid(h=120, a=0.832, s=-1, x0=0.92, w=0.05),
    "NaturalColour": Sigmoid(h=200, a=1, s=-1, x0=0.0, w=10.0),
    "BackgroundUniformity": Sigmoid(h=190, a=1, s=-1, x0=10.0, w=100.0),
    "MouthClosed": Sigmoid(h=100, a=1, s=-1, x0=0.2, w=0.06),
}
HEAD_SIZE_TARGET = 0.45
# OFIQ's alignment: 5 points (eye centres, nose tip, mouth corners) to these places of a 616×616 image.
OFIQ_ALIGNED_SIZE = 616
OFIQ_REFERENCE_POINTS = np.array([[251, 272], [364, 272], [308, 336], [262, 402], [355, 402]], np.float32)
# BackgroundUniformity's crop of the aligned image (left, right, bottom) and its resize target (w, h).
BACKGROUND_CROP = (62, 62, 210)
BACKGROUND_SIZE = (354, 292)
UNDER_RANGE, OVER_RANGE = (0, 25), (247, 255)
# fr_landmark's 68 iBUG points: chin, inner-lip upper/lower pairs (OFIQ uses ADNet's 98 with the same parts).
CHIN_68 = 8
INNER_LIP_PAIRS_68 = ((61, 67), (62, 66), (63, 65))
# Where there are no dense landmarks, the face region is this ellipse of the 616 frame (centre, half-axes):
# the brows-to-chin, cheek-to-cheek area of a frontal face aligned to OFIQ_REFERENCE_POINTS.
FACE_ELLIPSE = ((308, 365), (118, 140))
MIN_BACKGROUND_SHARE = 0.03  # of the cropped, resized aligned image; less and the background is not measured


def _clamp(value: float) -> int:
    return int(min(max(round(value), 0), 100))


def logistic_quality(value: float, threshold: float, width: float, larger_is_better: bool = True) -> int:
    """Our mapping for ``frood`` measures: 50 at the requirement's threshold, ``width`` native units per e-fold."""
    z = (value - threshold) / width if larger_is_better else (threshold - value) / width
    z = max(min(z, 50.0), -50.0)
    return _clamp(100.0 / (1.0 + math.exp(-z)))


def pose_quality(degrees: float) -> int:
    """OFIQ's HeadPose mapping: ``round(100·max(0, cos θ)²)``."""
    return _clamp(100.0 * max(0.0, math.cos(math.radians(degrees))) ** 2)


def unified_quality_0_100(score: float | None) -> int | None:
    """The standard's integer 0–100 form of our calibrated OOD score (the unified score stays ours)."""
    return None if score is None else _clamp(100.0 * score)


@dataclass(frozen=True)
class Component:
    """One measure: its native value and unit, its quality 0–100, whether it meets its requirement."""

    name: str
    value: float
    unit: str
    quality: int
    passes: bool | None
    definition: str


@dataclass
class Components:
    """Every measure computed for one face, keyed by OFIQ's name, plus the unified score as 0–100."""

    measures: dict[str, Component] = field(default_factory=dict)
    unified: int | None = None

    def add(self, name: str, value: float, unit: str, quality: int, passes: bool | None, definition: str) -> None:
        if value is None or not math.isfinite(value):
            return  # not measurable: absent, never invented
        self.measures[name] = Component(name, float(value), unit, int(quality), passes, definition)

    def __getitem__(self, name: str) -> Component:
        return self.measures[name]

    def __contains__(self, name: object) -> bool:
        return name in self.measures

    def failing(self) -> list[Component]:
        return [component for component in self.measures.values() if component.passes is False]


class FaceLike(Protocol):
    """What the measures read of a face (``engine.face.pipeline.FaceResult`` has it): original pixels."""

    bbox: Sequence[float]
    landmarks: Sequence[Sequence[float]]
    quality: float | None
    signals: QualitySignals


# -- image helpers ----------------------------------------------------------------------------------

def _linear(channel: np.ndarray) -> np.ndarray:
    x = channel / 255.0
    return np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


_LINEAR_LUT = _linear(np.arange(256, dtype=np.float64))


def luminance_image(rgb: np.ndarray) -> np.ndarray:
    """ISO/IEC 29794-5's luminance: sRGB linearised, Y = 0.2126 R + 0.7152 G + 0.0722 B, as 0–255 integers."""
    lin = _LINEAR_LUT[rgb]
    y = 0.2126 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.0722 * lin[..., 2]
    return np.floor(y * 255.0 + 0.5).astype(np.uint8)


def _histogram(values: np.ndarray) -> np.ndarray:
    counts = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def _lab_ab(mean_rgb: np.ndarray) -> tuple[float, float]:
    """CIELAB a*, b* (D50, as in the standard) of a mean sRGB colour."""
    r, g, b = (float(_linear(np.array(v))) for v in mean_rgb)
    x = (r * 0.43605 + g * 0.38508 + b * 0.14309) / 0.964221
    y = r * 0.22249 + g * 0.71689 + b * 0.06062
    z = (r * 0.01393 + g * 0.09710 + b * 0.71419) / 0.825211
    k, eps = 24289 / 27.0, 216 / 24389.0

    def f(t: float) -> float:
        return (k * t + 16) / 116 if t <= eps else t ** (1.0 / 3.0)

    return 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z))


def ofiq_alignment(landmarks: np.ndarray) -> np.ndarray | None:
    """2×3 similarity from 5 points (image pixels) to OFIQ's 616×616 frame (its estimator: LMEDS), or None."""
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32).reshape(-1, 1, 2), OFIQ_REFERENCE_POINTS.reshape(-1, 1, 2), method=cv2.LMEDS)
    return None if matrix is None or not np.isfinite(matrix).all() else matrix


def _transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ matrix[:, :2].T.astype(np.float64) + matrix[:, 2].astype(np.float64)


def face_region(matrix: np.ndarray, dense: np.ndarray | None) -> np.ndarray:
    """The face mask in the 616 frame: the hull of the 68 landmarks, else the template ellipse."""
    mask = np.zeros((OFIQ_ALIGNED_SIZE, OFIQ_ALIGNED_SIZE), np.uint8)
    if dense is not None:
        hull = cv2.convexHull(np.round(_transform(matrix, dense)).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
    else:
        cv2.ellipse(mask, FACE_ELLIPSE[0], FACE_ELLIPSE[1], 0, 0, 360, 1, -1)
    return mask


# -- the measures -----------------------------------------------------------------------------------

def _eye_geometry(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The image-left eye (the subject's right), the image-right eye, their midpoint and distance."""
    eyes = points[:2]
    left, right = (eyes[0], eyes[1]) if eyes[0][0] <= eyes[1][0] else (eyes[1], eyes[0])
    return left, right, (left + right) / 2, float(np.linalg.norm(right - left))


def _pose(out: Components, s: QualitySignals) -> None:
    out.add("HeadPoseYaw", s.yaw, "deg", pose_quality(s.yaw), abs(s.yaw) <= MAX_YAW, OFIQ)
    out.add("HeadPosePitch", s.pitch, "deg", pose_quality(s.pitch), abs(s.pitch) <= MAX_PITCH, OFIQ)
    out.add("HeadPoseRoll", s.roll, "deg", pose_quality(s.roll), None, OFIQ)


def _geometry(out: Components, face: FaceLike, image_size: tuple[int, int], faces_boxes: list[Sequence[float]], dense: np.ndarray | None) -> None:
    height, width = image_size
    points = np.asarray(face.landmarks, np.float64)
    left_eye, right_eye, mid, ied = _eye_geometry(points)
    cos_yaw = math.cos(math.radians(face.signals.yaw))
    if abs(cos_yaw) > 1e-6 and ied > 0:
        value = ied / cos_yaw
        out.add("InterEyeDistance", value, "px", OFIQ_SIGMOIDS["InterEyeDistance"](value), None, OFIQ_APPROX)
    if ied > 0:
        leftward = left_eye[0] / ied
        rightward = (width - right_eye[0]) / ied
        out.add("LeftwardCropOfTheFaceImage", leftward, "IED", OFIQ_SIGMOIDS["LeftwardCropOfTheFaceImage"](leftward), None, OFIQ_APPROX)
        out.add("RightwardCropOfTheFaceImage", rightward, "IED", OFIQ_SIGMOIDS["RightwardCropOfTheFaceImage"](rightward), None, OFIQ_APPROX)
    if dense is not None:
        t = float(np.linalg.norm(np.asarray(dense[CHIN_68], np.float64) - mid))
        if t > 0:
            head = t / height
            out.add("HeadSize", head, "ratio", OFIQ_SIGMOIDS["HeadSize"](abs(head - HEAD_SIZE_TARGET)), None, OFIQ_APPROX)
            above, below = mid[1] / t, (height - mid[1]) / t
            out.add("MarginAboveOfTheFaceImage", above, "T", OFIQ_SIGMOIDS["MarginAboveOfTheFaceImage"](above), None, OFIQ_APPROX)
            out.add("MarginBelowOfTheFaceImage", below, "T", OFIQ_SIGMOIDS["MarginBelowOfTheFaceImage"](below), None, OFIQ_APPROX)
            opening = max(float(np.linalg.norm(np.asarray(dense[a]) - np.asarray(dense[b]))) for a, b in INNER_LIP_PAIRS_68) / t
            out.add("MouthClosed", opening, "T", OFIQ_SIGMOIDS["MouthClosed"](opening), None, OFIQ_APPROX)
    areas = sorted(((b[2] - b[0]) * (b[3] - b[1]) for b in faces_boxes), reverse=True)
    unicity = float(areas[1] / areas[0]) if len(areas) > 1 and areas[0] > 0 else 0.0
    out.add("SingleFacePresent", unicity, "ratio", _clamp(100.0 * (1.0 - unicity)), None, OFIQ)


def _photometry(out: Components, rgb: np.ndarray, matrix: np.ndarray, dense: np.ndarray | None) -> None:
    """Exposure, luminance, dynamic range, illumination uniformity, natural colour, background: OFIQ's
    formulas on our 616×616 alignment (made from 5 points) and our face region (no face parsing)."""
    aligned = cv2.warpAffine(rgb, matrix, (OFIQ_ALIGNED_SIZE, OFIQ_ALIGNED_SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.ones(rgb.shape[:2], np.uint8), matrix, (OFIQ_ALIGNED_SIZE, OFIQ_ALIGNED_SIZE), flags=cv2.INTER_NEAREST, borderValue=0)
    lum = luminance_image(aligned)
    region = face_region(matrix, dense).astype(bool) & inside.astype(bool)
    if region.sum() < 100:
        return
    hist = _histogram(lum[region])
    under = float(hist[UNDER_RANGE[0] : UNDER_RANGE[1] + 1].sum())
    over = float(hist[OVER_RANGE[0] : OVER_RANGE[1] + 1].sum())
    out.add("UnderExposurePrevention", under, "share", OFIQ_SIGMOIDS["UnderExposurePrevention"](under), None, OFIQ_APPROX)
    out.add("OverExposurePrevention", over, "share", _clamp(1.0 / (over + 0.01)), None, OFIQ_APPROX)
    levels = np.arange(256) / 255.0
    mean = float((hist * levels).sum())
    variance = float((hist * (levels - mean) ** 2).sum())
    sig = lambda x, x0, w: 1.0 / (1.0 + math.exp((x0 - x) / w))  # noqa: E731
    out.add("LuminanceMean", mean, "ratio", _clamp(100 * sig(mean, 0.2, 0.05) * (1 - sig(mean, 0.8, 0.05))), None, OFIQ_APPROX)
    out.add("LuminanceVariance", variance, "ratio²", _clamp(100 * math.sin(60 * variance / (60 * variance + 1) * math.pi)), None, OFIQ_APPROX)
    nonzero = hist[hist > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    out.add("DynamicRange", entropy, "bits", _clamp(12.5 * entropy), None, OFIQ_APPROX)
    # The two cheek zones (OFIQ's regions of interest): squares of 0.3 IED below each eye by half the
    # eye-mouth distance, in the aligned frame.
    (ex_l, ey), (ex_r, _) = OFIQ_REFERENCE_POINTS[0], OFIQ_REFERENCE_POINTS[1]
    ied = float(ex_r - ex_l)
    eye_mouth = float(OFIQ_REFERENCE_POINTS[3:, 1].mean() - ey)
    zone = int(ied * 0.3)
    top = int(ey + int(eye_mouth / 2))
    zones = [(int(ex_l) - zone, top), (int(ex_r), top)]
    # OFIQ reads the zones of the whole luminance image; we need them inside the photo (not padding).
    crops = [(lum[y : y + zone, x : x + zone], aligned[y : y + zone, x : x + zone], inside[y : y + zone, x : x + zone] > 0) for x, y in zones]
    if all(valid.all() for _, _, valid in crops):
        h_a, h_b = (_histogram(c) for c, _, _ in crops)
        uniformity = float(np.minimum(h_a, h_b).sum())
        out.add("IlluminationUniformity", uniformity, "ratio", _clamp(100 * uniformity**0.3), None, OFIQ_APPROX)
        cheeks = np.concatenate([c.reshape(-1, 3) for _, c, _ in crops]).astype(np.float64)
        if np.ptp(cheeks, axis=1).max() == 0 and np.ptp(aligned[region].astype(np.int16), axis=1).max() == 0:
            distance = 0.0  # a grey photo: the standard scores it as natural (D = 0)
        else:
            a, b = _lab_ab(cheeks.mean(axis=0))
            distance = math.hypot(max(0.0, 5 - a, a - 25), max(0.0, 5 - b, b - 35)) if a >= 0 and b >= 0 else 100.0
        out.add("NaturalColour", distance, "ΔE(a*b*)", OFIQ_SIGMOIDS["NaturalColour"](distance), None, OFIQ_APPROX)
    _background(out, lum, inside, matrix, dense)


def _background(out: Components, lum: np.ndarray, inside: np.ndarray, matrix: np.ndarray, dense: np.ndarray | None) -> None:
    """Ours (no face parsing): OFIQ's crop, resize, erosion and mean luminance gradient, over the pixels
    beside and above the head: outside a head region (the face region widened by 40 % and raised to
    1.2 eye-chin distances above the eyes for hair) and above the chin (shoulders and clothes left out)."""
    left, right, bottom = BACKGROUND_CROP
    size = OFIQ_ALIGNED_SIZE
    head = np.zeros((size, size), np.uint8)
    eye_y = float(OFIQ_REFERENCE_POINTS[:2, 1].mean())
    if dense is not None:
        chin_y = float(_transform(matrix, np.asarray(dense)[CHIN_68 : CHIN_68 + 1])[0, 1])
        xs = _transform(matrix, np.asarray(dense))[:, 0]
        x1, x2 = float(xs.min()), float(xs.max())
    else:
        (cx, cy), (ax, ay) = FACE_ELLIPSE
        chin_y, x1, x2 = float(cy + ay), float(cx - ax), float(cx + ax)
    t = max(chin_y - eye_y, 1.0)
    grow = 0.2 * (x2 - x1)
    cv2.ellipse(head, (int((x1 + x2) / 2), int(eye_y)), (int((x2 - x1) / 2 + grow), int(1.2 * t)), 0, 0, 360, 1, -1)
    head[int(eye_y) :, int(x1 - grow) : int(x2 + grow) + 1] = 1
    head[int(chin_y) :, :] = 1  # below the chin: neck, shoulders, clothes
    background = ((inside > 0) & (head == 0)).astype(np.uint8)
    crop = (slice(0, size - bottom), slice(left, size - right))
    image = cv2.resize(lum[crop], BACKGROUND_SIZE, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(background[crop], BACKGROUND_SIZE, interpolation=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((4, 4), np.uint8))
    if mask.mean() < MIN_BACKGROUND_SHARE:
        return  # a tight crop: no background to judge
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=-1)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=-1)
    gradient = float(np.sqrt(gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2)[mask > 0].mean())
    out.add("BackgroundUniformity", gradient, "gradient", OFIQ_SIGMOIDS["BackgroundUniformity"](gradient), None, FROOD)


def _rule_measures(out: Components, s: QualitySignals) -> None:
    """The signals our reason rules read, each a component with the rule's threshold as its requirement."""
    out.add("Sharpness", s.sharpness, "log10 var(Laplacian)", logistic_quality(s.sharpness, MIN_SHARPNESS, 0.25), s.sharpness >= MIN_SHARPNESS, FROOD)
    dark = s.brightness < DARK_BRIGHTNESS
    bright = s.brightness > BRIGHT_BRIGHTNESS
    brightness_q = min(logistic_quality(s.brightness, DARK_BRIGHTNESS, 10.0), logistic_quality(s.brightness, BRIGHT_BRIGHTNESS, 10.0, False))
    out.add("FaceBrightness", s.brightness, "grey 0–255", brightness_q, not (dark or bright), FROOD)
    out.add(
        "ClippedHighlights", s.overexposed, "share", logistic_quality(s.overexposed, MAX_OVEREXPOSED_SHARE, 0.05, False),
        s.overexposed <= MAX_OVEREXPOSED_SHARE, FROOD,
    )
    out.add("FaceSize", s.face_px, "px", logistic_quality(math.log(max(s.face_px, 1.0)), math.log(MIN_FACE_PX), 0.15), s.face_px >= MIN_FACE_PX, FROOD)
    out.add("FaceTruncation", s.truncation, "share", logistic_quality(s.truncation, TRUNCATED_SHARE, 0.03, False), not is_truncated(s.truncation), FROOD)
    det = min(max(s.det_score, 1e-6), 1 - 1e-6)
    out.add(
        "DetectionConfidence", s.det_score, "probability",
        logistic_quality(math.log(det / (1 - det)), math.log(MIN_DET_SCORE / (1 - MIN_DET_SCORE)), 0.5), s.det_score >= MIN_DET_SCORE, FROOD,
    )
    if s.eyes_open is not None and eye_signal_trusted(s):
        hidden = s.sharpness < MIN_SHARPNESS or dark  # the rule does not call eyes closed on a blurred or dark face
        passes = None if hidden else s.eyes_open >= MIN_EYES_OPEN
        out.add("EyesOpen", s.eyes_open, "probability", logistic_quality(s.eyes_open, MIN_EYES_OPEN, 0.05), passes, FROOD)
    if s.mask_prob is not None:
        out.add("MouthOcclusionPrevention", s.mask_prob, "probability", _clamp(100 * (1 - s.mask_prob)), s.mask_prob < MASK_PROB, FROOD)
    chroma_limit = CHROMA_TYPICAL + OCCLUDED_LEVEL * CHROMA_SPREAD
    out.add(
        "LowerFaceColour", s.lower_face_chroma, "CrCb", logistic_quality(s.lower_face_chroma, chroma_limit, CHROMA_SPREAD, False),
        s.lower_face_chroma < chroma_limit, FROOD,
    )
    if liveness_trusted(s):
        quality = logistic_quality(math.log10(max(s.real_prob, 1e-9)), math.log10(RECAPTURE_REAL_PROB), 0.5)
        out.add("NoRecapture", s.real_prob, "probability", quality, s.real_prob >= RECAPTURE_REAL_PROB, FROOD)
    if s.stability is not None:
        out.add("FeatureStability", s.stability, "cosine", logistic_quality(s.stability, MIN_STABILITY, 0.03), s.stability >= MIN_STABILITY, FROOD)


def measure_components(
    rgb: np.ndarray,
    faces: Sequence[FaceLike],
    scale: float = 1.0,
    dense_landmarks: Sequence[np.ndarray | None] | None = None,
) -> list[Components]:
    """The component report of every face of one image (same order as ``faces``).

    ``rgb`` is the decoded image the models saw, ``scale`` its size over the original's (face boxes and
    landmarks are in original pixels); ``dense_landmarks`` per face, fr_landmark's 68 points in original
    pixels (:func:`landmarks_68`) or None: without them HeadSize, the margins above/below and MouthClosed
    are absent.
    """
    height, width = rgb.shape[:2]
    original = (height / scale, width / scale)
    boxes = [face.bbox for face in faces]
    dense_all = list(dense_landmarks) if dense_landmarks is not None else [None] * len(faces)
    reports = []
    for face, dense in zip(faces, dense_all):
        out = Components(unified=unified_quality_0_100(face.quality))
        _pose(out, face.signals)
        dense_original = None if dense is None else np.asarray(dense, np.float64)
        _geometry(out, face, original, boxes, dense_original)
        points_rgb = np.asarray(face.landmarks, np.float64) * scale
        matrix = ofiq_alignment(points_rgb)
        if matrix is not None:  # degenerate landmarks: no photometric measures for this face
            _photometry(out, rgb, matrix, None if dense_original is None else dense_original * scale)
        _rule_measures(out, face.signals)
        reports.append(out)
    return reports


def signal_measures(signals: QualitySignals) -> Components:
    """The measures that need nothing but a face's quality signals: pose and every measure with a requirement.

    What the stats store records per image (the failing names, ~20 µs) without the full report's dense landmarks,
    eye-state network and photometry; the values are the full report's, by construction (same functions).
    """
    out = Components()
    _pose(out, signals)
    _rule_measures(out, signals)
    return out


def landmarks_68(extractor: Any, rgb: np.ndarray, boxes: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """fr_landmark's 68 points for face boxes given in ``rgb``'s pixels (the crop the eye-state signal
    uses: the box, grey, 64×64, /256), in the same pixels. ``extractor`` is the pipeline's SignalExtractor."""
    import torch

    from engine.quality.signals import _crop_resize

    if not boxes:
        return []
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    crops = np.stack([_crop_resize(gray, *box[:4], 64) for box in boxes]).astype(np.float32) / 256.0
    with torch.inference_mode():
        points = extractor.landmark(extractor._tensor(crops[:, None])).cpu().numpy().reshape(len(boxes), 68, 2)
    result = []
    for box, face_points in zip(boxes, points):
        size = np.array([box[2] - box[0], box[3] - box[1]], np.float64)
        result.append(face_points.astype(np.float64) * size + np.asarray(box[:2], np.float64))
    return result


# -- reasons from components ------------------------------------------------------------------------

# Which reason code a failing component explains, in the order rule_reasons lists them.
COMPONENT_REASONS: tuple[tuple[str, str], ...] = (
    ("NoRecapture", "suspected_recapture"),
    ("FaceTruncation", "face_truncated"),
    ("MouthOcclusionPrevention", "face_occluded"),
    ("LowerFaceColour", "face_occluded"),
    ("FaceSize", "face_too_small"),
    ("FaceBrightness", "too_dark"),  # below the range; above it is over_exposed (component_reasons)
    ("ClippedHighlights", "over_exposed"),
    ("Sharpness", "blurred"),
    ("HeadPoseYaw", "pose_too_large"),
    ("HeadPosePitch", "pose_too_large"),
    ("EyesOpen", "eyes_closed"),
    ("DetectionConfidence", "low_detection_confidence"),
    ("FeatureStability", "unstable_feature"),
)


def component_reasons(components: Components) -> list[str]:
    """The reason codes the failing components explain, most actionable first, without repeats.

    Equal to ``engine.quality.reasons.rule_reasons`` of the same signals (tested); a face's reasons are
    these when its score is below trust, unless no component fails (then the scorer names the term
    that pulled the score down most, e.g. ``low_feature_norm``)."""
    codes: list[str] = []
    for name, code in COMPONENT_REASONS:
        component = components.measures.get(name)
        if component is None or component.passes is not False:
            continue
        if name == "FaceBrightness" and component.value > BRIGHT_BRIGHTNESS:
            code = "over_exposed"
        if code not in codes:
            codes.append(code)
    order = list(dict.fromkeys(code for _, code in COMPONENT_REASONS))
    return sorted(codes, key=order.index)
