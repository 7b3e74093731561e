"""``frood eval``: verification, quality (EDC), OOD and speed measurements of one or more models on a dataset.

Each image's feature and quality are computed once per model (cached by path) and every pair reuses them,
so a dataset with many pairs per image costs one forward pass per image. A model is either local (a
``FacePipeline``, analysing the full image or, with ``crops``, the prepared PNG crop) or a remote server
spoken to exactly as an evaluator's client would: detect locally, :func:`~evaluation.datasets.prepare_crop`,
multipart ``POST /extract``. The result is a plain dict (JSON-ready apart from NaN, which
:mod:`evaluation.report` writes as null).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errors import FroodError
from evaluation import metrics
from evaluation.datasets import Dataset, crop_box, prepare_crop

log = logging.getLogger("frood.eval")

# Per-image measures a pair's quality can be taken from (the pair's value is the min of its two images).
MEASURES = ("quality", "det_score", "face_px", "sharpness", "feature_norm")
FARS = (1e-2, 1e-3, 1e-4)
EDC_FMR = 1e-2
EDC_MAX_DISCARD = 0.2
KFOLDS = 10
HIST_BINS = 50
ROC_MAX_POINTS = 1000
NON_FACE_CORRUPTIONS = ("random_noise", "background_corner")
# Score given to a pair whose image has no face: the lowest cosine, so a genuine pair counts as a miss.
NO_FACE_SCORE = -1.0
# Images per batch of the engine in local mode (as ``analyze_many``).
EVAL_BATCH = 16


@dataclass
class ImageResult:
    """One image's feature and per-image measures (measures are NaN, quality 0, when no face was found)."""

    path: Path
    feature: np.ndarray | None
    values: dict[str, float]
    seconds: float
    bbox: list[float] | None = None  # largest face in original pixels (local detection)
    stage_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _no_face(path: Path, seconds: float, error: str, stage_ms: dict[str, float] | None = None) -> ImageResult:
    values = {name: math.nan for name in MEASURES} | {"quality": 0.0}
    return ImageResult(path, None, values, seconds, None, stage_ms or {}, error)


def _face_values(face: Any) -> dict[str, float]:
    signals = face.signals
    return {
        "quality": float(face.quality) if face.quality is not None else math.nan,
        "det_score": float(face.det_score),
        "face_px": float(signals.face_px),
        "sharpness": float(signals.sharpness),
        "feature_norm": float(signals.feature_norm),
    }


def crop_for(pipeline: Any, path: Path) -> tuple[bytes | None, Any]:
    """(prepared PNG crop, detected face) of an image's largest face, or (None, None) when none is found.

    Detection runs on the decoded (possibly downscaled) image and the box is taken back to those pixels,
    so the crop is cut from exactly what the detector saw.
    """
    decoded = pipeline.decode(path)
    result = pipeline.analyze(decoded)
    if not result.faces:
        return None, None
    face = result.faces[0]
    return prepare_crop(decoded.rgb, np.asarray(face.bbox) * decoded.scale), face


class LocalExtractor:
    """A ``FacePipeline`` on this machine: the full image, or (``crops``) the prepared crop as a server would get."""

    mode = "local"

    def __init__(self, pipeline: Any, crops: bool = False):
        self.pipeline = pipeline
        self.crops = crops
        self.name = pipeline.model
        self.match_threshold: float | None = float(pipeline.match_threshold) if math.isfinite(pipeline.match_threshold) else None

    def extract(self, path: Path) -> ImageResult:
        start = time.perf_counter()
        try:
            if self.crops:
                png, detected = crop_for(self.pipeline, path)
                if png is None:
                    return _no_face(path, time.perf_counter() - start, "no face found")
                result = self.pipeline.analyze(png, name=path.name)
                bbox = detected.bbox
            else:
                result = self.pipeline.analyze(path, name=path.name)
                bbox = result.faces[0].bbox if result.faces else None
        except FroodError as error:
            return _no_face(path, time.perf_counter() - start, str(error))
        seconds = time.perf_counter() - start
        if not result.faces:
            return _no_face(path, seconds, "no face found", dict(result.timings_ms))
        face = result.faces[0]
        return ImageResult(path, np.asarray(face.feature, np.float32), _face_values(face), seconds, list(bbox), dict(result.timings_ms))

    def extract_stream(self, paths: list[Path], batch_size: int = EVAL_BATCH) -> Iterator[list[ImageResult]]:
        """The same results as :meth:`extract`, ``batch_size`` images at a time through the batched engine.

        Each image's ``seconds`` is its share of its batch's wall time, and its ``stage_ms`` its share of the
        batch's stage times (what one image costs at this batch size). An image the engine refuses gets its
        own error; the rest of its batch is unaffected.
        """
        if not self.crops:
            names = [path.name for path in paths]
            mark = time.perf_counter()
            done = 0
            for chunk in self.pipeline.analyze_stream(paths, names, batch_size=batch_size):
                share = (time.perf_counter() - mark) / len(chunk)
                yield [self._result(path, result, share) for path, result in zip(paths[done : done + len(chunk)], chunk)]
                done += len(chunk)
                mark = time.perf_counter()
            return
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            mark = time.perf_counter()
            decoded = self.pipeline.decode_batch(chunk, [""] * len(chunk))
            located = self.pipeline.analyze_batch(decoded, [""] * len(chunk))
            crops: dict[int, tuple[bytes, list[float]]] = {}
            for index, (item, result) in enumerate(zip(decoded, located)):
                if not isinstance(result, FroodError) and result.faces:
                    face = result.faces[0]
                    crops[index] = (prepare_crop(item.rgb, np.asarray(face.bbox) * item.scale), list(face.bbox))
            order = sorted(crops)
            analysed = self.pipeline.analyze_batch([crops[index][0] for index in order], [chunk[index].name for index in order]) if order else []
            by_index = dict(zip(order, analysed))
            share = (time.perf_counter() - mark) / len(chunk)
            results = []
            for index, path in enumerate(chunk):
                if isinstance(located[index], FroodError):
                    results.append(_no_face(path, share, str(located[index])))
                elif index not in crops:
                    results.append(_no_face(path, share, "no face found"))
                else:
                    results.append(self._result(path, by_index[index], share, bbox=crops[index][1]))
            yield results

    @staticmethod
    def _result(path: Path, result: Any, seconds: float, bbox: list[float] | None = None) -> ImageResult:
        """One batch entry as :meth:`extract` reports it (stage times are this image's share of the batch's)."""
        if isinstance(result, FroodError):
            return _no_face(path, seconds, str(result))
        stage_ms = {stage: value / max(result.batch_size, 1) for stage, value in result.timings_ms.items()}
        if not result.faces:
            return _no_face(path, seconds, "no face found", stage_ms)
        face = result.faces[0]
        box = bbox if bbox is not None else face.bbox
        return ImageResult(path, np.asarray(face.feature, np.float32), _face_values(face), seconds, list(box), stage_ms)


class RemoteExtractor:
    """A server's ``POST /extract`` (multipart ``image`` + ``model_name``), fed the prepared PNG crop.

    The box comes from the local default pipeline, so the detector-side measures (det_score, face_px,
    sharpness) are local and the feature and quality are the server's; the feature norm is not sent by the
    API, so it is absent from remote EDC curves. ``seconds`` is the HTTP round trip only.
    """

    mode = "remote"

    def __init__(self, url: str, model_name: str, detector: Any, match_threshold: float | None = None, api_key: str | None = None, timeout: float = 60.0):
        import requests

        if not url.startswith(("http://", "https://")):
            raise FroodError(f"--server-url must be an http(s) URL such as http://host:7860/extract, got {url!r}")
        self.url = url
        self.model_name = model_name
        self.name = f"{model_name}@{url}"
        self.detector = detector
        self.match_threshold = match_threshold
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["X-API-Key"] = api_key

    def post(self, png: bytes, filename: str) -> dict:
        """One /extract call; HTTP and connection failures become a FroodError that names the server's reason."""
        import requests

        try:
            response = self.session.post(self.url, files={"image": (filename, png, "image/png")}, data={"model_name": self.model_name}, timeout=self.timeout)
        except requests.RequestException as error:
            raise FroodError(f"cannot reach {self.url}: {error}") from error
        if response.status_code != 200:
            try:
                message = response.json().get("errorMsg") or response.json().get("detail") or response.text
            except ValueError:
                message = response.text
            raise FroodError(f"{self.url} answered {response.status_code}: {str(message)[:300]}")
        return response.json()

    def extract(self, path: Path) -> ImageResult:
        start = time.perf_counter()
        try:
            png, face = crop_for(self.detector, path)
        except FroodError as error:
            return _no_face(path, 0.0, str(error))
        detect_ms = (time.perf_counter() - start) * 1000
        if png is None:
            return _no_face(path, 0.0, "no face found locally", {"local_detect": detect_ms})
        mark = time.perf_counter()
        payload = self.post(png, Path(path).with_suffix(".png").name)
        seconds = time.perf_counter() - mark
        stage_ms = {"local_detect": detect_ms, "round_trip": seconds * 1000}
        if isinstance(payload.get("latency_ms"), (int, float)):
            stage_ms["server"] = float(payload["latency_ms"])
        values = _face_values(face) | {"feature_norm": math.nan}
        if not payload.get("feature"):
            return ImageResult(path, None, {name: math.nan for name in MEASURES} | {"quality": 0.0}, seconds, None, stage_ms, "no face found by the server")
        feature = np.asarray(payload["feature"], np.float32)
        values["quality"] = float(payload.get("quality_score") or 0.0)
        return ImageResult(path, feature, values, seconds, list(face.bbox), stage_ms)


# --------------------------------------------------------------------------- measures


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def pair_scores(dataset: Dataset, images: dict[Path, ImageResult]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cosine scores, labels, failed mask) per pair; a pair with a faceless image scores NO_FACE_SCORE."""
    scores = np.empty(len(dataset.pairs))
    failed = np.zeros(len(dataset.pairs), bool)
    for index, pair in enumerate(dataset.pairs):
        a, b = images[pair.a].feature, images[pair.b].feature
        if a is None or b is None:
            scores[index], failed[index] = NO_FACE_SCORE, True
        else:
            scores[index] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    labels = np.array([pair.genuine for pair in dataset.pairs], bool)
    return scores, labels, failed


def _downsample(*arrays: np.ndarray, limit: int = ROC_MAX_POINTS) -> list[np.ndarray]:
    size = arrays[0].size
    if size <= limit:
        return list(arrays)
    keep = np.unique(np.linspace(0, size - 1, limit).round().astype(int))
    return [array[keep] for array in arrays]


def verification(scores: np.ndarray, labels: np.ndarray, match_threshold: float | None, seed: int = 0, n_boot: int = 1000) -> dict:
    """Every verification number of one model: accuracies, ROC AUC, EER, TAR@FAR, histograms, bootstrap CIs."""
    out: dict[str, Any] = {"pairs": int(labels.size), "genuine_pairs": int(labels.sum()), "impostor_pairs": int((~labels).sum())}
    notes: list[str] = []
    out["best_accuracy"], out["best_accuracy_threshold"] = metrics.best_threshold_accuracy(scores, labels)
    try:
        mean, std, thresholds = metrics.kfold_accuracy(scores, labels, KFOLDS, seed)
        out["kfold_accuracy"] = {"folds": KFOLDS, "mean": mean, "std": std, "thresholds": thresholds.tolist()}
    except ValueError as error:
        out["kfold_accuracy"] = None
        notes.append(f"{KFOLDS}-fold accuracy not computed: {error}")
    out["roc_auc"] = metrics.roc_auc(scores, labels)
    out["eer"], out["eer_threshold"] = metrics.eer(scores, labels)
    out["tar_at_far"] = []
    for far in FARS:
        tar, threshold = metrics.tar_at_far(scores, labels, far)
        out["tar_at_far"].append({"far": far, "tar": _finite_or_none(tar), "threshold": _finite_or_none(threshold)})
        if math.isnan(tar):
            notes.append(f"TAR@FAR={far:g} needs at least {math.ceil(1 / far)} impostor pairs (have {int((~labels).sum())})")
    if match_threshold is not None:
        out["match_threshold"] = match_threshold
        out["accuracy_at_match_threshold"] = float(np.mean((scores >= match_threshold) == labels))
        out["fmr_at_match_threshold"] = float(np.mean(scores[~labels] >= match_threshold))
        out["fnmr_at_match_threshold"] = float(np.mean(scores[labels] < match_threshold))
    else:
        out["match_threshold"] = out["accuracy_at_match_threshold"] = None
        notes.append("no match threshold known for this model (remote mode: pass --match-threshold)")

    fpr, tpr, thresholds = metrics.roc_curve(scores, labels)
    fpr, tpr, thresholds = _downsample(fpr, tpr, thresholds)
    out["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [_finite_or_none(t) for t in thresholds]}
    low, high = math.floor(scores.min() * 20) / 20, math.ceil(scores.max() * 20) / 20
    edges = np.linspace(low, high if high > low else low + 0.05, HIST_BINS + 1)
    out["histogram"] = {
        "bin_edges": edges.tolist(),
        "genuine": np.histogram(scores[labels], edges)[0].tolist(),
        "impostor": np.histogram(scores[~labels], edges)[0].tolist(),
    }

    boot = {"n_boot": n_boot, "alpha": 0.05, "seed": seed}
    boot["roc_auc"] = list(metrics.bootstrap_ci(metrics.roc_auc, scores, labels, n_boot, seed=seed))
    boot["eer"] = list(metrics.bootstrap_ci(metrics.eer, scores, labels, n_boot, seed=seed))
    if out["kfold_accuracy"] is not None:
        boot["kfold_accuracy"] = list(metrics.bootstrap_ci(lambda s, y: metrics.kfold_accuracy(s, y, KFOLDS, seed)[0], scores, labels, n_boot, seed=seed))
    else:
        boot["kfold_accuracy"] = None
    out["bootstrap_ci95"] = boot
    out["notes"] = notes
    return out


def quality_edc(scores: np.ndarray, labels: np.ndarray, pair_values: dict[str, np.ndarray]) -> dict:
    """FNMR at FMR 1e-2 vs discarded share for each quality measure, its partial AUC over 0–20%, and the winner.

    A pair whose measure is missing (no face) gets a value below every real one, so it is discarded first,
    as a deployed system would refuse it first.
    """
    curves: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name, values in pair_values.items():
        finite = np.isfinite(values)
        if not finite.any():
            skipped[name] = "not available in this mode"
            continue
        filled = np.where(finite, values, values[finite].min() - 1.0)
        curve = metrics.edc_curve(scores, labels, filled, fmr=EDC_FMR)
        curves[name] = {
            "discard": np.asarray(curve["discard"]).tolist(),
            "fnmr": [_finite_or_none(v) for v in np.asarray(curve["fnmr"])],
            "threshold": float(curve["threshold"]),
            "partial_auc_0_20": metrics.edc_partial_auc(curve, EDC_MAX_DISCARD),
        }
    areas = {name: curve["partial_auc_0_20"] for name, curve in curves.items()}
    best = min(areas.values()) if areas else math.nan
    winners = sorted(name for name, area in areas.items() if math.isclose(area, best, rel_tol=1e-9, abs_tol=1e-12))
    notes = []
    if curves and all((curve["fnmr"][0] or 0.0) == 0.0 for curve in curves.values()):
        notes.append(f"no genuine pair is rejected at FMR {EDC_FMR:g} before any discard, so the EDC cannot rank the measures on this dataset")
    return {
        "fmr": EDC_FMR,
        "max_discard": EDC_MAX_DISCARD,
        "notes": notes,
        "pair_quality": "min of the two images' values",
        "curves": curves,
        "partial_auc_0_20": areas,
        "winner": winners[0] if len(winners) == 1 else None,
        "winners": winners,
        "skipped": skipped,
    }


def speed(results: list[ImageResult], wall_seconds: float) -> dict:
    """Feature-extraction throughput, and the mean per-stage times reported by the engine (or server).

    ``images_per_second`` and ``ms_per_image`` count extraction time only (in remote mode the HTTP round trip,
    not the local detection that prepares the crop; images never sent are left out); ``wall_seconds`` is the
    whole pass.
    """
    timed = np.array([result.seconds for result in results if result.seconds > 0]) * 1000
    stages: dict[str, list[float]] = {}
    for result in results:
        for stage, value in result.stage_ms.items():
            stages.setdefault(stage, []).append(value)
    total = float(timed.sum()) / 1000
    return {
        "images": len(results),
        "timed_images": int(timed.size),
        "wall_seconds": wall_seconds,
        "images_per_second": timed.size / total if total > 0 else None,
        "ms_per_image": float(timed.mean()) if timed.size else None,
        "ms_per_image_p50": float(np.median(timed)) if timed.size else None,
        "stage_ms_mean": {stage: float(np.mean(values)) for stage, values in stages.items()},
    }


# --------------------------------------------------------------------------- OOD


def _largest_quality(result: Any) -> tuple[float, bool]:
    """(quality the service would report for this input, whether a face was found): its largest face's, or 0.

    An input the engine refuses (e.g. a copy whose landmarks cannot be aligned) counts as no face, quality 0.
    """
    if isinstance(result, FroodError) or not result.faces:
        return 0.0, False
    quality = result.faces[0].quality
    return (float(quality) if quality is not None else 0.0), True


def background_corner(rgb: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """The largest square in an image corner that stays clear of the face box (capped at the face crop's size)."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox[:4])
    clear = {  # the largest square from each corner that does not overlap the box
        "top_left": max(x1, y1),
        "top_right": max(width - x2, y1),
        "bottom_left": max(x1, height - y2),
        "bottom_right": max(width - x2, height - y2),
    }
    corner = max(clear, key=lambda key: clear[key])
    target = 1.2 * max(x2 - x1, y2 - y1)
    side = int(max(16, min(clear[corner], target, height, width)))
    top = 0 if corner.startswith("top") else height - side
    left = 0 if corner.endswith("left") else width - side
    return np.ascontiguousarray(rgb[max(top, 0) : max(top, 0) + side, max(left, 0) : max(left, 0) + side])


def random_noise(rgb: np.ndarray, bbox: np.ndarray, seed: int) -> np.ndarray:
    """Uniform noise the size of the face crop: an input with no face in it at all."""
    left, top, right, bottom = crop_box(bbox, rgb.shape)
    return np.random.default_rng(seed).integers(0, 256, size=(bottom - top, right - left, 3), dtype=np.uint8)


def ood_evaluation(pipeline: Any, images: dict[Path, ImageResult], limit: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """AUROC of the quality score telling each clean face from its corrupted copies, per corruption.

    Corruptions: every ``evaluation.degrade.DEGRADATIONS`` entry plus two non-face inputs (uniform noise, a
    background corner). The quality of a copy is what the service would report (largest face; 0 with no face).
    """
    from tqdm import tqdm

    from evaluation.degrade import DEGRADATIONS

    candidates = sorted((path for path, result in images.items() if result.bbox is not None), key=str)
    if limit is not None and limit < len(candidates):
        chosen = np.sort(np.random.default_rng(seed).choice(len(candidates), size=limit, replace=False))
        candidates = [candidates[index] for index in chosen]
    names = [*DEGRADATIONS, *NON_FACE_CORRUPTIONS]
    clean_values: list[float] = []
    copies: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
    start = time.perf_counter()
    for number, path in enumerate(tqdm(candidates, desc=f"{pipeline.model} OOD copies", unit="img", file=sys.stderr, disable=not progress)):
        decoded = pipeline.decode(path)
        box = np.asarray(images[path].bbox) * decoded.scale
        # The clean side goes through the same full-image path as its copies (also when the run analysed crops);
        # the clean image and all its copies are one batch of the engine.
        inputs = [decoded.rgb, *(degrade(decoded.rgb, box, seed + index) for index, degrade in enumerate(DEGRADATIONS.values()))]
        inputs += [random_noise(decoded.rgb, box, seed + number), background_corner(decoded.rgb, box)]
        original, *degraded = (_largest_quality(result) for result in pipeline.analyze_batch(inputs))
        clean_values.append(original[0])
        for name, value in zip(names, degraded):
            copies[name].append(value)
    if not candidates:
        return {"skipped": "no image with a detected face", "corruptions": {}}
    clean = np.array(clean_values, float)
    per: dict[str, dict] = {}
    for name in names:
        values = np.array([quality for quality, _ in copies[name]], float)
        per[name] = {
            "auroc": metrics.ood_auroc(clean, values),
            "mean_quality": float(values.mean()),
            "no_face": sum(not found for _, found in copies[name]),
            "n": int(values.size),
            "kind": "non_face" if name in NON_FACE_CORRUPTIONS else "degradation",
        }
    pooled = np.array([quality for name in names for quality, _ in copies[name]], float)
    return {
        "images": [str(path) for path in candidates],
        "in_distribution": {"n": int(clean.size), "mean_quality": float(clean.mean())},
        "corruptions": per,
        "auroc_all": metrics.ood_auroc(clean, pooled),
        "seconds": time.perf_counter() - start,
        "note": "a corrupted copy with no face detected counts as quality 0",
    }


# --------------------------------------------------------------------------- one model, all models


def evaluate_extractor(
    extractor: LocalExtractor | RemoteExtractor,
    dataset: Dataset,
    seed: int = 0,
    n_boot: int = 1000,
    ood: bool = True,
    ood_limit: int | None = None,
    progress: bool = True,
) -> dict:
    """Features once per image, then every measure; returns this model's section of the report."""
    from tqdm import tqdm

    paths = dataset.images
    results: dict[Path, ImageResult] = {}
    start = time.perf_counter()
    with tqdm(total=len(paths), desc=f"{extractor.name} features", unit="img", file=sys.stderr, disable=not progress) as bar:
        if isinstance(extractor, LocalExtractor):  # the batched engine; a server is sent one image per request
            for chunk in extractor.extract_stream(list(paths)):
                results.update((result.path, result) for result in chunk)
                bar.update(len(chunk))
        else:
            for path in paths:
                results[path] = extractor.extract(path)
                bar.update(1)
    wall = time.perf_counter() - start

    scores, labels, failed = pair_scores(dataset, results)
    pair_values = {}
    for name in MEASURES:
        per_image = {path: result.values[name] for path, result in results.items()}
        pair_values[name] = np.array([min(per_image[pair.a], per_image[pair.b]) for pair in dataset.pairs], float)
    failures = {str(path): result.error for path, result in results.items() if result.feature is None}
    section: dict[str, Any] = {
        "name": extractor.name,
        "mode": extractor.mode + (" (prepared crops)" if getattr(extractor, "crops", False) else ""),
        "images": {"total": len(paths), "no_face": len(failures), "failures": failures},
        "failed_pairs": int(failed.sum()),
        "verification": verification(scores, labels, extractor.match_threshold, seed, n_boot),
        "quality": quality_edc(scores, labels, pair_values),
        "speed": speed(list(results.values()), wall),
    }
    if extractor.match_threshold is not None:
        wrong = np.flatnonzero((scores >= extractor.match_threshold) != labels)
        section["errors_at_match_threshold"] = [
            {"a": str(dataset.pairs[i].a), "b": str(dataset.pairs[i].b), "genuine": bool(labels[i]), "score": float(scores[i])} for i in wrong[:50]
        ]
    if not ood:
        section["ood"] = {"skipped": "--no-ood"}
    elif extractor.mode == "remote":
        section["ood"] = {"skipped": "OOD corruptions are measured in local mode only: they need the engine's own detector and quality score"}
    else:
        section["ood"] = ood_evaluation(extractor.pipeline, results, ood_limit, seed, progress)
    section["_scores"] = scores  # for the report's per-pair CSV; dropped from the JSON
    section["_labels"] = labels
    return section


def run_evaluation(
    dataset: Dataset,
    models: list[str],
    device: str | None = None,
    server_url: str | None = None,
    model_name: str | None = None,
    match_threshold: float | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    ood: bool = True,
    ood_limit: int | None = None,
    crops: bool = False,
    api_key: str | None = None,
    progress: bool = True,
    pipeline_factory: Callable[[str], Any] | None = None,
) -> dict:
    """The whole evaluation: one section per local model, then the remote server's if a URL is given."""
    if not models and not server_url:
        raise FroodError("nothing to evaluate: give --eval-model NAME or --server-url URL --model-name NAME")
    if server_url and not model_name:
        raise FroodError("--server-url needs --model-name (the model_name form field the server expects)")
    if ood_limit is not None and ood_limit < 0:
        raise FroodError(f"--ood-limit must be >= 0, got {ood_limit}")

    built: dict[str, Any] = {}

    def make(name: str) -> Any:
        """One pipeline per model name (the remote mode's detector reuses a local default model's)."""
        if name not in built:
            if pipeline_factory is not None:
                built[name] = pipeline_factory(name)
            else:
                from engine.face.pipeline import FacePipeline

                built[name] = FacePipeline(model=name, device=device)
        return built[name]

    sections = []
    seen: set[str] = set()
    for name in models:
        pipeline = make(name)
        if pipeline.model in seen:
            continue
        seen.add(pipeline.model)
        log.info("Evaluating %s on %s", pipeline.model, dataset.name)
        sections.append(evaluate_extractor(LocalExtractor(pipeline, crops), dataset, seed, n_boot, ood, ood_limit, progress))
    if server_url:
        remote = RemoteExtractor(server_url, model_name or "", make("default"), match_threshold, api_key)
        sections.append(evaluate_extractor(remote, dataset, seed, n_boot, ood, ood_limit, progress))
    return {
        "config": {
            "dataset": dataset.describe(),
            "models": [section["name"] for section in sections],
            "server_url": server_url,
            "model_name": model_name,
            "device": device,
            "seed": seed,
            "n_boot": n_boot,
            "ood": ood,
            "ood_limit": ood_limit,
            "crops": crops,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "models": sections,
    }
