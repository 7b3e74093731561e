"""Recognizers behind one ``Embedder`` protocol, and the registry that maps model names to them."""

from engine.face.models.base import Embedder, EmbeddingBatch
from engine.face.models.registry import DEFAULT_MODEL, ModelSpec, available_models, create_embedder, get_spec, resolve_name

__all__ = [
    "DEFAULT_MODEL",
    "Embedder",
    "EmbeddingBatch",
    "ModelSpec",
    "available_models",
    "create_embedder",
    "get_spec",
    "resolve_name",
]
