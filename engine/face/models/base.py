"""The ``Embedder`` protocol: aligned face crops in, L2-normalised features (and their raw norms) out."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger("frood.models")


@dataclass
class EmbeddingBatch:
    """Features are L2-normalised float32 (N×D); ``norms`` are the pre-normalisation norms (a quality signal).

    ``map_stats`` (N×2C float32, or None for a model that declares no hook point): per face, the mean and then
    the standard deviation of each channel of the recognizer's last spatial map over its positions. The pooling
    after that map makes the feature blind to where and how evenly the face was seen; these statistics keep
    it, and the certainty head (``engine/quality/probes.py``) reads them."""

    features: np.ndarray
    norms: np.ndarray
    map_stats: np.ndarray | None = None


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
    # Name (``module.named_modules()``) of the module whose 4-D output is the last spatial map before the
    # pooling; a model that names one returns its per-channel statistics with every batch (no extra pass).
    map_hook_point: str | None = None

    def __init__(self, module: torch.nn.Module, device: str = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, str(device))
        self.module = module.to(self.device).eval()
        if self.device.type == "cuda":
            self.module = self.module.to(memory_format=torch.channels_last)
            self.max_batch = 256
        # Per thread, so two threads embedding with one model never read each other's maps.
        self._sink = threading.local()
        self.has_map_stats = False
        if self.map_hook_point:
            target = dict(self.module.named_modules()).get(self.map_hook_point)
            if target is None:
                log.warning("%s: no module %r to read the map statistics from; the certainty head stays neutral", self.name, self.map_hook_point)
            else:
                target.register_forward_hook(self._keep_map_stats)
                self.has_map_stats = True

    def _keep_map_stats(self, _module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        """Forward hook: reduces the map to 2C numbers per face at once (the 7×7 map itself is never kept)."""
        sink = getattr(self._sink, "chunks", None)
        if sink is None or not isinstance(output, torch.Tensor) or output.ndim != 4:
            return
        std, mean = torch.std_mean(output.float(), dim=(2, 3))  # one pass; std unbiased, as the bench measured it
        sink.append(torch.cat([mean, std], 1))

    def preprocess(self, aligned: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(aligned)).to(self.device, non_blocking=True)
        batch = (tensor.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return batch.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else batch

    @torch.inference_mode()
    def raw_features(self, aligned: np.ndarray) -> torch.Tensor:
        return self._forward(aligned)[0]

    @torch.inference_mode()
    def _forward(self, aligned: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw features and, where the model has a hook point, the map statistics of the same pass."""
        reduced = self.precision != "fp32"
        outputs: list[torch.Tensor] = []
        self._sink.chunks = stats = [] if self.has_map_stats else None
        try:
            for start in range(0, len(aligned), self.max_batch):
                batch = self.preprocess(aligned[start : start + self.max_batch])
                with torch.autocast(self.device.type, dtype=PRECISIONS[self.precision], enabled=reduced):
                    outputs.append(self.module(batch).float())
        finally:
            self._sink.chunks = None
        maps = torch.cat(stats) if stats and sum(len(chunk) for chunk in stats) == len(aligned) else None
        return torch.cat(outputs), maps

    def embed(self, aligned: np.ndarray) -> EmbeddingBatch:
        if len(aligned) == 0:
            return EmbeddingBatch(np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32))
        raw, maps = self._forward(aligned)
        norms = raw.norm(dim=1)
        features = raw / norms.clamp_min(1e-12)[:, None]
        map_stats = maps.cpu().numpy().astype(np.float32) if maps is not None else None
        return EmbeddingBatch(features.cpu().numpy().astype(np.float32), norms.cpu().numpy().astype(np.float32), map_stats)
