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
    sizes = uidriver.image_sizes(page, "#compare-crops .face-tile img")
    assert len(sizes) == 2
    for size in sizes:
        assert size["natural"] == [NATIVE_CROP, NATIVE_CROP]
        assert 0 < size["shown"][0] <= 2 * NATIVE_CROP and 0 < size["shown"][1] <= 2 * NATIVE_CROP, sizes
    assert len(uidriver.image_sizes(page, "#compare-crops .overview-tile img")) == 2  # each photo, its face used boxed
    captions = page.locator("#compare-crops .face-tile figcaption").all_inner_texts()
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
    expect(summary).to_contain_text("Below the webhook line (quality < 0.50, AUTO_REJECT_THRESHOLD)")
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
    uidriver.create_gallery(page, "front-desk")
    status = page.locator("#gallery-status")
    expect(status).to_contain_text("Gallery front-desk created", timeout=uidriver.TIMEOUT_MS)

    for position, (label, files) in enumerate(uidriver.ENROL.items()):
        paths = [faces_dir / name for name in files] + ([blank] if position == 0 else [])
        uidriver.enrol(page, label, paths)
        expect(status).to_contain_text(f"{label}: 2 of {len(paths)} photos enrolled", timeout=uidriver.TIMEOUT_MS)
        if position == 0:
            expect(status).to_contain_text("Skipped")
            expect(status).to_contain_text("blank.png: No face found")
        expect(uidriver.textbox(page, "gallery-label")).to_have_value("")  # the next person starts from an empty name
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

    # Remove one person, after a confirmation: their face in the photo becomes unknown.
    uidriver.choose(page, "gallery-remove-pick", "katy_perry")
    page.locator("#gallery-remove").click()
    question = page.locator("#gallery-confirm-question")
    expect(question).to_contain_text("Remove katy_perry and their 2 faces", timeout=uidriver.TIMEOUT_MS)
    expect(listing.locator(".gallery-identity")).to_have_count(3)  # asking removes nothing
    page.locator("#gallery-confirm-yes").click()
    expect(status).to_contain_text("katy_perry removed (2 faces)", timeout=uidriver.TIMEOUT_MS)
    expect(page.locator("#gallery-confirm-yes")).to_be_hidden()
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


# --- issue 25: what an operator saw in Chromium ----------------------------------------------------------------------

RESULTS = ["#compare-result", "#compare-crops", "#extract-result", "#extract-components", "#monitor-summary", "#monitor-per-source",
           "#monitor-thumbs", "#gallery-status", "#gallery-identified", "#gallery-confirm-question"]


def english_words(texts: list[str]) -> list[str]:
    """Words of three letters or more with a lower-case letter (setting names and acronyms in capitals are kept),
    except the product and standard names the page keeps."""
    words = {word for text in texts for word in re.findall(r"[A-Za-z][A-Za-z0-9]{2,}", text)}
    return sorted(word for word in words if not word.isupper() and re.sub(r"\d", "", word) not in uidriver.KEPT_NAMES)


def test_the_chinese_page_writes_no_english_in_results_errors_charts_tables_and_gradios_own_words(app, browser, faces_dir, tmp_path):
    """zh-CN everywhere: results, errors (a text file named .jpg), chart axes, table headers, Gradio's tooltips,
    progress text and the browser tab's title."""
    from playwright.sync_api import expect

    fake = tmp_path / "notes.jpg"
    fake.write_text("this is a text file, not a photo")
    page = uidriver.open_page(browser, app.base_url, "zh")
    labels = page.locator("body").inner_text()  # before any result: the page's own words (later it holds other tests' data)
    assert english_words([labels]) == [], english_words([labels])
    seen: list[str] = []
    uidriver.compare(page, faces_dir / "img1.jpg", faces_dir / "img2.jpg", source="g1")
    expect(page.locator("#compare-result")).to_contain_text("相似度", timeout=uidriver.TIMEOUT_MS)
    seen += [page.locator(selector).inner_text() for selector in RESULTS[:2]]

    uidriver.open_tab(page, "zh", "extract")
    page.locator("#image-extract input[type=file]").set_input_files(str(fake))
    uidriver.click_and_wait(page, "extract-button", "extract-result")
    error = page.locator("#extract-result").inner_text()
    assert "无法读取该图像" in error and "Error" not in page.locator("body").inner_text(), error  # ours, not Gradio's bare "Error"
    seen.append(error)
    page.locator("#image-extract button[aria-label='移除图像'], #image-extract button[title='移除图像']").first.click()
    uidriver.extract(page, faces_dir / "img3.jpg", source="g1")
    expect(page.locator("#extract-result")).to_contain_text("质量", timeout=uidriver.TIMEOUT_MS)
    expect(page.locator("#extract-components")).to_contain_text("分项", timeout=uidriver.TIMEOUT_MS)
    seen += [page.locator(selector).inner_text() for selector in RESULTS[2:4]]
    shown_json = page.locator("#extract-json").inner_text()
    assert '"en"' not in shown_json and "quality_score" in shown_json, shown_json[:400]  # one language per reason
    assert shown_json.index("quality_score") < shown_json.index("feature"), "the quality comes before the 512 numbers"

    uidriver.open_tab(page, "zh", "monitor")
    page.locator("#monitor-refresh").click()
    expect(page.locator("#monitor-summary")).to_contain_text("已处理", timeout=uidriver.TIMEOUT_MS)
    page.locator("#monitor-tab .js-plotly-plot").nth(1).wait_for(timeout=uidriver.TIMEOUT_MS)
    expect(page.locator("#monitor-per-source")).to_contain_text("g1")
    uidriver.choose(page, "monitor-source", "g1")  # other tests' sources (gate-1, api) are data, not the app's words
    expect(page.locator("#monitor-per-source tbody tr")).to_have_count(1, timeout=uidriver.TIMEOUT_MS)
    expect(page.locator("#monitor-heatmap")).to_contain_text("· g1", timeout=uidriver.TIMEOUT_MS)  # the charts follow too
    page.wait_for_timeout(500)
    charts = uidriver.chart_texts(page)
    assert any("小时" in text for text in charts) and any("%" in text for text in charts), charts  # axis titles, rate in percent
    assert any("拒绝阈值" in text for text in charts), "the reject threshold line is drawn"
    seen += charts + [page.locator(selector).inner_text() for selector in RESULTS[4:6]]

    uidriver.open_tab(page, "zh", "gallery")
    uidriver.create_gallery(page, "bad/name")
    expect(page.locator("#gallery-status")).to_contain_text("人脸库名称须为", timeout=uidriver.TIMEOUT_MS)
    status = page.locator("#gallery-status").inner_text()
    assert "**" not in status and "姓名" not in status, status  # no raw Markdown, and not called a person's name
    seen.append(status)

    leftovers = english_words(seen)
    assert leftovers == [], leftovers
    gradio = [text for text in uidriver.gradio_words(page) if not re.fullmatch(r"[\w.-]+\.\w+", text)]  # file names are data
    assert english_words(gradio) == [], english_words(gradio)
    assert "人脸识别" in page.title()
    assert "：" in page.locator("#extract-result").inner_text()  # Chinese punctuation in Chinese text
    page.close()


@pytest.mark.parametrize("locale", ["en", "zh"])
def test_every_coloured_control_reads_at_least_4_5_to_1(app, browser, faces_dir, locale):
    """WCAG AA from the rendered styles: buttons of every variant, the selected tab, quality badges, warnings."""
    page = uidriver.open_page(browser, app.base_url, locale)
    uidriver.compare(page, faces_dir / "img1.jpg", faces_dir / "img2.jpg")
    page.locator("#compare-result .frood-badge").first.wait_for(timeout=uidriver.TIMEOUT_MS)
    measured = uidriver.contrasts(page)
    for tab in ("extract", "monitor", "gallery"):
        uidriver.open_tab(page, locale, tab)
        page.wait_for_timeout(500)
        measured += uidriver.contrasts(page)
    coloured = [item for item in measured if item["coloured"]]
    assert len(coloured) >= 5, measured  # primary and stop buttons, the selected tab, the badges
    weak = [item for item in coloured if item["ratio"] < 4.5]
    assert weak == [], weak
    page.close()


def test_a_chinese_name_is_drawn_on_the_identified_photo_a_photo_removed_the_gallery_renamed_and_deleted_after_confirming(app, browser, faces_dir):
    """The label on the photo is the CJK glyphs (matched pixel for pixel), not '??'; one photo removed, after a question."""
    import io

    import cv2
    import numpy as np
    from playwright.sync_api import expect

    from ui import drawing

    page = uidriver.open_page(browser, app.base_url, "zh")
    uidriver.open_tab(page, "zh", "gallery")
    uidriver.create_gallery(page, "desk-1")
    expect(page.locator("#gallery-status")).to_contain_text("人脸库 desk-1 已创建", timeout=uidriver.TIMEOUT_MS)
    uidriver.create_gallery(page, "desk-1")
    expect(page.locator("#gallery-status")).to_contain_text("已有名为 desk-1 的人脸库", timeout=uidriver.TIMEOUT_MS)
    uidriver.enrol(page, "张伟", [faces_dir / "img1.jpg", faces_dir / "img2.jpg"])
    expect(page.locator("#gallery-status")).to_contain_text("张伟", timeout=uidriver.TIMEOUT_MS)
    uidriver.identify(page, faces_dir / "img4.jpg")
    row = page.locator("#gallery-identified tbody tr").first.inner_text()
    assert "张伟" in row, row
    score = float(re.findall(r"\d\.\d{3}", row)[0])
    page.locator("#gallery-drawn img").wait_for(timeout=uidriver.TIMEOUT_MS)
    photo = np.asarray(Image.open(io.BytesIO(uidriver.image_bytes(page, "#gallery-drawn img"))).convert("RGB"))
    size = drawing.font_size_for(photo.shape[1], photo.shape[0])

    def best(text: str) -> float:
        tile = np.asarray(drawing.label_tile(text, size, "known"))
        return float(cv2.matchTemplate(photo, tile, cv2.TM_SQDIFF_NORMED).min())

    scores = [f"{value:.2f}" for value in (score - 0.005, score, score + 0.005)]
    drawn = min(best(f"1 张伟 {value}") for value in scores)
    question_marks = min(best(f"1 ?? {value}") for value in scores)
    assert drawn < 0.01 < question_marks, (drawn, question_marks)

    # Remove one photo: asked first, nothing removed on the question, one fewer face after "yes".
    listing = page.locator("#gallery-identities")
    expect(listing.locator("img")).to_have_count(2, timeout=uidriver.TIMEOUT_MS)
    page.locator("#gallery-photo-pick input").first.click()
    page.get_by_role("option").first.click()
    page.locator("#gallery-photo-remove").click()
    expect(page.locator("#gallery-confirm-question")).to_contain_text("确定从 desk-1 中删除 张伟 的照片", timeout=uidriver.TIMEOUT_MS)
    expect(listing.locator("img")).to_have_count(2)
    page.locator("#gallery-confirm-yes").click()
    expect(page.locator("#gallery-status")).to_contain_text("已删除 张伟 的照片", timeout=uidriver.TIMEOUT_MS)
    expect(listing.locator("img")).to_have_count(1)

    # Rename the gallery (service.gallery.rename_gallery, as the HTTP API), then delete it after confirming.
    uidriver.textbox(page, "gallery-rename-to").fill("hall-2")
    page.locator("#gallery-rename").click()
    expect(page.locator("#gallery-status")).to_contain_text("人脸库已重命名为 hall-2", timeout=uidriver.TIMEOUT_MS)
    expect(page.locator("#gallery-pick input").first).to_have_value("hall-2")
    names = [gallery["name"] for gallery in requests.get(f"{app.base_url}/galleries", timeout=30).json()["galleries"]]
    assert "hall-2" in names and "desk-1" not in names, names
    page.locator("#gallery-delete").click()
    expect(page.locator("#gallery-confirm-question")).to_contain_text("确定删除人脸库 hall-2", timeout=uidriver.TIMEOUT_MS)
    page.locator("#gallery-confirm-no").click()
    expect(page.locator("#gallery-status")).to_contain_text("未删除任何内容", timeout=uidriver.TIMEOUT_MS)
    assert "hall-2" in [gallery["name"] for gallery in requests.get(f"{app.base_url}/galleries", timeout=30).json()["galleries"]]
    uidriver.ask_and_confirm(page, "gallery-delete")
    expect(page.locator("#gallery-status")).to_contain_text("人脸库 hall-2 已删除", timeout=uidriver.TIMEOUT_MS)
    assert "hall-2" not in [gallery["name"] for gallery in requests.get(f"{app.base_url}/galleries", timeout=30).json()["galleries"]]
    page.close()
