"""Linear probes on the recognizer's unit feature: attributes the feature itself encodes, read for free.

A face recognizer's feature carries more than identity. A mask, for one, moves the features of every
person in much the same direction, and a logistic regression on the 512 numbers finds that direction
from a few hundred labelled faces. The probe costs one dot product per face, where a hand-made cue
(the lower face's colour against the cheeks') misfired on webcam frames, beards and colour casts.

``frood calibrate`` fits the mask probe on the fit identities (masked faces and faces with a covered
lower half against every other face) and stores it in the quality params file: features are
model-specific, so is the probe. Its out-of-fold outputs (folds grouped by identity) are what the
quality fit sees, so the score does not learn to trust a probe on faces it has memorised.

The certainty head (:class:`CertaintyHead`) is the same idea one layer earlier: a ridge regression on the
recognizer's last convolutional map statistics (read by the embedder's forward hook in the same pass) that
predicts CR-FIQA's certainty ratio, fitted by ``frood calibrate`` (``calibration/certainty.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

# Ridge strength on the unit feature: chosen on the fit identities' folds (held-out AUROC of masked
# against bare faces of the same people 0.93, and 0.5 % of clean in-the-wild faces above P = 0.5).
PROBE_L2 = 0.001


@dataclass
class FeatureProbe:
    """``P(attribute) = sigmoid(w · f + b)`` for a unit feature ``f``."""

    weights: np.ndarray
    bias: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float64) @ self.weights + self.bias

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(features)))

    def as_dict(self) -> dict:
        return {"weights": np.round(self.weights, 6).tolist(), "bias": round(float(self.bias), 6)}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureProbe:
        return cls(np.asarray(data["weights"], np.float64), float(data["bias"]))


def fit_probe(features: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray | None = None, l2: float = PROBE_L2) -> FeatureProbe:
    """Weighted, ridge-penalised logistic regression (L-BFGS); weights are normalised to sum to one."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones(len(y)) if sample_weights is None else np.asarray(sample_weights, np.float64)
    w = w / w.sum()

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, bias = theta[:-1], theta[-1]
        z = x @ coef + bias
        gradient = w * (1.0 / (1.0 + np.exp(-z)) - y)
        value = float(w @ (np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(coef @ coef)
        return value, np.concatenate([x.T @ gradient + l2 * coef, [gradient.sum()]])

    result = minimize(objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return FeatureProbe(result.x[:-1], float(result.x[-1]))


@dataclass
class CertaintyHead:
    """Ridge regression on the recognizer's last-map statistics plus a few scalar terms: the predicted
    CR-FIQA certainty ratio of a face (higher = the recognizer places it closer to its own class).

    The pooled unit feature hides how well the face was seen; the 7×7 map before the pooling does not, and
    on 5 identity splits this head ranked recognition errors 11 % better than the feature norm
    (docs/quality.md, issue 28). Inputs are standardised with the fit's ``mean`` and ``scale``; ``scalars``
    names the scalar inputs after the map statistics (the scorer supplies them, the probe knows no signals).
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    scalars: tuple[str, ...]

    @property
    def map_size(self) -> int:
        return len(self.weights) - len(self.scalars)

    def predict(self, map_stats: np.ndarray, scalars: np.ndarray) -> np.ndarray:
        """``map_stats``: N×2C, ``scalars``: N×len(:attr:`scalars`); returns N predicted ratios."""
        x = np.hstack([np.asarray(map_stats, np.float64), np.asarray(scalars, np.float64).reshape(len(map_stats), -1)])
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def as_dict(self) -> dict:
        def rounded(values: np.ndarray) -> list[float]:
            return [float(f"{value:.7g}") for value in values]

        return {
            "kind": "ridge",
            "target": "certainty_ratio",
            "scalars": list(self.scalars),
            "mean": rounded(self.mean),
            "scale": rounded(self.scale),
            "weights": rounded(self.weights),
            "bias": float(f"{self.bias:.9g}"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CertaintyHead:
        return cls(
            np.asarray(data["mean"], np.float64),
            np.asarray(data["scale"], np.float64),
            np.asarray(data["weights"], np.float64),
            float(data["bias"]),
            tuple(data["scalars"]),
        )


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised inputs (closed form): ``(mean, scale, weights, bias)``, as :class:`CertaintyHead` reads them."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    z = (x - mean) / scale
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return mean, scale, weights, float(y.mean())
