"""The UI's Extract handler in-process (real model, real photo): failures after the feature, and its download files."""

from __future__ import annotations

import os
import tempfile
import time
from types import SimpleNamespace

import pytest

import app
from recognition import service

ENGLISH = SimpleNamespace(headers={"accept-language": "en-US,en;q=0.9"})
CHINESE = SimpleNamespace(headers={"accept-language": "zh-CN,zh;q=0.9"})


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_failing_heatmap_keeps_the_feature_and_says_so(faces_dir, private_tmp, monkeypatch):
    def broken_heatmap(*args, **kwargs):
        raise RuntimeError("simulated heatmap failure")

    monkeypatch.setattr(service, "heatmap", broken_heatmap)
    text, payload, files, heat = app.on_extract(str(faces_dir / "img3.jpg"), False, "", ENGLISH)
    assert heat is None
    assert len(payload["feature"]) == 512 and len(files) == 2
    assert "heatmap could not be computed" in text and "Quality" in text
    text_zh = app.on_extract(str(faces_dir / "img3.jpg"), False, "", CHINESE)[0]
    assert "质量热力图计算失败" in text_zh and "heatmap" not in text_zh


def test_downloads_go_to_one_folder_whose_old_requests_are_removed(faces_dir, private_tmp):
    for _ in range(2):
        files = app.on_extract(str(faces_dir / "img3.jpg"), False, "", ENGLISH)[2]
        assert all(os.path.isfile(path) for path in files)
    assert [path.name for path in private_tmp.iterdir()] == [app.DOWNLOADS_DIR_NAME]
    requests = list((private_tmp / app.DOWNLOADS_DIR_NAME).iterdir())
    assert len(requests) == 2
    old = time.time() - app.DOWNLOADS_KEEP_S - 60
    for folder in requests:
        os.utime(folder, (old, old))
    app.on_extract(str(faces_dir / "img3.jpg"), False, "", ENGLISH)
    remaining = list((private_tmp / app.DOWNLOADS_DIR_NAME).iterdir())
    assert len(remaining) == 1 and remaining[0] not in requests
