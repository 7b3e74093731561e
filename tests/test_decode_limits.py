"""Decode limits are read from the header, before a pixel is allocated: each hostile image gets its own
typed error (400 / 413) instead of a 500 that fails every request of its micro-batch, and the images the
limits let through are ones the face detector can take in a batch. All images are generated here."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import engine.decode as decode
from engine.decode import MAX_ASPECT, MIN_SIDE, decode_image
from errors import ImageDecodeError, ImageTooLargeError

ROOT = Path(__file__).resolve().parents[1]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(width: int, height: int, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A complete, valid PNG of zeros, compressed a row at a time (a 7000×7000 16-bit one is ~95 KB and the
    test never holds its pixels)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def jpeg_with_frame(width: int, height: int) -> bytes:
    """A 64×48 JPEG whose frame header (SOF0) declares another size."""
    data = bytearray(encode(Image.new("RGB", (64, 48), (120, 90, 60)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def photo(width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


# -- each hostile class of the issue gets its typed error ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(encode(Image.new("RGB", (1, 1)), "PNG"), ImageDecodeError, "1×1 px; the smallest side must be at least 20 px", id="1x1-png"),
        pytest.param(encode(Image.new("RGB", (1, 1)), "JPEG"), ImageDecodeError, "smallest side", id="1x1-jpeg"),
        pytest.param(encode(Image.new("RGB", (19, 400)), "PNG"), ImageDecodeError, "smallest side", id="19px-side"),
        pytest.param(encode(Image.new("RGB", (10000, 100)), "PNG"), ImageDecodeError, "100:1; the longer side may be at most 20 times", id="10000x100-strip"),
        pytest.param(encode(Image.new("L", (65500, 300)), "JPEG"), ImageDecodeError, "at most 20 times", id="65500x300-jpeg"),
        pytest.param(png(100000, 1), ImageDecodeError, "100000×1 px; the smallest side", id="png-100000x1"),
        pytest.param(jpeg_with_frame(64, 0), ImageDecodeError, "not an image", id="jpeg-frame-height-0"),
        pytest.param(jpeg_with_frame(0, 48), ImageDecodeError, "not an image", id="jpeg-frame-width-0"),
        pytest.param(jpeg_with_frame(65500, 48), ImageDecodeError, "at most 20 times", id="jpeg-frame-65500x48"),
        pytest.param(jpeg_with_frame(1, 1), ImageDecodeError, "smallest side", id="jpeg-frame-1x1"),
        pytest.param(jpeg_with_frame(65500, 65500), ImageTooLargeError, "limit|bomb", id="jpeg-frame-65500x65500"),
        pytest.param(png(7000, 7000, bit_depth=16), ImageTooLargeError, "16-bit images is 25.0 MP", id="png16-7000x7000"),
    ],
)
def test_hostile_images_get_their_typed_error(data, error, message):
    with pytest.raises(error, match=message):
        decode_image(data)


def test_a_jpeg_frame_larger_than_its_data_is_its_declared_size_or_a_typed_error():
    try:
        decoded = decode_image(jpeg_with_frame(640, 480))
    except ImageDecodeError:
        return
    assert decoded.rgb.shape == (480, 640, 3)  # libjpeg fills what the data lacks: a valid size for a batch


def test_arrays_and_pil_images_meet_the_same_limits():
    with pytest.raises(ImageDecodeError, match="smallest side"):
        decode_image(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="at most 20 times"):
        decode_image(np.zeros((100, 10000, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="at most 20 times"):
        decode_image(Image.new("RGB", (300, 6500)))
    with pytest.raises(ImageTooLargeError, match="16-bit"):
        decode_image(Image.new("I;16", (200, 100)), max_pixels=30_000)


def test_limits_are_keyword_parameters_that_can_be_turned_off():
    assert decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), min_side=1).rgb.shape == (1, 1, 3)
    assert decode_image(np.zeros((100, 10000, 3), np.uint8), max_aspect=None).original_size == (10000, 100)
    with pytest.raises(ImageDecodeError, match="at least 64 px"):
        decode_image(encode(Image.new("RGB", (48, 48)), "PNG"), min_side=64)


def test_the_limits_are_inclusive():
    for width, height in [(MIN_SIDE, MIN_SIDE), (MIN_SIDE * int(MAX_ASPECT), MIN_SIDE), (40, 40 * int(MAX_ASPECT))]:
        assert decode_image(encode(Image.new("RGB", (width, height)), "PNG")).original_size == (width, height)
    with pytest.raises(ImageDecodeError):
        decode_image(encode(Image.new("RGB", (MIN_SIDE * int(MAX_ASPECT) + 1, MIN_SIDE)), "PNG"))


# -- high bit depth: the limit scales with the bytes per sample, checked from the header --------------


def test_sixteen_bit_images_count_twice_against_the_pixel_limit():
    data = png(300, 100, bit_depth=16)  # 30 000 px, 60 000 bytes of samples
    with pytest.raises(ImageTooLargeError, match="300×100 .* at 16 bits per sample"):
        decode_image(data, max_pixels=50_000)
    assert decode_image(png(300, 100), max_pixels=50_000).rgb.shape == (100, 300, 3)  # the same at 8 bits passes
    assert decode_image(data, max_pixels=60_000).rgb.shape == (100, 300, 3)


def test_a_16_bit_7000x7000_png_is_refused_from_its_header_without_allocating():
    """In a fresh process (its peak RSS is its own): the peak must not rise by 100 MB (it rose by ~870 MB)."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_decode_limits import png
        from engine.decode import decode_image
        from errors import ImageTooLargeError

        def peak_kib():
            return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))

        data = png(7000, 7000, bit_depth=16)
        before = peak_kib()
        try:
            decode_image(data)
            print("decoded")
        except ImageTooLargeError:
            print("refused", len(data), peak_kib() - before)
        """
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux) to read the peak RSS")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    verdict, size, grown_kib = out.stdout.split()
    assert verdict == "refused" and int(size) < 200_000, out.stdout + out.stderr
    assert int(grown_kib) < 100 * 1024, f"peak RSS grew by {int(grown_kib) / 1024:.0f} MB"


def test_sixteen_bit_values_are_scaled_as_before():
    array = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    expected = (array.astype(np.int64) * 255 // 65535).astype(np.uint8)
    assert np.array_equal(decoded.rgb, np.repeat(expected[:, :, None], 3, axis=2))


def test_alpha_compositing_in_bands_equals_the_whole_image_arithmetic(monkeypatch):
    rgba = np.random.default_rng(3).integers(0, 256, size=(97, 64, 4), dtype=np.uint8)
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    expected = (rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    monkeypatch.setattr(decode, "ALPHA_CHUNK_PIXELS", 64 * 10)  # 10 rows a band: 10 bands, the last short
    assert np.array_equal(decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG")).rgb, expected)


# -- valid photos are unchanged, and what passes can share a detector batch ---------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_valid_photo_decodes_as_plain_pil_does(fmt):
    data = encode(photo(), fmt, **({"quality": 92} if fmt != "PNG" else {}))
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    decoded = decode_image(data)
    assert np.array_equal(decoded.rgb, reference) and decoded.original_size == (640, 480) and decoded.scale == 1.0


def test_a_shared_photo_decodes_as_plain_pil_does(faces_dir):
    path = sorted(faces_dir.glob("*.jpg"))[0]
    decoded = decode_image(path)
    image = Image.open(path)
    reference = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    if reference.shape[1] <= 1920:
        assert np.array_equal(decoded.rgb, reference)
    assert decoded.original_size == ImageOps.exif_transpose(image).size


def test_the_smallest_and_longest_images_allowed_still_pass_the_detector_in_one_batch():
    """The limits' reason: MTCNN (min face 20 px, longer side shrunk to 640) raised on an image under them,
    failing every image of its batch. Each image at a limit, beside a normal photo, gets an answer."""
    from engine.face.detect import MTCNNDetector

    shapes = [(MIN_SIDE, MIN_SIDE), (MIN_SIDE, MIN_SIDE * int(MAX_ASPECT)), (MIN_SIDE * int(MAX_ASPECT), MIN_SIDE), (640, 12800), (12800, 640)]
    images = [decode_image(np.full((height, width, 3), 128, np.uint8)).rgb for height, width in shapes]
    results = MTCNNDetector().detect_batch([np.asarray(photo())] + images)
    assert len(results) == len(shapes) + 1


def test_hostile_images_in_a_batch_fail_alone(pipeline, faces_dir):
    """The issue's failure: one of these in a micro-batch made every request of the batch fail (500)."""
    good = faces_dir / "img1.jpg"
    hostile = [
        encode(Image.new("RGB", (1, 1)), "PNG"),
        encode(Image.new("RGB", (10000, 100)), "PNG"),
        png(100000, 1),
        jpeg_with_frame(65500, 48),
        np.zeros((19, 19, 3), np.uint8),
    ]
    results = pipeline.analyze_batch([good, *hostile, good.read_bytes()])
    assert all(isinstance(result, ImageDecodeError) for result in results[1:-1]), results
    assert results[0].faces and results[-1].faces
