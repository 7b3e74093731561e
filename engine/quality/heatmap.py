"""Quality heatmap of one face: occlusion sensitivity of the score over the aligned crop.

A grey patch slides over the aligned face; each occluded copy is re-embedded (one batch) and
re-scored with the context signals (pose, size, detector) held fixed. Where covering the face
costs the most quality is where the score "looks": the overlay shows it in red.
"""

from __future__ import annotations

import cv2
import numpy as np

PATCH_FRACTION = 0.25
GRID = 7


def occluded_copies(aligned: np.ndarray, grid: int = GRID, patch_fraction: float = PATCH_FRACTION) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``grid × grid`` copies of the crop, each with one square grey patch; and each patch's centre."""
    size = aligned.shape[0]
    patch = max(int(size * patch_fraction), 4)
    centres = np.linspace(patch // 2, size - patch // 2, grid).astype(int)
    copies, positions = [], []
    for cy in centres:
        for cx in centres:
            copy = aligned.copy()
            copy[max(cy - patch // 2, 0) : cy + patch // 2, max(cx - patch // 2, 0) : cx + patch // 2] = 128
            copies.append(copy)
            positions.append((int(cy), int(cx)))
    return np.stack(copies), positions


def quality_heatmap(pipeline, face) -> tuple[np.ndarray, np.ndarray]:
    """(sensitivity map grid×grid in quality units ≥ 0, RGB overlay of the aligned face)."""
    copies, _ = occluded_copies(face.aligned)
    signals = pipeline.crop_signals(copies, face.signals)
    scores = np.array([pipeline.scorer.score(signal).score for signal in signals])
    drop = np.clip(face.quality - scores, 0.0, None).reshape(GRID, GRID)
    return drop, overlay(face.aligned, drop)


def overlay(aligned: np.ndarray, drop: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    size = aligned.shape[0]
    scaled = drop / drop.max() if drop.max() > 1e-6 else np.zeros_like(drop)
    heat = cv2.resize(scaled.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    colours = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    return (aligned.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).astype(np.uint8)
