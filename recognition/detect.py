"""Face detection behind a narrow ``Detector`` protocol; MTCNN (facenet-pytorch's packaged weights) by default.

MTCNN's cost grows with the image's area, so we detect on a copy whose longest side is at most
``max_side`` pixels and map boxes and landmarks back to the full image; alignment then warps from the
full-resolution pixels, so no detail is lost for the recognizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch


@dataclass
class Detection:
    """One face: box ``[x1, y1, x2, y2]`` and 5 landmarks (eyes, nose, mouth corners) in image pixels."""

    bbox: np.ndarray
    score: float
    landmarks: np.ndarray  # 5×2

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

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detect in several images (each downscaled on its own; MTCNN batches only equal sizes)."""
        results: list[list[Detection]] = []
        for rgb in images:
            height, width = rgb.shape[:2]
            scale = min(1.0, self.max_side / max(height, width))
            small = rgb if scale == 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            with torch.inference_mode():
                boxes, probs, points = self._mtcnn.detect(small, landmarks=True)
            faces: list[Detection] = []
            if boxes is not None:
                for box, prob, landmark in zip(boxes, probs, points):
                    if prob is None or prob < self.min_score:
                        continue
                    bbox = np.asarray(box, dtype=np.float32) / scale
                    bbox[[0, 2]] = np.clip(bbox[[0, 2]], 0, width)
                    bbox[[1, 3]] = np.clip(bbox[[1, 3]], 0, height)
                    faces.append(Detection(bbox, float(prob), np.asarray(landmark, dtype=np.float32) / scale))
            faces.sort(key=lambda face: face.area, reverse=True)
            results.append(faces)
        return results
