"""Every bad input gets its typed error or a correct result; nothing crashes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.decode import decode_image
from errors import ImageDecodeError, ImageTooLargeError


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    return Image.fromarray(np.stack([x, x[::-1, ::-1], np.full_like(x, 90)], axis=2))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a huge size: the decompression-bomb guard must refuse it before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_zero_bytes_is_a_decode_error():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")


def test_truncated_jpeg_is_a_decode_error():
    data = encode(gradient(400, 300), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated|damaged"):
        decode_image(data[: len(data) // 2])


def test_text_file_is_a_decode_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image(path)


def test_huge_png_header_is_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="limit"):
        decode_image(png_header(20000, 20000))


def test_missing_path_is_a_decode_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="does not exist"):
        decode_image(tmp_path / "nope.png")


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(buffer.getvalue())
    assert decoded.rgb.shape == (32, 32, 3)
    assert decoded.rgb[16, 16, 0] > 200 and decoded.rgb[16, 16, 2] < 50


def test_cmyk_jpeg_becomes_rgb():
    decoded = decode_image(encode(gradient().convert("CMYK"), "JPEG", quality=95))
    assert decoded.rgb.shape == (48, 64, 3) and decoded.rgb.dtype == np.uint8
    reference = np.asarray(gradient(), dtype=np.int16)
    assert np.abs(decoded.rgb.astype(np.int16) - reference).mean() < 12


def test_sixteen_bit_grayscale_png_becomes_rgb():
    array = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.rgb[0, 0, 0] < 5 and decoded.rgb[-1, -1, 0] > 250


def test_alpha_is_composited_on_white():
    rgba = np.zeros((24, 24, 4), np.uint8)
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (decoded.rgb == 255).all()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_supported_formats_decode(fmt):
    decoded = decode_image(encode(gradient(), fmt))
    assert decoded.rgb.shape == (48, 64, 3)
    assert decoded.format in (fmt, "MPO")


def test_exif_orientation_is_applied():
    image = gradient(64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert decoded.rgb.shape == (64, 48, 3)


def test_wide_images_are_downscaled_to_the_limit():
    decoded = decode_image(np.zeros((400, 4000, 3), np.uint8), max_width=1920)
    assert decoded.rgb.shape == (192, 1920, 3) and decoded.original_size == (4000, 400)
    assert decoded.scale == pytest.approx(1920 / 4000)


def test_pil_and_array_inputs_are_accepted():
    image = gradient()
    assert decode_image(image).rgb.shape == (48, 64, 3)
    assert decode_image(np.asarray(image.convert("L"))).rgb.shape == (48, 64, 3)
    with pytest.raises(ImageDecodeError):
        decode_image(np.zeros((5,), np.uint8))


def test_oversized_upload_is_refused():
    with pytest.raises(ImageTooLargeError):
        decode_image(b"\xff" * 2048, max_bytes=1024)
