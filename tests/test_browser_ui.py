"""Browser tests: headless Chromium (Debian's) drives the real UI in English and Chinese like an operator would."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests import uidriver
from tests.apphelpers import RunningApp

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")
NATIVE_CROP = 112
SHADOWED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dark" / "yaleB01" / "yaleB01_P00A+110E+65.png"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-app")


@pytest.fixture(scope="module")
def app(data_dir, faces_dir):
    uidriver.require_chromium()
    running = RunningApp(data_dir).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(app):
    yield from uidriver.browser_session()


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_compare_speaks_only_the_locale_language_and_shows_crops_at_native_size(app, browser, faces_dir, locale):
    from playwright.sync_api import expect

    page = uidriver.open_page(browser, app.base_url, locale)
    uidriver.compare(page, faces_dir / "img1.jpg", faces_dir / "img2.jpg")
    result = page.locator("#compare-result")
    expect(result).to_contain_text("High-confidence match" if locale == "en" else "高置信度匹配", timeout=uidriver.TIMEOUT_MS)
    text = result.inner_text() + "\n" + page.locator("#compare-crops").inner_text()
    if locale == "en":
        assert "Similarity" in text and not CJK.search(text), text
    else:
        assert "相似度" in text and not ENGLISH_WORD.search(text), text
    sizes = uidriver.image_sizes(page, "#compare-crops img")
    assert len(sizes) == 2
    for size in sizes:
        assert size["natural"] == [NATIVE_CROP, NATIVE_CROP]
        assert 0 < size["shown"][0] <= 2 * NATIVE_CROP and 0 < size["shown"][1] <= 2 * NATIVE_CROP, sizes
    captions = page.locator("#compare-crops figcaption").all_inner_texts()
    assert len(captions) == 2 and all(("Quality" if locale == "en" else "质量") in caption for caption in captions)
    page.close()


def test_monitor_source_filter_changes_the_numbers_and_names_both_thresholds(app, browser, faces_dir, tmp_path):
    from playwright.sync_api import expect

    page = uidriver.open_page(browser, app.base_url, "en")
    uidriver.compare(page, faces_dir / "img8.jpg", faces_dir / "img9.jpg", source="gate-1")
    if not SHADOWED.is_file():
        pytest.skip(f"needs the shared photo set at {SHADOWED}")
    uidriver.open_tab(page, "en", "extract")
    uidriver.extract(page, SHADOWED, source="gate-1")  # a face in deep shadow: low quality, its thumbnail is kept
    everyone = app.stats()["count"]
    assert everyone > 3

    uidriver.open_tab(page, "en", "monitor")
    page.locator("#monitor-refresh").click()
    summary = page.locator("#monitor-summary")
    expect(summary).to_contain_text(f"Processed: {everyone}", timeout=uidriver.TIMEOUT_MS)
    expect(summary).to_contain_text("Low quality (quality < 0.40, reject threshold)")
    expect(summary).to_contain_text("Sent to the reject webhook (quality < 0.50, AUTO_REJECT_THRESHOLD)")
    expect(page.locator("#monitor-per-source")).to_contain_text("gate-1")

    uidriver.choose(page, "monitor-source", "gate-1")
    expect(summary).to_contain_text("Processed: 3", timeout=uidriver.TIMEOUT_MS)
    assert f"Processed: {everyone}" not in summary.inner_text()
    thumbs = page.locator("#monitor-thumbs img")
    thumbs.first.wait_for(timeout=uidriver.TIMEOUT_MS)
    for size in uidriver.image_sizes(page, "#monitor-thumbs img"):
        assert max(size["natural"]) <= 128 and size["shown"][0] <= 2 * size["natural"][0] and size["shown"][1] <= 2 * size["natural"][1]
    caption = page.locator("#monitor-thumbs figcaption").first.inner_text()
    assert re.search(r"\d\d:\d\d:\d\d · Quality 0\.\d\d", caption) and "gate-1" in caption and "No face found" in caption
    page.close()


def test_gallery_tab_enrols_three_people_and_identifies_them_in_a_group_photo(app, browser, data_dir, faces_dir, tmp_path):
    from playwright.sync_api import expect

    blank = tmp_path / "blank.png"
    Image.new("RGB", (240, 240), (128, 128, 128)).save(blank)
    photo = uidriver.group_photo(faces_dir, uidriver.GROUP, tmp_path / "group.jpg")
    page = uidriver.open_page(browser, app.base_url, "en")
    uidriver.open_tab(page, "en", "gallery")
    uidriver.create_gallery(page, "front desk")
    status = page.locator("#gallery-status")
    expect(status).to_contain_text("Gallery front desk created", timeout=uidriver.TIMEOUT_MS)

    for position, (label, files) in enumerate(uidriver.ENROL.items()):
        paths = [faces_dir / name for name in files] + ([blank] if position == 0 else [])
        uidriver.enrol(page, label, paths)
        expect(status).to_contain_text(f"{label}: 2 of {len(paths)} photos enrolled", timeout=uidriver.TIMEOUT_MS)
        if position == 0:
            expect(status).to_contain_text("Skipped")
            expect(status).to_contain_text("blank.png: no face found")
    listing = page.locator("#gallery-identities")
    expect(listing.locator(".gallery-identity")).to_have_count(3)
    assert len(uidriver.image_sizes(page, "#gallery-identities img")) == 6

    uidriver.identify(page, photo)
    rows = page.locator("#gallery-identified tbody tr").all_inner_texts()
    assert len(rows) == 4, rows
    named = [row for row in rows if any(label in row for label in uidriver.ENROL)]
    assert sorted(label for label in uidriver.ENROL if any(label in row for row in named)) == sorted(uidriver.ENROL)
    assert sum("unknown" in row for row in rows) == 1, rows
    expect(page.locator("#gallery-drawn img")).to_be_visible()

    # The same gallery answers over the HTTP API (same index storage).
    key = next(path.name for path in (data_dir / "indexes").iterdir() if path.is_dir())
    answer = requests.post(
        f"{app.base_url}/face-recognition-infer", json={"image": base64.b64encode(photo.read_bytes()).decode(), "indexKey": key}, timeout=120
    ).json()
    labels = sorted(hit["label"] for face in answer["result"]["faces"] for hit in face["recResults"])
    assert labels == sorted(uidriver.ENROL)

    # Remove one person: their face in the photo becomes unknown.
    uidriver.choose(page, "gallery-remove-pick", "katy_perry")
    page.locator("#gallery-remove").click()
    expect(status).to_contain_text("katy_perry removed (2 faces)", timeout=uidriver.TIMEOUT_MS)
    expect(listing.locator(".gallery-identity")).to_have_count(2)
    uidriver.click_and_wait(page, "gallery-identify", "gallery-identified")
    expect(page.locator("#gallery-identified")).not_to_contain_text("katy_perry", timeout=uidriver.TIMEOUT_MS)
    rows = page.locator("#gallery-identified tbody tr").all_inner_texts()
    assert sum("unknown" in row for row in rows) == 2, rows
    page.close()

    chinese = uidriver.open_page(browser, app.base_url, "zh")
    uidriver.open_tab(chinese, "zh", "gallery")
    expect(chinese.locator("#gallery-identities .gallery-identity")).to_have_count(2, timeout=uidriver.TIMEOUT_MS)
    uidriver.identify(chinese, photo)
    table = chinese.locator("#gallery-identified").inner_text()
    assert table.count("未知") == 2 and "unknown" not in table and "姓名" in table, table
    chinese.close()
