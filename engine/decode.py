"""Input decoding: path | bytes | numpy array | PIL image → RGB uint8 array, safely.

Why a module of its own: every shell (UI, HTTP, CLI) receives images in a different form, and every
one of them must refuse the same bad inputs with the same typed errors (see :mod:`errors`).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from errors import ImageDecodeError, ImageTooLargeError

ImageInput = str | Path | bytes | bytearray | memoryview | np.ndarray | Image.Image

ORIENTATION_TAG = 0x0112
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}


@dataclass
class DecodedImage:
    """An RGB image ready for the pipeline, with what a report needs to say about the original."""

    rgb: np.ndarray  # H×W×3 uint8, RGB
    original_size: tuple[int, int]  # (width, height) before any downscale
    scale: float  # rgb size / original size (≤ 1)
    format: str
    name: str = ""

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Accepts H×W, H×W×1, H×W×3 (RGB) or H×W×4 (RGBA); any integer or float dtype."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ImageDecodeError(f"an image array must be H×W, H×W×3 or H×W×4; got shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float32))
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        array = np.clip(finite * scale, 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = (array[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(array)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Flattens every PIL mode we meet (L, P, CMYK, I;16, I, F, LA, RGBA) to RGB uint8."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.int64)
        peak = 65535 if image.mode.startswith("I;16") or data.max(initial=0) > 255 else 255
        return _array_to_rgb((data * 255 // max(peak, 1)).astype(np.uint8))
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image, dtype=np.float32))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _array_to_rgb(np.asarray(image.convert("RGBA")))
    # An RGB image is read as it is: convert("RGB") would copy it once more before numpy copies it again.
    return np.ascontiguousarray(np.asarray(image if image.mode == "RGB" else image.convert("RGB")))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}×{height} ({width * height / 1e6:.0f} MP); the limit is {max_pixels / 1e6:.0f} MP"
        )


def _downscale(rgb: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    if width <= max_width:
        return rgb, 1.0
    scale = max_width / width
    resized = cv2.resize(rgb, (max_width, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    return resized, scale


def decode_image(
    source: ImageInput,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 50_000_000,
    max_width: int = 1920,
    name: str = "",
) -> DecodedImage:
    """Decode any supported input to RGB; raises :class:`ImageDecodeError` / :class:`ImageTooLargeError`."""
    if isinstance(source, np.ndarray):
        _check_pixels(source.shape[1] if source.ndim > 1 else 0, source.shape[0], max_pixels)
        rgb = _array_to_rgb(source)
        original = (rgb.shape[1], rgb.shape[0])
        rgb, scale = _downscale(rgb, max_width)
        return DecodedImage(rgb, original, scale, "array", name)
    if isinstance(source, Image.Image):
        _check_pixels(*source.size, max_pixels)
        rgb = _pil_to_rgb(ImageOps.exif_transpose(source) or source)
        original = (rgb.shape[1], rgb.shape[0])
        rgb, scale = _downscale(rgb, max_width)
        return DecodedImage(rgb, original, scale, source.format or "PIL", name)
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise ImageDecodeError(f"{path} does not exist or is not a file")
        if path.stat().st_size > max_bytes:
            raise ImageTooLargeError(f"{path.name} is {path.stat().st_size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise ImageDecodeError(f"cannot read an image from a {type(source).__name__}")

    if not data:
        raise ImageDecodeError("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the upload is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(*image.size, max_pixels)
            if image.format not in SUPPORTED_FORMATS:
                raise ImageDecodeError(f"{image.format} images are not supported; use JPEG, PNG, WEBP, BMP, GIF or TIFF")
            image.seek(0)  # first frame of an animation
            declared = image.size
            if image.format in ("JPEG", "MPO") and image.width > 2 * max_width:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: far faster, and we downscale anyway.
                image.draft("RGB", (max_width, max(1, image.height * max_width // image.width)))
            image.load()
            fmt = image.format or "unknown"
            if image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # rotated by 90°: width ↔ height
                declared = (declared[1], declared[0])
            image = ImageOps.exif_transpose(image) or image
            rgb = _pil_to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("this is not an image we can read (JPEG, PNG, WEBP, BMP, GIF or TIFF expected)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"the image is damaged or truncated and cannot be decoded ({exc})") from exc
    rgb, _ = _downscale(rgb, max_width)
    return DecodedImage(rgb, declared, rgb.shape[1] / declared[0], fmt, name)
