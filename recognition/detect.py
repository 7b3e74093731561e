"""Face detection behind a narrow ``Detector`` protocol; MTCNN (facenet-pytorch's packaged weights) by default.

MTCNN's cost grows with the image's area, so we detect on a copy whose longest side is at most
``max_side`` pixels and map boxes and landmarks back to the full image; alignment then warps from the
full-resolution pixels, so no detail is lost for the recognizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from recognition.face_choice import landmark_box, outside_share

log = logging.getLogger("frood.detect")
# A face box wider or taller than this share of the image is a tight crop (see detect_batch).
TIGHT_CROP_SHARE = 0.7
# An image whose short side is at most this (in detector pixels) may be a face crop that MTCNN reads as a
# part of a face (a mouth box on a 150 px crop): it is also searched inside a padded copy.
SMALL_IMAGE_SIDE = 256


@dataclass
class Detection:
    """One face: box ``[x1, y1, x2, y2]`` and 5 landmarks (eyes, nose, mouth corners) in image pixels."""

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray  # 5×2
    # Share of the landmark box outside the image: a face cut by the border (see face_choice).
    outside: float = 0.0

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB image, largest first."""
        ...


def _largest_area(raw: list[tuple[np.ndarray, float, np.ndarray]]) -> float:
    return max(((box[2] - box[0]) * (box[3] - box[1]) for box, _, _ in raw), default=0.0)


def choose_padded(
    raw: list[tuple[np.ndarray, float, np.ndarray]], padded: list[tuple[np.ndarray, float, np.ndarray]], tight: bool
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Keep the better of a plain and a padded detection: on a tight crop the padded one (whole-face
    landmarks); on a small image the padded one only when it finds a clearly larger face (the whole
    face where the plain pass saw a part of it)."""
    if not padded:
        return raw
    if not raw or tight:
        if raw:
            log.warning("Tight face crop: landmarks taken from a re-detection inside a padded border")
        return padded
    return padded if _largest_area(padded) > 1.5 * _largest_area(raw) else raw


class MTCNNDetector:
    """MTCNN from facenet-pytorch (its wheel ships pnet/rnet/onet weights)."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu", max_side: int = 640, min_face_size: int = 20, min_score: float = 0.7):
        from facenet_pytorch import MTCNN

        self.device = torch.device(device)
        self.max_side = max_side
        self.min_score = min_score
        self._mtcnn = MTCNN(
            keep_all=True, device=self.device, min_face_size=min_face_size, post_process=False, select_largest=True
        )

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]

    def _detect_small(self, small: np.ndarray, pad: int = 0) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Raw MTCNN output on one (downscaled) image, optionally inside a grey border of ``pad`` pixels."""
        image = small if pad == 0 else cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127, 127, 127))
        with torch.inference_mode():
            boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        return [
            (np.asarray(box, np.float32) - pad, float(prob), np.asarray(landmark, np.float32) - pad)
            for box, prob, landmark in zip(boxes, probs, points)
            if prob is not None and prob >= self.min_score
        ]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect in several images (each downscaled on its own; MTCNN batches only equal sizes).

        A face that fills most of the frame (a tight crop) gets poor MTCNN landmarks, and sometimes no
        detection at all: then we detect again inside a grey border of a quarter of the image's side,
        which brought a 0.2-expanded crop's feature from cosine 0.77–0.93 to 0.96–0.99 of the full photo's.
        """
        results: list[list[Detection]] = []
        for rgb in images:
            height, width = rgb.shape[:2]
            scale = min(1.0, self.max_side / max(height, width))
            small = rgb if scale == 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            raw = self._detect_small(small)
            small_h, small_w = small.shape[:2]
            tight = not raw or any((box[2] - box[0]) > TIGHT_CROP_SHARE * small_w or (box[3] - box[1]) > TIGHT_CROP_SHARE * small_h for box, _, _ in raw)
            if tight or min(small_h, small_w) <= SMALL_IMAGE_SIDE:
                # A quarter of the side suffices for most crops; faces cropped inside the hairline and
                # chin (Yale B) need half before MTCNN sees a whole head (6 → 15 of 24 found).
                side = max(small_h, small_w)
                padded = self._detect_small(small, pad=side // 4) or self._detect_small(small, pad=side // 2)
                raw = choose_padded(raw, padded, tight)
            faces: list[Detection] = []
            for box, prob, landmark in raw:
                outside = outside_share(landmark_box(landmark), (small_h, small_w))
                bbox = box / scale
                bbox[[0, 2]] = np.clip(bbox[[0, 2]], 0, width)
                bbox[[1, 3]] = np.clip(bbox[[1, 3]], 0, height)
                faces.append(Detection(bbox, prob, landmark / scale, outside))
            faces.sort(key=lambda face: face.area, reverse=True)
            results.append(faces)
        return results
