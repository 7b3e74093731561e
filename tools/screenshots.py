"""``make screenshots``: every tab of the real UI in English and Chinese, on a desktop and a 390×844 phone, saved to
``docs/screenshots/`` (``<tab>-<en|zh>.png`` and ``<tab>-<en|zh>-phone.png``).

Starts the app on a free loopback port with a throw-away data folder, does what an operator would
(compare, extract, a few sources, a gallery of three people and a group photo), then photographs each
tab in both locales with headless Chromium. Needs the shared photos (``../shared/data/faces``), Debian's
chromium and CJK fonts (``fonts-noto-cjk``) so the Chinese text renders. PNGs are palette-quantised to
stay small enough to commit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import uidriver  # noqa: E402 (the project root is put on the path first)
from tests.apphelpers import RunningApp  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
SHADOWED = ROOT.parent / "shared" / "data" / "dark" / "yaleB01" / "yaleB01_P00A+110E+65.png"
OUTPUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 300 * 1024


def save_small(page, path: Path) -> int:
    """A full-page screenshot as a 256-colour PNG (UI screenshots lose nothing visible); returns its size."""
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=str(raw), full_page=True)
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
    return path.stat().st_size


def seed(page, work: Path) -> Path:
    """Traffic from three sources and a gallery of three people; returns the group photo."""
    uidriver.compare(page, FACES / "img1.jpg", FACES / "img2.jpg", source="gate-1")
    uidriver.compare(page, FACES / "img8.jpg", FACES / "img33.jpg", source="gate-1")
    uidriver.open_tab(page, "en", "extract")
    for name in ("img3.jpg", "img26.jpg"):
        uidriver.extract(page, FACES / name, source="gate-2")
    if SHADOWED.is_file():
        uidriver.extract(page, SHADOWED, source="gate-2")
    uidriver.extract(page, FACES / "img41.jpg", source="lobby")
    uidriver.open_tab(page, "en", "gallery")
    uidriver.create_gallery(page, "front-desk")
    page.get_by_text("Gallery front-desk created").wait_for(timeout=uidriver.TIMEOUT_MS)
    for label, files in uidriver.ENROL.items():
        uidriver.enrol(page, label, [FACES / name for name in files])
        page.get_by_text(f"{label}: 2 of 2 photos enrolled").wait_for(timeout=uidriver.TIMEOUT_MS)
    return uidriver.group_photo(FACES, uidriver.GROUP, work / "group.jpg")


PHONE = (390, 844)


def photograph(browser, base_url: str, locale: str, group: Path, phone: bool = False) -> list[tuple[Path, int]]:
    """Every tab in ``locale``; ``phone``: at 390×844 (files ``*-phone.png``)."""
    saved = []
    size = {"width": PHONE[0], "height": PHONE[1]} if phone else {}
    page = uidriver.open_page(browser, base_url, locale, **size)
    tail = f"{locale}-phone" if phone else locale
    uidriver.compare(page, FACES / "img1.jpg", FACES / "img2.jpg")
    path = OUTPUT / f"compare-{tail}.png"
    saved.append((path, save_small(page, path)))

    uidriver.open_tab(page, locale, "extract")
    uidriver.extract(page, FACES / "img3.jpg")
    page.locator("#extract-tab img").nth(1).wait_for(timeout=uidriver.TIMEOUT_MS)  # the heatmap
    path = OUTPUT / f"extract-{tail}.png"
    saved.append((path, save_small(page, path)))

    uidriver.open_tab(page, locale, "monitor")
    page.locator("#monitor-refresh").click()
    page.locator("#monitor-thumbs img, #monitor-thumbs p").first.wait_for(timeout=uidriver.TIMEOUT_MS)
    page.locator("#monitor-tab .js-plotly-plot").nth(1).wait_for(timeout=uidriver.TIMEOUT_MS)
    path = OUTPUT / f"monitor-{tail}.png"
    saved.append((path, save_small(page, path)))

    uidriver.open_tab(page, locale, "gallery")
    page.locator("#gallery-identities .gallery-identity").first.wait_for(timeout=uidriver.TIMEOUT_MS)
    uidriver.identify(page, group)
    page.locator("#gallery-drawn img").wait_for(timeout=uidriver.TIMEOUT_MS)
    path = OUTPUT / f"gallery-{tail}.png"
    saved.append((path, save_small(page, path)))

    uidriver.open_tab(page, locale, "pose")
    page.locator("#image-pose input[type=file]").set_input_files(str(group))
    page.locator("#image-pose img").first.wait_for(timeout=uidriver.TIMEOUT_MS)
    uidriver.click_and_wait(page, "pose-button", "pose-result")
    page.locator("#pose-drawn img").wait_for(timeout=uidriver.TIMEOUT_MS)
    path = OUTPUT / f"pose-{tail}.png"
    saved.append((path, save_small(page, path)))
    page.close()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    if not (FACES / "identities.csv").is_file():
        print(f"[ERROR] needs the shared photo set at {FACES}", file=sys.stderr)
        return 2
    if not Path(uidriver.CHROMIUM).exists():
        print("[ERROR] needs Debian's chromium: apt-get install -y chromium fonts-noto-cjk", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="frood-screenshots-"))
    app = RunningApp(work / "data")
    try:
        app.start()
        with sync_playwright() as playwright:
            browser = uidriver.launch(playwright)
            group = seed(uidriver.open_page(browser, app.base_url, "en"), work)
            saved = [
                shot for phone in (False, True) for locale in ("en", "zh") for shot in photograph(browser, app.base_url, locale, group, phone)
            ]
            browser.close()
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)
    too_big = [path for path, size in saved if size > MAX_BYTES]
    for path, size in saved:
        print(f"[INFO] {path.relative_to(ROOT)}: {size / 1024:.0f} KB")
    if too_big:
        print(f"[ERROR] over {MAX_BYTES // 1024} KB: {', '.join(str(path) for path in too_big)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
