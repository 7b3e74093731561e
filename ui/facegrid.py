"""Small face images shown at their native size in a wrapping grid, a caption under each (HTML for ``gr.HTML``).

A gallery component scales images to the page width: a 112×112 crop became one blurred fragment filling
the screen. Here each image keeps its pixel size (``width``/``height`` attributes, no CSS scaling), so
what the operator sees is what the model saw.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

GRID_STYLE = "display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start"
FIGURE_STYLE = "margin:0;max-width:{width}px"
IMAGE_STYLE = "width:{width}px;height:{height}px;max-width:none;image-rendering:auto;border:1px solid #ccc;display:block"
CAPTION_STYLE = "font-size:12px;line-height:1.3;margin-top:4px;word-wrap:break-word"
MIN_CAPTION_WIDTH = 112


def _data_uri(rgb: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure(rgb: np.ndarray, caption_lines: list[str], css_class: str = "face-tile") -> str:
    """One image at native size with its caption lines (escaped)."""
    height, width = rgb.shape[:2]
    caption = "<br>".join(html.escape(line) for line in caption_lines)
    return (
        f'<figure class="{css_class}" style="{FIGURE_STYLE.format(width=max(width, MIN_CAPTION_WIDTH))}">'
        f'<img src="{_data_uri(rgb)}" width="{width}" height="{height}" style="{IMAGE_STYLE.format(width=width, height=height)}" alt="">'
        f'<figcaption style="{CAPTION_STYLE}">{caption}</figcaption></figure>'
    )


def grid(figures: list[str], elem_class: str = "face-grid") -> str:
    return f'<div class="{elem_class}" style="{GRID_STYLE}">{"".join(figures)}</div>'


def read_rgb(path: str | Path) -> np.ndarray | None:
    """A stored thumbnail as RGB, or None when it is gone (pruned, or never kept)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError):
        return None


def message(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"
