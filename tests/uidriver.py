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
    "en": {"compare": "Compare", "extract": "Extract", "monitor": "Monitor", "gallery": "Gallery", "pose": "Pose"},
    "zh": {"compare": "比对", "extract": "提取", "monitor": "监控", "gallery": "人脸库", "pose": "姿态"},
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
    """Click the tab; on a phone the tabs that do not fit are behind Gradio's "More tabs" button."""
    import re

    name = TABS[locale][tab]
    visible = page.get_by_role("tab", name=name)
    if visible.count() and visible.first.is_visible():
        visible.first.click()
        return
    page.locator("button[aria-label='More tabs'], button[aria-label='更多标签页']").first.click()
    item = page.locator("button:not([role=tab]):not([tabindex='-1']):visible").filter(has_text=re.compile(f"^{re.escape(name)}$")).first
    item.evaluate("button => button.click()")  # the menu overlaps the tab bar: a pointer click is intercepted
    page.mouse.click(2, 300)  # close the menu
    page.locator(f"#{tab}-tab").wait_for(state="visible", timeout=TIMEOUT_MS)


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


# --- issue 25: reading what the page really shows ---------------------------------------------------------------------

# Words the Chinese page may keep: product and standard names, and the index types (FAISS's own names).
KEPT_NAMES = {"Gradio", "Flat", "IVF", "HNSW", "JSON", "API", "ISO", "IEC", "UTC", "OOD", "CSV", "HTTP", "PNG", "JPEG"}

CONTRAST_JS = r"""
(selector) => {
  const rgba = (text) => { const v = text.match(/[\d.]+/g).map(Number); return {r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1}; };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      const colour = rgba(style.backgroundColor);
      if (colour.a > 0.5) return colour;
      if (style.backgroundImage && style.backgroundImage.includes("gradient")) {
        const stops = style.backgroundImage.match(/rgba?\([^)]*\)/g);
        if (stops) return rgba(stops[0]);
      }
    }
    return {r: 255, g: 255, b: 255, a: 1};
  };
  const saturated = (c) => Math.max(c.r, c.g, c.b) - Math.min(c.r, c.g, c.b) > 40;
  return [...document.querySelectorAll(selector)].filter((e) => e.offsetParent !== null && e.innerText.trim()).map((e) => {
    const fg = rgba(getComputedStyle(e).color), bg = background(e);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    return {text: e.innerText.trim().slice(0, 40), ratio: (hi + 0.05) / (lo + 0.05), coloured: saturated(bg) || saturated(fg),
            fg: getComputedStyle(e).color, bg: `rgb(${bg.r}, ${bg.g}, ${bg.b})`};
  });
}
"""
CONTROLS = "button, [role=tab], .frood-badge, .frood-warning, .frood-done, label.selected, a"


def contrasts(page, selector: str = CONTROLS) -> list[dict]:
    """Each visible control's text contrast against its rendered background (WCAG formula)."""
    return page.evaluate(CONTRAST_JS, selector)


def gradio_words(page) -> list[str]:
    """The tooltips and labels Gradio writes into its components (aria-label, title, placeholder) and the title."""
    return page.evaluate(
        "() => [document.title, ...[...document.querySelectorAll('[aria-label],[title],[placeholder]')]"
        ".flatMap(e => ['aria-label', 'title', 'placeholder'].map(a => e.getAttribute(a) || ''))].filter(Boolean)"
    )


def chart_texts(page) -> list[str]:
    """Every word Plotly drew: titles, axis titles and ticks, legend, colour bar, annotations."""
    return page.locator(".js-plotly-plot text").evaluate_all("nodes => nodes.map(n => n.textContent)")


def image_bytes(page, selector: str) -> bytes:
    """The bytes of an image the page shows (fetched by the page itself, with its session)."""
    import base64

    data = page.locator(selector).first.evaluate(
        "async (img) => { const blob = await (await fetch(img.src)).blob();"
        " return await new Promise(done => { const r = new FileReader(); r.onload = () => done(r.result); r.readAsDataURL(blob); }); }"
    )
    return base64.b64decode(data.split(",", 1)[1])


def ask_and_confirm(page, button_id: str) -> None:
    """Click a removal button, see the question, confirm it."""
    page.locator(f"#{button_id}").click()
    page.locator("#gallery-confirm-yes").wait_for(state="visible", timeout=TIMEOUT_MS)
    page.locator("#gallery-confirm-yes").click()
