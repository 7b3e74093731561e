"""One browser test: headless Chromium (Debian's) drives the real UI like an operator would."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.apphelpers import RunningApp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def app(tmp_path_factory, faces_dir):
    running = RunningApp(tmp_path_factory.mktemp("browser-app")).start()
    yield running
    running.stop()


def test_compare_two_photos_then_see_the_count_in_monitor(app, faces_dir, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required for the browser test (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(locale="en-US")
        page.goto(app.base_url + "/", wait_until="networkidle")
        page.locator("#image-a input[type=file]").set_input_files(str(faces_dir / "img1.jpg"))
        page.locator("#image-b input[type=file]").set_input_files(str(faces_dir / "img2.jpg"))
        page.locator("#image-a img").first.wait_for(timeout=30_000)
        page.locator("#image-b img").first.wait_for(timeout=30_000)
        page.locator("#compare-button").click()
        result = page.locator("#compare-result")
        expect(result).to_contain_text("High-confidence match", timeout=60_000)
        expect(result).to_contain_text(re.compile(r"Similarity / 相似度:\s*0\.\d{3}"))
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        page.get_by_role("tab", name="Monitor").click()
        page.locator("#monitor-refresh").click()
        expect(page.locator("#monitor-summary")).to_contain_text("Processed / 已处理: 2", timeout=30_000)
        page.screenshot(path=str(tmp_path / "monitor.png"), full_page=True)
        browser.close()


def test_chinese_locale_shows_chinese_labels(app):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN")
        page.goto(app.base_url + "/", wait_until="networkidle")
        expect(page.get_by_role("tab", name="比对")).to_be_visible(timeout=30_000)
        expect(page.get_by_role("tab", name="监控")).to_be_visible()
        browser.close()
