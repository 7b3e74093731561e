"""FacePipeline: decode → detect → align → embed → quality, returning plain result objects.

Every shell (CLI, UI, HTTP API) calls these methods; none of them holds pipeline logic.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ood.quality import QualityScorer, params_path_for
from ood.reasons import describe
from ood.signals import QualitySignals, SignalExtractor, exposure_signals
from recognition.align import align_face
from recognition.decode import DecodedImage, ImageInput, decode_image
from recognition.detect import Detection, MTCNNDetector
from recognition.errors import FroodError, NoFaceError
from recognition.face_choice import order_by_main_face
from recognition.models import create_embedder, get_spec
from settings import Settings, get_settings


@dataclass
class FaceResult:
    """One face. ``bbox`` and ``landmarks`` are in the original image's pixels."""

    bbox: list[float]
    det_score: float
    landmarks: list[list[float]]
    feature: np.ndarray
    quality: float | None
    reasons: list[str]
    pose: dict[str, float]
    signals: QualitySignals
    aligned: np.ndarray = field(repr=False)
    area_ratio: float = 0.0

    def reason_messages(self) -> list[dict[str, str]]:
        return describe(self.reasons)


@dataclass
class AnalysisResult:
    """All faces of one image, main face first (area and centrality), with per-stage timings in milliseconds."""

    faces: list[FaceResult]
    model: str
    image_size: tuple[int, int]
    timings_ms: dict[str, float]
    name: str = ""

    @property
    def face(self) -> FaceResult:
        if not self.faces:
            raise NoFaceError("no face found in the image")
        return self.faces[0]

    def to_json(self, include_feature: bool = True) -> dict:
        """The JSON users copy (``frood extract --json``, the Extract tab, the API)."""
        if not self.faces:
            return {
                "feature": [],
                "quality_score": 0.0,
                "resolution": f"{self.image_size[0]}x{self.image_size[1]}",
                "detected_face_area_ratio": 0.0,
                "bbox": [],
                "faces_found": 0,
                "reasons": describe(["no_face"]),
                "model": self.model,
            }
        face = self.faces[0]
        payload = {
            "feature": [round(float(v), 6) for v in face.feature] if include_feature else None,
            "quality_score": round(float(face.quality), 4) if face.quality is not None else None,
            "resolution": f"{face.aligned.shape[1]}x{face.aligned.shape[0]}",
            "image_resolution": f"{self.image_size[0]}x{self.image_size[1]}",
            "detected_face_area_ratio": round(face.area_ratio, 4),
            "bbox": [round(v, 1) for v in face.bbox],
            "det_score": round(face.det_score, 4),
            "pose": {key: round(value, 1) for key, value in face.pose.items()},
            "faces_found": len(self.faces),
            "reasons": face.reason_messages(),
            "model": self.model,
        }
        if not include_feature:
            payload.pop("feature")
        return payload


@dataclass
class CompareResult:
    similarity: float | None
    quality_a: float | None
    quality_b: float | None
    decision: str
    message_en: str
    message_zh: str
    match_threshold: float
    a: AnalysisResult
    b: AnalysisResult

    def to_json(self) -> dict:
        def side(result: AnalysisResult) -> dict:
            data = result.to_json(include_feature=False)
            return {key: data[key] for key in ("quality_score", "bbox", "faces_found", "reasons")}

        return {
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "quality_a": None if self.quality_a is None else round(self.quality_a, 4),
            "quality_b": None if self.quality_b is None else round(self.quality_b, 4),
            "decision": self.decision,
            "message": {"en": self.message_en, "zh": self.message_zh},
            "match_threshold": self.match_threshold,
            "model": self.a.model,
            "image_a": side(self.a),
            "image_b": side(self.b),
        }


DECISION_MESSAGES = {
    "match": ("High-confidence match", "高置信度匹配：同一人"),
    "non_match": ("High-confidence non-match", "高置信度不匹配：不同人"),
    "review": ("Needs manual review", "需要人工复核"),
    "retake_a": ("Image A rejected: retake image A", "图像 A 质量过低：请重拍图像 A"),
    "retake_b": ("Image B rejected: retake image B", "图像 B 质量过低：请重拍图像 B"),
    "unreliable": ("Both images rejected: result unreliable", "两张图像质量均过低：结果不可靠"),
}


def decide(similarity: float, quality_a: float, quality_b: float, match_threshold: float, reject: float, trust: float) -> str:
    """The compare decision table (settings-driven thresholds)."""
    if quality_a < reject and quality_b < reject:
        return "unreliable"
    if quality_a < reject:
        return "retake_a"
    if quality_b < reject:
        return "retake_b"
    if quality_a >= trust and quality_b >= trust:
        return "match" if similarity >= match_threshold else "non_match"
    return "review"


class FacePipeline:
    """The face engine. ``FacePipeline(model="default", device="cpu").analyze(image)``."""

    def __init__(
        self,
        model: str = "default",
        device: str | None = None,
        settings: Settings | None = None,
        with_quality: bool = True,
    ):
        self.settings = settings or get_settings()
        self.device = device or self.settings.device
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise FroodError(f"DEVICE={self.device} was asked for but no CUDA device is available")
        self.spec = get_spec(model)
        self.model = self.spec.name
        models_dir = self.settings.models_dir
        self.embedder = create_embedder(
            self.model,
            models_dir,
            device=self.device,
            facenet_weights_path=self.settings.facenet_weights_path,
            arcface_onnx_path=self.settings.arcface_onnx_path,
        )
        self.detector = MTCNNDetector(device=self.device, max_side=self.settings.detect_max_side)
        self.signals = SignalExtractor(models_dir, device=self.device)
        self.scorer: QualityScorer | None = None
        if with_quality:
            self.scorer = QualityScorer.for_model(
                self.model, self.settings.quality_params_path or params_path_for(self.model), self.settings.trust_threshold
            )
        self.match_threshold = self.scorer.params.match_threshold if self.scorer else float("nan")

    # -- stages -----------------------------------------------------------------------------------

    def decode(self, image: ImageInput, name: str = "") -> DecodedImage:
        settings = self.settings
        return decode_image(
            image,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
            max_width=settings.max_image_width,
            name=name,
        )

    def align(self, rgb: np.ndarray, detections: list[Detection]) -> np.ndarray:
        size = self.embedder.input_size
        if not detections:
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([align_face(rgb, det.landmarks, size) for det in detections])

    def perturbations(self, aligned: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
        """K random copies of one aligned face (shift, noise, brightness, flip): the "temperature" samples."""
        rng = np.random.default_rng(seed)
        size = aligned.shape[0]
        copies = []
        for index in range(samples):
            shift = rng.uniform(-0.04, 0.04, size=2) * size
            matrix = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            copy = cv2.warpAffine(aligned, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            copy = copy * rng.uniform(0.8, 1.2) + rng.normal(0, 6.0, copy.shape)
            if index % 2 == 1:
                copy = copy[:, ::-1]
            copies.append(np.clip(copy, 0, 255).astype(np.uint8))
        return np.stack(copies)

    def stability(self, aligned: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Mean cosine between each face's feature and its perturbed copies' features (batched)."""
        samples = self.settings.thorough_samples
        batch = np.concatenate([self.perturbations(face, samples, seed=index) for index, face in enumerate(aligned)])
        perturbed = self.embedder.embed(batch).features.reshape(len(aligned), samples, -1)
        return np.einsum("nkd,nd->nk", perturbed, features).mean(axis=1)

    # -- public API -------------------------------------------------------------------------------

    def analyze(self, image: ImageInput | DecodedImage, name: str = "", thorough: bool = False) -> AnalysisResult:
        """Every face in one image, main face first, each with feature, quality, reasons and pose."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        decoded = image if isinstance(image, DecodedImage) else self.decode(image, name)
        timings["decode"] = (time.perf_counter() - start) * 1000
        rgb = decoded.rgb

        mark = time.perf_counter()
        detections = self.detector.detect(rgb)
        # Main face first (area and centrality, see recognition/face_choice.py); every face stays listed.
        detections = order_by_main_face(detections, [det.bbox for det in detections], rgb.shape[:2])
        timings["detect"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        aligned = self.align(rgb, detections)
        timings["align"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        embedding = self.embedder.embed(aligned)
        timings["feature"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        signals = self.signals.extract(rgb, detections, aligned, embedding.norms)
        if thorough and detections:
            for signal, value in zip(signals, self.stability(aligned, embedding.features)):
                signal.stability = float(value)
        faces = []
        image_area = float(rgb.shape[0] * rgb.shape[1])
        to_original = 1.0 / decoded.scale
        for index, det in enumerate(detections):
            quality = self.scorer.score(signals[index]) if self.scorer else None
            faces.append(
                FaceResult(
                    bbox=(det.bbox * to_original).tolist(),
                    det_score=det.score,
                    landmarks=(det.landmarks * to_original).tolist(),
                    feature=embedding.features[index],
                    quality=quality.score if quality else None,
                    reasons=quality.reasons if quality else [],
                    pose={"yaw": signals[index].yaw, "pitch": signals[index].pitch, "roll": signals[index].roll},
                    signals=signals[index],
                    aligned=aligned[index],
                    area_ratio=det.area / image_area,
                )
            )
        timings["quality"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        return AnalysisResult(faces, self.model, decoded.original_size, timings, decoded.name)

    def analyze_many(self, images: Iterable[ImageInput], thorough: bool = False) -> list[AnalysisResult | FroodError]:
        """Batch helper: one result or one typed error per input; one bad input never stops the batch."""
        results: list[AnalysisResult | FroodError] = []
        for image in images:
            try:
                results.append(self.analyze(image, name=str(image) if isinstance(image, (str, Path)) else "", thorough=thorough))
            except FroodError as error:
                results.append(error)
        return results

    def compare(self, image_a: ImageInput | AnalysisResult, image_b: ImageInput | AnalysisResult, thorough: bool = False) -> CompareResult:
        """Similarity of the main face of each image, both qualities, and a settings-driven decision."""
        a = image_a if isinstance(image_a, AnalysisResult) else self.analyze(image_a, thorough=thorough)
        b = image_b if isinstance(image_b, AnalysisResult) else self.analyze(image_b, thorough=thorough)
        if not a.faces or not b.faces:
            missing = "A" if not a.faces else "B"
            raise NoFaceError(f"no face found in image {missing}")
        similarity = float(np.dot(a.face.feature, b.face.feature))
        quality_a = a.face.quality if a.face.quality is not None else 0.0
        quality_b = b.face.quality if b.face.quality is not None else 0.0
        decision = decide(
            similarity, quality_a, quality_b, self.match_threshold, self.settings.reject_threshold, self.settings.trust_threshold
        )
        message_en, message_zh = DECISION_MESSAGES[decision]
        return CompareResult(similarity, quality_a, quality_b, decision, message_en, message_zh, self.match_threshold, a, b)

    def crop_signals(self, aligned: np.ndarray, base: QualitySignals) -> list[QualitySignals]:
        """Signals for modified copies of one aligned face; the context signals (pose, size...) stay fixed."""
        norms = self.embedder.embed(aligned).norms
        updated = []
        for crop, norm in zip(aligned, norms):
            values = base.as_dict() | exposure_signals(crop) | {"feature_norm": float(norm), "stability": base.stability}
            updated.append(QualitySignals(**values))
        return updated
