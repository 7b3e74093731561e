"""The ``Embedder`` protocol: aligned face crops in, L2-normalised features (and their raw norms) out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass
class EmbeddingBatch:
    """Features are L2-normalised float32 (N×D); ``norms`` are the pre-normalisation norms (a quality signal)."""

    features: np.ndarray
    norms: np.ndarray


class Embedder(Protocol):
    name: str
    dim: int
    input_size: int  # side of the aligned square crop the model expects

    def embed(self, aligned: np.ndarray) -> EmbeddingBatch:
        """``aligned``: N×S×S×3 uint8 RGB crops aligned to the 5-point template at ``input_size``."""
        ...


class TorchEmbedder:
    """Shared batching/normalisation for recognizers that are a torch module over normalised RGB."""

    name: str = ""
    dim: int = 512
    input_size: int = 112
    mean: float = 127.5
    std: float = 128.0
    max_batch: int = 32

    def __init__(self, module: torch.nn.Module, device: str = "cpu"):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def preprocess(self, aligned: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(aligned)).to(self.device)
        return (tensor.permute(0, 3, 1, 2).float() - self.mean) / self.std

    @torch.inference_mode()
    def raw_features(self, aligned: np.ndarray) -> torch.Tensor:
        outputs = [self.module(self.preprocess(aligned[start : start + self.max_batch])) for start in range(0, len(aligned), self.max_batch)]
        return torch.cat(outputs).float()

    def embed(self, aligned: np.ndarray) -> EmbeddingBatch:
        if len(aligned) == 0:
            return EmbeddingBatch(np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32))
        raw = self.raw_features(aligned)
        norms = raw.norm(dim=1)
        features = raw / norms.clamp_min(1e-12)[:, None]
        return EmbeddingBatch(features.cpu().numpy().astype(np.float32), norms.cpu().numpy().astype(np.float32))
