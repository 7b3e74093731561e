"""Input decoding: path | bytes | numpy array | PIL image → RGB uint8 array, safely.

Why a module of its own: every shell (UI, HTTP, CLI) receives images in a different form, and every
one of them must refuse the same bad inputs with the same typed errors (see :mod:`errors`).

Every limit is checked from what the header declares, before a pixel is allocated (PIL's ``Image.open``
reads only the header; ``load()`` decodes), so a request that would fail later, or take a micro-batch
down with it, is refused here with its own typed error:

- ``max_pixels`` (413): width × height, counted in 8-bit samples. A 16-bit image (``I;16``) costs twice
  the memory per pixel and a 32-bit one (``I``, ``F``) four times, so their limit is ``max_pixels`` / 2
  and / 4: a 95 KB 16-bit 7000×7000 PNG (49 MP) is refused from its header instead of taking ~870 MB.
- ``min_side`` (400, default 20 px): the face detector (MTCNN, ``min_face_size=20``) cannot find a face
  smaller than 20 px, and for an image whose shorter side is under 20 px it has no pyramid level at all
  (it fails, and with it every image of its batch). 16 px would still let 16-19 px images through.
- ``max_aspect`` (400, default 20:1): the detector shrinks the longer side to 640 px, so a 20:1 image
  keeps a 32-px shorter side, above those 20 px; past 32:1 the shorter side falls under 20 px (the same
  failure). 20:1 also leaves room for real panoramas (a phone's are 4:1 to 12:1).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from errors import FroodError, ImageDecodeError, ImageTooLargeError

ImageInput = str | Path | bytes | bytearray | memoryview | np.ndarray | Image.Image

ORIENTATION_TAG = 0x0112
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
MIN_SIDE = 20  # px: MTCNN's smallest face, and the smallest image its pyramid can start on (see above)
MAX_ASPECT = 20.0  # longer side / shorter side (see above)
# Bytes per sample of the PIL modes wider than 8 bits (16-bit colour PNGs open as 8-bit RGB/RGBA already).
WIDE_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
ALPHA_CHUNK_PIXELS = 1 << 20  # alpha is composited this many pixels at a time: float temporaries stay ~40 MB


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
        array = _composite_on_white(array)
    return np.ascontiguousarray(array)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA over white, a band of rows at a time: the float arithmetic of a whole 50 MP image would take ~1.8 GB."""
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    rows = max(1, ALPHA_CHUNK_PIXELS // max(rgba.shape[1], 1))
    for top in range(0, rgba.shape[0], rows):
        band = rgba[top:top + rows]
        alpha = band[:, :, 3:4].astype(np.float32) / 255.0
        out[top:top + rows] = band[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
    return out


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Flattens every PIL mode we meet (L, P, CMYK, I;16, I, F, LA, RGBA) to RGB uint8."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # In place in 32-bit integers (values * 255 < 2**24): the same numbers as int64 arithmetic at half
        # the memory and without its temporaries. Out-of-range 32-bit values are clipped, not wrapped.
        data = np.asarray(image)
        if image.mode == "I":
            data = np.clip(data, 0, 65535)
        peak = 65535 if image.mode.startswith("I;16") or data.max(initial=0) > 255 else 255
        scaled = data.astype(np.uint32)
        scaled *= 255
        scaled //= peak
        return _array_to_rgb(scaled.astype(np.uint8))
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image, dtype=np.float32))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _array_to_rgb(np.asarray(image if image.mode == "RGBA" else image.convert("RGBA")))
    # An RGB image is read as it is: convert("RGB") would copy it once more before numpy copies it again.
    return np.ascontiguousarray(np.asarray(image if image.mode == "RGB" else image.convert("RGB")))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}×{height} ({width * height / 1e6:.0f} MP); the limit is {max_pixels / 1e6:.0f} MP"
        )


def check_geometry(
    width: int,
    height: int,
    *,
    max_pixels: int,
    min_side: int = MIN_SIDE,
    max_aspect: float | None = MAX_ASPECT,
    sample_bytes: int = 1,
) -> None:
    """Refuse a declared size before any pixel exists: too many pixels for its bit depth (413), a side
    under ``min_side`` or a shape beyond ``max_aspect``:1 (400). ``None`` / 0 turns a limit off."""
    if sample_bytes > 1 and width * height * sample_bytes > max_pixels:
        bits = 8 * sample_bytes
        raise ImageTooLargeError(
            f"image is {width}×{height} ({width * height / 1e6:.0f} MP) at {bits} bits per sample; the limit for "
            f"{bits}-bit images is {max_pixels / sample_bytes / 1e6:.1f} MP ({max_pixels / 1e6:.0f} MP at 8 bits)"
        )
    _check_pixels(width, height, max_pixels)
    if min_side and min(width, height) < min_side:
        raise ImageDecodeError(f"image is {width}×{height} px; the smallest side must be at least {min_side} px")
    if max_aspect and max(width, height) > max_aspect * min(width, height):
        raise ImageDecodeError(
            f"image is {width}×{height} px, {max(width, height) / min(width, height):.0f}:1; "
            f"the longer side may be at most {max_aspect:g} times the shorter"
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
    min_side: int = MIN_SIDE,
    max_aspect: float | None = MAX_ASPECT,
    name: str = "",
) -> DecodedImage:
    """Decode any supported input to RGB; raises :class:`ImageDecodeError` / :class:`ImageTooLargeError`.

    Every size limit (``max_pixels`` scaled by bit depth, ``min_side``, ``max_aspect``: see the module
    docstring for why 20 px and 20:1) is checked on the declared size before pixels are allocated.
    """
    limits = {"max_pixels": max_pixels, "min_side": min_side, "max_aspect": max_aspect}
    if isinstance(source, np.ndarray):
        _check_pixels(source.shape[1] if source.ndim > 1 else 0, source.shape[0], max_pixels)
        if source.ndim in (2, 3) and 0 not in source.shape:
            check_geometry(source.shape[1], source.shape[0], **limits)
        rgb = _array_to_rgb(source)
        original = (rgb.shape[1], rgb.shape[0])
        rgb, scale = _downscale(rgb, max_width)
        return DecodedImage(rgb, original, scale, "array", name)
    if isinstance(source, Image.Image):
        check_geometry(*source.size, **limits, sample_bytes=WIDE_MODE_BYTES.get(source.mode, 1))
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
            image = Image.open(io.BytesIO(data))  # the header only: no pixel is decoded yet
            check_geometry(*image.size, **limits, sample_bytes=WIDE_MODE_BYTES.get(image.mode, 1))
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
    except MemoryError as exc:
        raise ImageTooLargeError("the image needs more memory to decode than this server has free") from exc
    except FroodError:
        raise
    except Exception as exc:  # a decoder's own failure on a hostile file: this image's error, never a 500
        raise ImageDecodeError(f"the image cannot be decoded ({type(exc).__name__}: {exc})") from exc
    rgb, _ = _downscale(rgb, max_width)
    return DecodedImage(rgb, declared, rgb.shape[1] / declared[0], fmt, name)
