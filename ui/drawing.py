"""Numbered face boxes with labels drawn on a photo, in any script (Chinese names too), with PIL and a CJK font.

OpenCV's ``putText`` draws ASCII only: a Chinese name became ``????``. Here the label is drawn with Noto Sans
CJK (``fonts-noto-cjk``, installed by ``scripts/system-deps.sh``), which covers Latin and CJK. Labels start
with the face's number (the row of the table under the photo), sit above their box (else below, else inside)
and never cover another label. Colours keep white text readable (contrast >= 4.5:1, WCAG AA).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

log = logging.getLogger("frood.ui")

FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Latin only: the last resort before PIL's own
)
# Box and label colours: white text on each is >= 4.5:1 (tests/test_browser_ui.py measures the drawn pixels too).
COLOURS = {
    "known": (26, 127, 55),  # green, 5.0:1
    "unknown": (180, 35, 24),  # red, 6.5:1
    "used": (29, 78, 216),  # blue, 6.7:1: the face a result is about
    "other": (75, 85, 99),  # grey, 7.6:1: other faces of the photo
}
TEXT = (255, 255, 255)


@dataclass(frozen=True)
class Box:
    """One face to draw: its box in the image's pixels, its label (number first) and its kind (a COLOURS key)."""

    bbox: tuple[float, float, float, float]
    label: str
    kind: str = "known"


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """The first installed font that can draw Chinese (else Latin only, logged once)."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            if "DejaVu" in candidate:
                log.warning("No CJK font found (apt-get install fonts-noto-cjk): Chinese names on photos will not render")
            return candidate
    log.warning("No TrueType font found (apt-get install fonts-noto-cjk): labels on photos use PIL's default font")
    return None


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = font_path()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def font_size_for(width: int, height: int) -> int:
    """Label text size for a canvas: readable on a phone-sized preview of a large photo, never huge."""
    return int(min(40, max(14, round(max(width, height) / 42))))


def label_tile(text: str, size: int, kind: str = "known") -> Image.Image:
    """The label as drawn: white text on the kind's colour, padded (also used by the tests to find it)."""
    face = font(size)
    left, top, right, bottom = face.getbbox(text)
    pad = max(3, size // 5)
    tile = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), COLOURS[kind])
    ImageDraw.Draw(tile).text((pad - left, pad - top), text, font=face, fill=TEXT)
    return tile


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(tile: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int], taken: list) -> tuple[int, int]:
    """Top-left of a label: above the box, else below, else inside its top; moved down until it covers no other."""
    width, height = size
    x1, y1, x2, y2 = box
    w, h = tile.size
    x = min(max(0, x1), max(0, width - w))
    for y in (y1 - h, y2, y1):
        y = min(max(0, y), max(0, height - h))
        if not any(_overlaps((x, y, x + w, y + h), other) for other in taken):
            return x, y
    y = min(max(0, y1 - h), max(0, height - h))
    for _ in range(200):  # step down past the labels in the way (a crowd in one row)
        clash = [other for other in taken if _overlaps((x, y, x + w, y + h), other)]
        if not clash:
            break
        y = max(other[3] for other in clash) + 1
        if y + h > height:
            x, y = min(max(other[2] for other in clash) + 1, max(0, width - w)), max(0, y1 - h)
    return x, y


def draw_boxes(rgb: np.ndarray, boxes: list[Box], scale: float = 1.0) -> np.ndarray:
    """A copy of ``rgb`` with each box and its label (``scale`` maps original-pixel boxes onto ``rgb``)."""
    image = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    draw = ImageDraw.Draw(image)
    width, height = image.size
    thickness = max(2, round(max(width, height) / 400))
    size = font_size_for(width, height)
    pixel_boxes = [tuple(int(round(v * scale)) for v in item.bbox) for item in boxes]
    for item, (x1, y1, x2, y2) in zip(boxes, pixel_boxes):
        draw.rectangle((x1, y1, x2, y2), outline=COLOURS[item.kind], width=thickness)
    taken: list[tuple[int, int, int, int]] = []
    for item, pixel_box in zip(boxes, pixel_boxes):
        tile = label_tile(item.label, size, item.kind)
        x, y = _place(tile, pixel_box, (width, height), taken)
        image.paste(tile, (x, y))
        taken.append((x, y, x + tile.width, y + tile.height))
    return np.asarray(image)


def read_photo(path: str | Path, max_side: int | None = None) -> tuple[np.ndarray, float]:
    """A photo as RGB, upright (EXIF), shrunk to ``max_side``; returns it and its scale (shown / original)."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = 1.0
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    return np.asarray(image), scale
