"""Signals → one logit → ``q = sigmoid(z / T)``: the calibrated OOD quality score in [0, 1].

The weights and the temperature come from a small versioned JSON file written by ``frood calibrate``
(``engine/quality/params/quality-<model>.json``); the file also holds the model's match threshold. A score
means "probability that this face still verifies against a clean photo of the same person", so the
settings' 0.4 (reject) and 0.6 (trust) keep their meaning across refits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.quality.geometry import is_truncated
from engine.quality.probes import CertaintyHead, FeatureProbe
from engine.quality.reasons import explain, eye_signal_trusted, occlusion_level, suspected_recapture
from engine.quality.signals import QualitySignals
from errors import FroodError

PARAMS_DIR = Path(__file__).resolve().parent / "params"
BASE_TERMS = ("feature_norm", "small_face", "det_logit", "pose", "sharpness", "dark", "bright", "eyes_closed", "truncation", "occlusion", "mask")
THOROUGH_TERMS = (*BASE_TERMS, "instability")
# The certainty head's term (engine/quality/probes.py): in a model's terms only when its params file holds the
# head, and neutral (contribution 0) for a face the head did not read (a model without a map hook point).
CERTAINTY_TERM = "certainty"
# The scalar inputs the certainty head reads after the map statistics (names of :func:`term_values`, plus the log norm).
HEAD_SCALARS = ("log_feature_norm", "small_face", "det_logit", "pose", "sharpness", "dark", "bright")
SMALL_FACE_PX = 64.0
# A face the liveness model calls a recapture (P(real) below RECAPTURE_REAL_PROB) never scores above this:
# the user's documents promise that print or screen recaptures score below 0.25 (docs/quality.md).
RECAPTURE_SCORE_CAP = 0.2
# A face cut by the image border is never trusted: its landmark-based alignment is an extrapolation, and
# copies cut by 35 % of their width verified against the person's other photos only about half the time
# (mean target 0.52 in calibration), so 0.5 is what the score's meaning says.
TRUNCATED_SCORE_CAP = 0.5


def term_values(signals: QualitySignals) -> dict[str, float]:
    """Turns raw signals into the terms the logistic model weighs (each roughly "more = worse or better")."""
    det = min(max(signals.det_score, 1e-6), 1 - 1e-6)
    values = {
        "feature_norm": signals.feature_norm,
        # A hinge, not log size: faces above ~64 px verify alike; below, detail is lost fast.
        "small_face": max(0.0, math.log(SMALL_FACE_PX) - math.log(max(signals.face_px, 1.0))),
        "det_logit": min(math.log(det / (1 - det)), 12.0),
        "pose": math.hypot(signals.yaw, signals.pitch) / 45.0,
        "sharpness": signals.sharpness,
        "dark": max(0.0, 100.0 - signals.brightness) / 100.0 + signals.underexposed,
        "bright": max(0.0, signals.brightness - 160.0) / 95.0 + signals.overexposed,
        # The eye-state model reads eyes found by fr_landmark: when those points are not trustworthy the
        # term is neutral (0 = open) rather than a guess.
        "eyes_closed": (1.0 - signals.eyes_open) if eye_signal_trusted(signals) else 0.0,
        "truncation": signals.truncation,
        "occlusion": occlusion_level(signals),
        "mask": signals.mask_prob if signals.mask_prob is not None else 0.0,
    }
    if signals.stability is not None:
        values["instability"] = 1.0 - signals.stability
    if signals.certainty is not None:
        values[CERTAINTY_TERM] = signals.certainty
    return values


def head_scalars(signals: QualitySignals, names: tuple[str, ...] = HEAD_SCALARS) -> list[float]:
    """The scalar inputs of the certainty head for one face, in the order ``names`` gives."""
    values = term_values(signals) | {"log_feature_norm": math.log(max(signals.feature_norm, 1e-12))}
    return [values[name] for name in names]


@dataclass
class LogitModel:
    """Standardised logistic model: ``z = b + Σ w_i (x_i - μ_i) / σ_i``."""

    terms: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    temperature: float

    def contributions(self, values: dict[str, float]) -> dict[str, float]:
        """Each term's share of the logit; the certainty term is 0 for a face without a head value."""
        x = np.array([values.get(name, mean) if name == CERTAINTY_TERM else values[name] for name, mean in zip(self.terms, self.mean)])
        return dict(zip(self.terms, (self.weights * (x - self.mean) / self.scale).tolist()))

    def logit(self, values: dict[str, float]) -> float:
        return self.bias + sum(self.contributions(values).values())

    def as_dict(self) -> dict:
        return {
            "terms": list(self.terms),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LogitModel:
        return cls(
            tuple(data["terms"]),
            np.asarray(data["mean"], float),
            np.asarray(data["scale"], float),
            np.asarray(data["weights"], float),
            float(data["bias"]),
            float(data["temperature"]),
        )


@dataclass
class QualityParams:
    model: str
    version: str
    match_threshold: float
    default: LogitModel
    thorough: LogitModel
    metadata: dict = field(default_factory=dict)
    mask_probe: FeatureProbe | None = None
    certainty_head: CertaintyHead | None = None

    def probes(self) -> dict:
        """The ``probes`` object of the params file: only the probes this model has."""
        probes = {"mask": self.mask_probe.as_dict()} if self.mask_probe else {}
        if self.certainty_head is not None:
            probes[CERTAINTY_TERM] = self.certainty_head.as_dict()
        return probes

    def save(self, path: Path) -> None:
        payload = {
            "model": self.model,
            "version": self.version,
            "match_threshold": self.match_threshold,
            "default": self.default.as_dict(),
            "thorough": self.thorough.as_dict(),
            "probes": self.probes(),
            "metadata": self.metadata,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.part")
        partial.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> QualityParams:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        probes = data.get("probes", {})
        return cls(
            data["model"],
            data["version"],
            float(data["match_threshold"]),
            LogitModel.from_dict(data["default"]),
            LogitModel.from_dict(data["thorough"]),
            data.get("metadata", {}),
            FeatureProbe.from_dict(probes["mask"]) if "mask" in probes else None,
            CertaintyHead.from_dict(probes[CERTAINTY_TERM]) if CERTAINTY_TERM in probes else None,
        )


# The detector a pipeline runs unless told otherwise (settings DETECTOR): YuNet's boxes with O-Net's points, which
# found as many faces or more than MTCNN on every shared set, verified better through both recognizers and detects
# 2–6 times faster (issue 23, docs/models.md).
DEFAULT_DETECTOR = "yunet"
# The detector the first calibrations were fitted on; its files and caches keep the names they had before the
# detector could be chosen.
UNSUFFIXED_DETECTOR = "mtcnn"


def params_path_for(model: str, detector: str = DEFAULT_DETECTOR) -> Path:
    """``quality-<model>-<detector>.json``; MTCNN's is ``quality-<model>.json``. Each detector has its own fit: its
    boxes, points and probabilities move the signals the score reads."""
    return PARAMS_DIR / (f"quality-{model}.json" if detector == UNSUFFIXED_DETECTOR else f"quality-{model}-{detector}.json")


def calibration_for(model: str, detector: str = DEFAULT_DETECTOR) -> Path:
    """The quality calibration a pipeline of ``model`` and ``detector`` reads: its own, else MTCNN's (a model calibrated
    before its detector could be chosen; the pipeline warns), else its own path (which then says it is missing)."""
    own = params_path_for(model, detector)
    if own.is_file() or detector == UNSUFFIXED_DETECTOR:
        return own
    fallback = params_path_for(model, UNSUFFIXED_DETECTOR)
    return fallback if fallback.is_file() else own


class QualityNotCalibratedError(FroodError):
    """A model whose quality score has not been fitted yet: its scores would mean nothing."""

    status = 503
    code = "quality_not_calibrated"


@dataclass
class QualityResult:
    score: float
    logit: float
    reasons: list[str]
    contributions: dict[str, float]


class QualityScorer:
    """Scores faces from their signals with calibrated parameters (see ``frood calibrate``)."""

    def __init__(self, params: QualityParams, trust_threshold: float = 0.6):
        self.params = params
        self.trust_threshold = trust_threshold

    @classmethod
    def for_model(cls, model: str, params_path: Path | None = None, trust_threshold: float = 0.6) -> QualityScorer:
        path = Path(params_path) if params_path else calibration_for(model)
        if not path.is_file():
            raise QualityNotCalibratedError(f"no quality calibration for model {model!r} at {path}; run `frood --model {model} calibrate`")
        return cls(QualityParams.load(path), trust_threshold)

    def annotate(self, signals: list[QualitySignals], features: np.ndarray, map_stats: np.ndarray | None = None) -> None:
        """Sets the signals the params' probes read: the mask probe from each face's unit feature, the certainty
        head from its map statistics (one matrix product each for the batch); call before :meth:`score`.

        Without ``map_stats`` (a model that exposes no map) the certainty stays None: its term is neutral."""
        if not len(signals):
            return
        if self.params.mask_probe is not None:
            for signal, probability in zip(signals, self.params.mask_probe.probabilities(np.asarray(features))):
                signal.mask_prob = float(probability)
        head = self.params.certainty_head
        if head is not None and map_stats is not None and len(map_stats) == len(signals) and np.shape(map_stats)[1] == head.map_size:
            predicted = head.predict(map_stats, np.array([head_scalars(signal, head.scalars) for signal in signals]))
            for signal, value in zip(signals, predicted):
                signal.certainty = float(value)

    def reads_eye_state(self) -> bool:
        """Whether the eye state moves the default score (a non-zero fitted weight); if not, it is needed only
        to explain a score below trust, and the pipeline measures it only there."""
        model = self.params.default
        return "eyes_closed" in model.terms and model.weights[model.terms.index("eyes_closed")] != 0.0

    def score(self, signals: QualitySignals) -> QualityResult:
        values = term_values(signals)
        model = self.params.thorough if signals.stability is not None else self.params.default
        contributions = model.contributions(values)
        logit = model.bias + sum(contributions.values())
        score = 1.0 / (1.0 + math.exp(-logit / model.temperature))
        if suspected_recapture(signals):
            score = min(score, RECAPTURE_SCORE_CAP)
        if is_truncated(signals.truncation):
            score = min(score, TRUNCATED_SCORE_CAP)
        # The certainty term says the recognizer is unsure, not why: the reason names the damage the other terms see.
        named = {term: value for term, value in contributions.items() if term != CERTAINTY_TERM}
        reasons = explain(signals, named) if score < self.trust_threshold else []
        return QualityResult(float(score), float(logit), reasons, contributions)
