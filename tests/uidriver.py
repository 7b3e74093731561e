"""Driving the real UI in headless Chromium (Debian's) as an operator would: shared by the browser tests and
``make screenshots``."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

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
LOCALES = {"en": "en-US", "zh": "zh-CN"}
TABS = {
    "en": {"compare": "Compare", "extract": "Extract", "monitor": "Monitor", "gallery": "Gallery"},
    "zh": {"compare": "比对", "extract": "提取", "monitor": "监控", "gallery": "人脸库"},
}
# Enrolled by the Gallery test and the screenshots: two photos each; the group photo uses other photos of them
# plus one person who is not enrolled.
ENROL = {"angelina_jolie": ["img1.jpg", "img2.jpg"], "jennifer_aniston": ["img3.jpg", "img12.jpg"], "katy_perry": ["img26.jpg", "img27.jpg"]}
GROUP = ["img4.jpg", "img53.jpg", "img28.jpg", "img29.jpg"]  # Jolie, Aniston, Perry, and Matt Damon (not enrolled)
STRANGER = "matt_damon"
TIMEOUT_MS = 90_000


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        import pytest

        pytest.fail("Debian's chromium is required for the browser tests (apt-get install chromium); `make test` installs it")


def browser_session():
    """A headless Chromium for a test module's ``browser`` fixture (yields it, closes it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def open_page(browser, base_url: str, locale: str, width: int = 1280, height: int = 900):
    """A page in ``locale`` ("en" or "zh"): the browser's language and its Accept-Language header."""
    page = browser.new_page(locale=LOCALES[locale], viewport={"width": width, "height": height})
    page.goto(base_url + "/", wait_until="networkidle")
    return page


def open_tab(page, locale: str, tab: str) -> None:
    page.get_by_role("tab", name=TABS[locale][tab]).click()


def textbox(page, elem_id: str):
    return page.locator(f"#{elem_id}").locator("input, textarea").first


def choose(page, elem_id: str, option: str) -> None:
    """Pick ``option`` in a Gradio dropdown by its shown text."""
    page.locator(f"#{elem_id} input").first.click()
    page.get_by_role("option", name=option, exact=True).click()


def upload_image(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f"#{elem_id} img").first.wait_for(timeout=TIMEOUT_MS)


def click_and_wait(page, button_id: str, output_id: str) -> None:
    """Click, then wait until the output's progress tracker has come and gone (the event finished).

    Waiting for an output to exist is not enough: on a second run the first run's output is already there.
    """
    page.locator(f"#{button_id}").click()
    progress = page.locator(f"#{output_id} .progress-text")
    try:
        progress.first.wait_for(state="attached", timeout=5_000)
    except Exception:  # the event finished before the tracker was seen
        pass
    progress.first.wait_for(state="detached", timeout=TIMEOUT_MS)


def compare(page, image_a: Path, image_b: Path, source: str = "") -> None:
    """Upload two images, set the source, run the compare and wait for its result."""
    upload_image(page, "image-a", image_a)
    upload_image(page, "image-b", image_b)
    textbox(page, "compare-source").fill(source)
    click_and_wait(page, "compare-button", "compare-result")


def extract(page, image: Path, source: str = "") -> None:
    upload_image(page, "image-extract", image)
    textbox(page, "extract-source").fill(source)
    click_and_wait(page, "extract-button", "extract-result")


def group_photo(faces_dir: Path, files: list[str], path: Path, side: int = 360) -> Path:
    """A 2×2 mosaic of real photos (each fitted in a ``side`` square): one picture with several people."""
    mosaic = Image.new("RGB", (side * 2, side * 2), (240, 240, 240))
    for position, name in enumerate(files):
        with Image.open(faces_dir / name) as photo:
            tile = photo.convert("RGB")
            tile.thumbnail((side, side))
            x = (position % 2) * side + (side - tile.width) // 2
            y = (position // 2) * side + (side - tile.height) // 2
            mosaic.paste(tile, (x, y))
    mosaic.save(path, quality=90)
    return path


def create_gallery(page, name: str) -> None:
    textbox(page, "gallery-new-name").fill(name)
    page.locator("#gallery-create").click()


def enrol(page, label: str, paths: list[Path]) -> None:
    textbox(page, "gallery-label").fill(label)
    page.locator("#gallery-files input[type=file]").set_input_files([str(path) for path in paths])
    click_and_wait(page, "gallery-enrol", "gallery-status")


def identify(page, photo: Path) -> None:
    upload_image(page, "gallery-photo", photo)
    click_and_wait(page, "gallery-identify", "gallery-identified")


def image_sizes(page, selector: str) -> list[dict]:
    """Natural and rendered sizes of every image matched (what the operator actually sees)."""
    return page.locator(selector).evaluate_all(
        "images => images.map(i => ({natural: [i.naturalWidth, i.naturalHeight],"
        " shown: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]}))"
    )
