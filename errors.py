"""Typed errors whose messages a person can act on; shells map them to HTTP statuses.

A neutral module: both engine packages raise these (``recognition`` and ``ood``, which must not import
each other's way back), and it imports nothing of the project. ``errors`` re-exports it.
"""

from __future__ import annotations


class FroodError(Exception):
    """Base of every error the engine raises on purpose. ``status`` is the HTTP status to use."""

    status: int = 400
    code: str = "error"


class ImageDecodeError(FroodError):
    """The bytes are not an image we can read (empty, truncated, text, unknown format)."""

    code = "invalid_image"


class ImageTooLargeError(FroodError):
    """The image (or its declared size) is beyond the configured limits: a decompression bomb guard."""

    status = 413
    code = "image_too_large"


class NoFaceError(FroodError):
    """No face was found where one is needed."""

    status = 422
    code = "no_face"


class UnknownModelError(FroodError):
    """A model name that the registry does not know."""

    status = 404
    code = "unknown_model"


class WeightsMissingError(FroodError):
    """A registered model whose weights are not on this machine; the message says where to put them."""

    status = 503
    code = "weights_missing"


class AlignmentError(FroodError, ValueError):
    """A detected face whose landmarks cannot be aligned (all points together, or not finite): a per-image error.

    Also a ``ValueError``, which is what the aligner raised before it was typed.
    """

    status = 422
    code = "degenerate_landmarks"


class ApiError(FroodError):
    """A request the caller must change, with its HTTP status, a message for the caller and optional headers
    (e.g. ``Retry-After``). Raised by the service and the shells alike."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
