"""The engine's typed errors, re-exported from the neutral :mod:`errors` module (which ``ood`` imports too).

``recognition`` imports ``ood`` (the quality stage), never the other way: an error both packages raise
therefore lives in a module that belongs to neither. Existing ``from recognition.errors import ...``
lines keep working.
"""

from errors import (
    AlignmentError,
    FroodError,
    ImageDecodeError,
    ImageTooLargeError,
    NoFaceError,
    UnknownModelError,
    WeightsMissingError,
)

__all__ = [
    "AlignmentError",
    "FroodError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "NoFaceError",
    "UnknownModelError",
    "WeightsMissingError",
]
