"""FacePipeline: decode → detect → align → embed → quality, returning plain result objects.

Every shell (CLI, UI, HTTP API) calls these methods; none of them holds pipeline logic. The engine is
batch-first: :meth:`FacePipeline.analyze_batch` takes N images and returns N results or typed errors
(one bad input never stops the batch); it decodes in a thread pool, detects equal-size images
together, and runs the recognizer and the four quality helpers once over every face of the batch.
``analyze`` is the batch of one, ``compare`` the batch of two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.decode import DecodedImage, ImageInput, decode_image
from engine.face.align import align_face
from engine.face.choose import order_by_main_face
from engine.face.detect import Detection, Detector, MTCNNDetector
from engine.face.models import create_embedder, get_spec
from engine.quality.scorer import DEFAULT_DETECTOR, QualityScorer, calibration_for, params_path_for
from engine.quality.signals import QualitySignals, SignalExtractor, exposure_signals
from engine.weights import packaged_model_loader
from errors import AlignmentError, FroodError, ImageDecodeError, NoFaceError

log = logging.getLogger("frood.pipeline")
BatchItem = ImageInput | DecodedImage


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
    # Per-channel mean and std of the recognizer's last spatial map (2C; None for a model without a hook
    # point): what the certainty head read; kept so calibration can refit the head without a second pass.
    map_stats: np.ndarray | None = field(default=None, repr=False)


@dataclass
class AnalysisResult:
    """All faces of one image, main face first (area and centrality), with per-stage timings in milliseconds.

    From a batch, ``timings_ms`` are the whole batch's stage times and ``batch_size`` says how many
    images shared them.
    """

    faces: list[FaceResult]
    model: str
    image_size: tuple[int, int]
    timings_ms: dict[str, float]
    name: str = ""
    batch_size: int = 1

    @property
    def face(self) -> FaceResult:
        if not self.faces:
            raise NoFaceError("no face found in the image")
        return self.faces[0]


@dataclass
class CompareResult:
    similarity: float | None
    quality_a: float | None
    quality_b: float | None
    decision: str  # a code; its sentences are in schemas.messages.DECISION_TEXTS
    match_threshold: float
    a: AnalysisResult
    b: AnalysisResult


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the face engine is tuned by, as plain values: the service builds it from the settings
    (``service.models.pipeline_config``), so the engine never reads them itself."""

    models_dir: Path = Path("models")
    cache_dir: Path | None = None  # converted (ONNX -> torch) models; None = beside the weights
    facenet_weights_path: Path | None = None
    arcface_onnx_path: Path | None = None
    precision: str = "auto"
    torch_threads: int = 0
    detect_max_side: int = 640
    quality_params_path: Path | None = None
    reject_threshold: float = 0.4
    trust_threshold: float = 0.6
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    max_image_width: int = 1920
    thorough_samples: int = 8
    decode_workers: int = 2
    detector: str = DEFAULT_DETECTOR  # one of DETECTORS (issue 23: yunet measured against mtcnn in docs/models.md)


# The face detectors behind engine.face.detect.Detector: MTCNN (facenet-pytorch) and YuNet (OpenCV Zoo, the default,
# its boxes given O-Net's points: engine.face.yunet.create_yunet).
DETECTORS = ("mtcnn", "yunet")


def create_detector(name: str, device: str, config: PipelineConfig) -> Detector:
    """The configured face detector. YuNet runs on the CPU through OpenCV whatever ``device`` is."""
    if name == "mtcnn":
        return MTCNNDetector(device=device, max_side=config.detect_max_side)
    if name == "yunet":
        from engine.face.yunet import create_yunet

        return create_yunet(config.models_dir, max_side=config.detect_max_side, device=device)
    raise FroodError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")


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
        config: PipelineConfig | None = None,
        with_quality: bool = True,
    ):
        self.config = config = config or PipelineConfig()
        self.device = device or "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise FroodError(f"DEVICE={self.device} was asked for but no CUDA device is available")
        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        self.spec = get_spec(model)
        self.model = self.spec.name
        models_dir = config.models_dir
        cache_dir = config.cache_dir
        self.embedder = create_embedder(
            self.model,
            models_dir,
            device=self.device,
            facenet_weights_path=self.config.facenet_weights_path,
            arcface_onnx_path=self.config.arcface_onnx_path,
            precision=self.config.precision,
            cache_dir=cache_dir,
        )
        self.detector = create_detector(config.detector, self.device, config)
        self.signals = SignalExtractor(packaged_model_loader(models_dir, cache_dir), device=self.device)
        self._decode_pool: ThreadPoolExecutor | None = None
        self.scorer: QualityScorer | None = None
        if with_quality:
            self.scorer = QualityScorer.for_model(self.model, self.config.quality_params_path or self._params_path(), self.config.trust_threshold)
        self.match_threshold = self.scorer.params.match_threshold if self.scorer else float("nan")
        # Every signal of every face, even those that cannot change a result (the eye state of a trusted face
        # when its fitted weight is 0): what `frood calibrate` needs to fit the weights.
        self.complete_signals = False

    # -- stages -----------------------------------------------------------------------------------

    def _params_path(self) -> Path:
        """The quality calibration fitted on this pipeline's detector; MTCNN's, with a warning, where it has none."""
        path, own = calibration_for(self.model, self.config.detector), params_path_for(self.model, self.config.detector)
        if path != own:
            log.warning("DETECTOR=%s: no quality calibration fitted on its detections (%s); using MTCNN's (docs/models.md)", self.config.detector, own.name)
        return path

    def decode(self, image: ImageInput, name: str = "") -> DecodedImage:
        config = self.config
        return decode_image(
            image,
            max_bytes=config.max_upload_bytes,
            max_pixels=config.max_image_pixels,
            max_width=config.max_image_width,
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

    def stability(self, aligned: np.ndarray, features: np.ndarray, seeds: Sequence[int] | None = None) -> np.ndarray:
        """Mean cosine between each face's feature and its perturbed copies' features (batched).

        ``seeds``: one per face (its rank within its own image, so a face gets the same copies alone or in a batch).
        """
        samples = self.config.thorough_samples
        seeds = list(range(len(aligned))) if seeds is None else seeds
        batch = np.concatenate([self.perturbations(face, samples, seed=seed) for seed, face in zip(seeds, aligned)])
        perturbed = self.embedder.embed(batch).features.reshape(len(aligned), samples, -1)
        return np.einsum("nkd,nd->nk", perturbed, features).mean(axis=1)

    # -- public API -------------------------------------------------------------------------------

    def _decode_one(self, image: BatchItem | FroodError, name: str) -> DecodedImage | FroodError:
        if isinstance(image, (DecodedImage, FroodError)):  # already decoded (or already refused) upstream
            return image
        try:
            return self.decode(image, name)
        except FroodError as error:
            return error
        except Exception as error:  # one unreadable input becomes its own error, never the batch's
            log.warning("Unexpected decode failure of %s: %s", name or "an input", error)
            return ImageDecodeError(f"the image cannot be decoded ({type(error).__name__}: {error})")

    def decode_batch(self, images: Sequence[BatchItem], names: Sequence[str]) -> list[DecodedImage | FroodError]:
        """Decode several inputs in a thread pool (PIL releases the GIL while decoding)."""
        if len(images) <= 1:
            return [self._decode_one(image, name) for image, name in zip(images, names)]
        if self._decode_pool is None:
            self._decode_pool = ThreadPoolExecutor(max_workers=self.config.decode_workers, thread_name_prefix="frood-decode")
        return list(self._decode_pool.map(self._decode_one, images, names))

    def _align_batch(self, rgbs: list[np.ndarray], detections: list[list[Detection]]) -> tuple[list[list[Detection]], np.ndarray, list[AlignmentError | None]]:
        """Every face of every image aligned, concatenated in order.

        A face with degenerate landmarks is dropped; an image whose every detected face is degenerate gets
        that typed error as its result (a per-image error, never one that stops the batch).
        """
        size = self.embedder.input_size
        kept: list[list[Detection]] = []
        crops: list[np.ndarray] = []
        failures: list[AlignmentError | None] = []
        for rgb, found in zip(rgbs, detections):
            usable: list[Detection] = []
            failure: AlignmentError | None = None
            for det in found:
                try:
                    crops.append(align_face(rgb, det.landmarks, size))
                    usable.append(det)
                except AlignmentError as error:
                    log.warning("A detected face was dropped: %s", error)
                    failure = error
            kept.append(usable)
            failures.append(failure if found and not usable else None)
        aligned = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        return kept, aligned, failures

    def analyze_batch(self, images: Sequence[BatchItem], names: Sequence[str] | None = None, thorough: bool = False) -> list[AnalysisResult | FroodError]:
        """Every face of N images: N results, or a typed error in the place of each input that failed.

        Each stage runs once over the whole batch; per image, the results equal ``analyze``'s (the
        same detections; features and quality equal to float rounding).
        """
        images = list(images)
        names = list(names) if names is not None else [str(image) if isinstance(image, (str, Path)) else "" for image in images]
        timings: dict[str, float] = {}
        start = time.perf_counter()
        decoded = self.decode_batch(images, names)
        timings["decode"] = (time.perf_counter() - start) * 1000
        good = [index for index, item in enumerate(decoded) if isinstance(item, DecodedImage)]
        rgbs = [decoded[index].rgb for index in good]  # type: ignore[union-attr]

        mark = time.perf_counter()
        detections = self.detector.detect_batch(rgbs)
        # Main face first (area and centrality, see engine/face/choose.py); every face stays listed.
        detections = [order_by_main_face(found, [det.bbox for det in found], rgb.shape[:2]) for found, rgb in zip(detections, rgbs)]
        timings["detect"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        detections, aligned, align_failures = self._align_batch(rgbs, detections)
        timings["align"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        embedding = self.embedder.embed(aligned)
        timings["feature"] = (time.perf_counter() - mark) * 1000

        mark = time.perf_counter()
        # Thorough mode scores with another model after the stability pass below: measure every face there.
        measure_eyes = self.complete_signals or thorough or self.scorer is None or self.scorer.reads_eye_state()
        signals = self.signals.extract_batch(list(zip(rgbs, detections)), aligned, embedding.norms, eyes=measure_eyes)
        if self.scorer:
            self.scorer.annotate([signal for per_image in signals for signal in per_image], embedding.features, embedding.map_stats)
            if not measure_eyes:
                # The eye state does not move the score here; it can only explain a score below trust.
                untrusted = [
                    (rgb, det, signal)
                    for rgb, found, per_image in zip(rgbs, detections, signals)
                    for det, signal in zip(found, per_image)
                    if self.scorer.score(signal).score < self.scorer.trust_threshold
                ]
                self.signals.add_eye_signals(untrusted)
        if thorough and len(aligned):
            flat = [signal for per_image in signals for signal in per_image]
            seeds = [rank for per_image in detections for rank in range(len(per_image))]
            for signal, value in zip(flat, self.stability(aligned, embedding.features, seeds)):
                signal.stability = float(value)
        per_image: dict[int, list[FaceResult]] = {}
        face_index = 0
        for position, index in enumerate(good):
            item: DecodedImage = decoded[index]  # type: ignore[assignment]
            image_area = float(item.rgb.shape[0] * item.rgb.shape[1])
            to_original = 1.0 / item.scale
            faces = []
            for det, signal in zip(detections[position], signals[position]):
                quality = self.scorer.score(signal) if self.scorer else None
                faces.append(
                    FaceResult(
                        bbox=(det.bbox * to_original).tolist(),
                        det_score=det.score,
                        landmarks=(det.landmarks * to_original).tolist(),
                        feature=embedding.features[face_index],
                        quality=quality.score if quality else None,
                        reasons=quality.reasons if quality else [],
                        pose={"yaw": signal.yaw, "pitch": signal.pitch, "roll": signal.roll},
                        signals=signal,
                        aligned=aligned[face_index],
                        area_ratio=det.area / image_area,
                        map_stats=embedding.map_stats[face_index] if embedding.map_stats is not None else None,
                    )
                )
                face_index += 1
            per_image[index] = faces
            if align_failures[position] is not None:
                decoded[index] = align_failures[position]  # type: ignore[call-overload]
        timings["quality"] = (time.perf_counter() - mark) * 1000
        timings["total"] = (time.perf_counter() - start) * 1000
        results: list[AnalysisResult | FroodError] = []
        for index, item in enumerate(decoded):
            if isinstance(item, FroodError):
                results.append(item)
            else:
                results.append(AnalysisResult(per_image[index], self.model, item.original_size, dict(timings), item.name, len(images)))
        return results

    def analyze(self, image: ImageInput | DecodedImage, name: str = "", thorough: bool = False) -> AnalysisResult:
        """Every face in one image, main face first, each with feature, quality, reasons and pose (a batch of one)."""
        result = self.analyze_batch([image], [name], thorough=thorough)[0]
        if isinstance(result, FroodError):
            raise result
        return result

    def analyze_stream(
        self, images: Sequence[BatchItem], names: Sequence[str] | None = None, batch_size: int = 16, thorough: bool = False
    ) -> Iterator[list[AnalysisResult | FroodError]]:
        """Results ``batch_size`` inputs at a time, decoding the next batch while the models run on this one."""
        images = list(images)
        if names is None:
            names = [str(image) if isinstance(image, (str, Path)) else "" for image in images]
        spans = [(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
        if not spans:
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="frood-prefetch") as prefetch:
            pending = prefetch.submit(self.decode_batch, images[spans[0][0] : spans[0][1]], names[spans[0][0] : spans[0][1]])
            for number, (start, end) in enumerate(spans):
                decoded = pending.result()
                if number + 1 < len(spans):
                    following = spans[number + 1]
                    pending = prefetch.submit(self.decode_batch, images[following[0] : following[1]], names[following[0] : following[1]])
                yield self.analyze_batch(decoded, names[start:end], thorough=thorough)

    def analyze_many(
        self, images: Iterable[BatchItem], thorough: bool = False, batch_size: int = 16, names: Sequence[str] | None = None
    ) -> list[AnalysisResult | FroodError]:
        """One result or one typed error per input, analysed ``batch_size`` images at a time (bounded memory)."""
        results: list[AnalysisResult | FroodError] = []
        for chunk in self.analyze_stream(list(images), names, batch_size, thorough):
            results.extend(chunk)
        return results

    def compare(self, image_a: ImageInput | AnalysisResult, image_b: ImageInput | AnalysisResult, thorough: bool = False) -> CompareResult:
        """Similarity of the main face of each image, both qualities, and a settings-driven decision."""
        pending = [image for image in (image_a, image_b) if not isinstance(image, AnalysisResult)]
        analysed = iter(self.analyze_batch(pending, [""] * len(pending), thorough=thorough)) if pending else iter(())
        a, b = (image if isinstance(image, AnalysisResult) else next(analysed) for image in (image_a, image_b))
        for side in (a, b):
            if isinstance(side, FroodError):
                raise side
        if not a.faces or not b.faces:
            missing = "A" if not a.faces else "B"
            raise NoFaceError(f"no face found in image {missing}")
        similarity = float(np.dot(a.face.feature, b.face.feature))
        quality_a = a.face.quality if a.face.quality is not None else 0.0
        quality_b = b.face.quality if b.face.quality is not None else 0.0
        decision = decide(similarity, quality_a, quality_b, self.match_threshold, self.config.reject_threshold, self.config.trust_threshold)
        return CompareResult(similarity, quality_a, quality_b, decision, self.match_threshold, a, b)

    def crop_signals(self, aligned: np.ndarray, base: QualitySignals) -> list[QualitySignals]:
        """Signals for modified copies of one aligned face; the context signals (pose, size...) stay fixed."""
        embedding = self.embedder.embed(aligned)
        updated = []
        for crop, norm in zip(aligned, embedding.norms):
            values = base.as_dict() | exposure_signals(crop) | {"feature_norm": float(norm), "stability": base.stability, "certainty": None}
            updated.append(QualitySignals(**values))
        if self.scorer:
            self.scorer.annotate(updated, embedding.features, embedding.map_stats)
        return updated
