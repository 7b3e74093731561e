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


PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` is fp16 on CUDA and fp32 elsewhere; reduced precision is only ever used on CUDA unless asked for."""
    if precision == "auto":
        return "fp16" if str(device).startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16; got {precision!r}")
    return precision


class TorchEmbedder:
    """Shared batching/normalisation for recognizers that are a torch module over normalised RGB.

    The crops travel to the device as uint8 and are normalised there. With ``fp16``/``bf16`` the
    module runs under ``torch.autocast`` (channels-last on CUDA); features come back in fp32.
    """

    name: str = ""
    dim: int = 512
    input_size: int = 112
    mean: float = 127.5
    std: float = 128.0
    max_batch: int = 64

    def __init__(self, module: torch.nn.Module, device: str = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, str(device))
        self.module = module.to(self.device).eval()
        if self.device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)
            self.max_batch = 256

    def preprocess(self, aligned: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(aligned)).to(self.device, non_blocking=True)
        batch = (tensor.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return batch.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else batch

    @torch.inference_mode()
    def raw_features(self, aligned: np.ndarray) -> torch.Tensor:
        reduced = self.precision != "fp32"
        outputs = []
        for start in range(0, len(aligned), self.max_batch):
            batch = self.preprocess(aligned[start : start + self.max_batch])
            with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision], enabled=reduced):
                outputs.append(self.module(batch).float())
        return torch.cat(outputs)

    def embed(self, aligned: np.ndarray) -> EmbeddingBatch:
        if len(aligned) == 0:
            return EmbeddingBatch(np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32))
        raw = self.raw_features(aligned)
        norms = raw.norm(dim=1)
        features = raw / norms.clamp_min(1e-12)[:, None]
        return EmbeddingBatch(features.cpu().numpy().astype(np.float32), norms.cpu().numpy().astype(np.float32))
