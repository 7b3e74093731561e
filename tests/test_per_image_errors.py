"""Per-image failures stay per-image (gallery builds, `frood embed`); anything else stops loudly; log lines are bounded."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from cli import frood as cli
from errors import AlignmentError
from logs import LOG_LINE_MAX, BoundedFormatter
from service import gallery as gallery_service


def test_degenerate_landmarks_skip_one_image_not_the_whole_gallery_build(pipeline, faces_dir, monkeypatch):
    real_detect_batch = pipeline.detector.detect_batch

    def detect_with_one_degenerate_image(rgbs):
        detections = real_detect_batch(rgbs)
        # the second image of the batch: every landmark in one point, as a broken detector could return
        detections[1] = [dataclasses.replace(d, landmarks=np.full((5, 2), 50.0, dtype=np.float32)) for d in detections[1]]
        return detections

    monkeypatch.setattr(pipeline.detector, "detect_batch", detect_with_one_degenerate_image)
    gallery = gallery_service.new_gallery(pipeline)
    items = [(faces_dir / name, name, name) for name in ("img1.jpg", "img2.jpg", "img3.jpg")]
    result = gallery_service.enrol(pipeline, gallery, items)
    assert result.labels == ["img1.jpg", "img3.jpg"] and len(gallery) == 2
    assert result.skipped[0]["image"] == "img2.jpg" and "degenerate" in result.skipped[0]["reason"]
    assert AlignmentError.code == "degenerate_landmarks" and AlignmentError.status == 422


def test_embed_exits_4_after_writing_every_line_when_inputs_failed(faces_dir, tmp_path, capsys):
    listing = tmp_path / "inputs.txt"
    (tmp_path / "text.jpg").write_text("not an image")
    listing.write_text(f"{faces_dir / 'img1.jpg'}\n{tmp_path / 'text.jpg'}\n{tmp_path / 'missing.jpg'}\n")
    output = tmp_path / "out.jsonl"
    assert cli.main(["embed", "--input", str(listing), "--output", str(output)]) == cli.EXIT_SOME_FAILED == 4
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["error"] is None for line in lines] == [True, False, False]
    assert lines[1]["error_code"] == "invalid_image"
    assert "(2 failed)" in capsys.readouterr().err


def test_embed_stops_with_exit_1_on_an_unexpected_error(faces_dir, tmp_path, monkeypatch, capsys):
    from engine.face.pipeline import FacePipeline

    real_analyze_batch = FacePipeline.analyze_batch

    def out_of_memory(self, images, names=None, thorough=False):
        if "img2.jpg" in list(names or []):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_analyze_batch(self, images, names, thorough=thorough)

    monkeypatch.setattr(FacePipeline, "analyze_batch", out_of_memory)
    listing = tmp_path / "inputs.txt"
    listing.write_text("\n".join(str(faces_dir / name) for name in ("img1.jpg", "img2.jpg", "img3.jpg")) + "\n")
    output = tmp_path / "out.jsonl"
    assert cli.main(["embed", "--input", str(listing), "--output", str(output), "--batch-size", "1"]) == cli.EXIT_UNEXPECTED == 1
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "CUDA out of memory" in err and "img2.jpg" in err
    assert not output.exists()  # never a complete-looking file with a fake per-file error in it
    assert len((tmp_path / "out.jsonl.part").read_text().splitlines()) == 1


@pytest.mark.parametrize("size", [10, 5_000, 100_000])
def test_log_lines_are_bounded_even_with_a_traceback(size):
    formatter = BoundedFormatter("[%(levelname)s] %(message)s")
    try:
        raise ValueError("k" * size)
    except ValueError:
        record = logging.LogRecord("frood.api", logging.ERROR, __file__, 1, "Unexpected error on %s", ("/" + "x" * size,), exc_info=True)
        import sys

        record.exc_info = sys.exc_info()
    lines = formatter.format(record).split("\n")
    assert lines[0].startswith("[ERROR] Unexpected error on /x")
    assert max(map(len, lines)) <= LOG_LINE_MAX
    assert any(line.startswith("ValueError: kkk") for line in lines)
