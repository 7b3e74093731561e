"""Browser test of the door (issue 20): with API_KEYS set, headless Chromium is asked to sign in; a viewer key
opens the Monitor but cannot remove an identity enrolled by an admin."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests import uidriver
from tests.apphelpers import RunningApp

ADMIN, VIEWER = "browser-admin-key-42", "browser-viewer-key-42"
KEYS = {ADMIN: {"scopes": ["admin"], "name": "Ada Admin", "rpm": 10000}, VIEWER: {"scopes": ["monitor"], "name": "Vic Viewer", "rpm": 10000}}


@pytest.fixture(scope="module")
def app(tmp_path_factory, faces_dir):
    uidriver.require_chromium()
    running = RunningApp(tmp_path_factory.mktemp("signin-app"), API_KEYS=json.dumps(KEYS)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(app):
    yield from uidriver.browser_session()


def sign_in(browser, base_url: str, key: str):
    page = browser.new_page(locale="en-US")
    page.goto(base_url + "/")
    assert page.url.endswith("/login"), page.url  # the UI asks for sign-in first
    page.locator("#key").fill(key)
    page.locator("#signin").click()
    page.wait_for_url(base_url + "/", timeout=uidriver.TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    return page


def test_a_wrong_key_is_refused_at_sign_in(app, browser):
    page = browser.new_page(locale="en-US")
    page.goto(app.base_url + "/login")
    page.locator("#key").fill("not-a-key")
    page.locator("#signin").click()
    assert "not valid" in page.locator(".error").inner_text()
    assert page.context.cookies() == [] or all(cookie["name"] != "frood_session" for cookie in page.context.cookies())


def test_a_viewer_sees_the_monitor_but_cannot_remove_an_identity(app, browser, faces_dir):
    from playwright.sync_api import expect

    photo = base64.b64encode((faces_dir / "img1.jpg").read_bytes()).decode()
    built = requests.post(app.base_url + "/face-recognition-index-build", headers={"X-API-Key": ADMIN},
                          json={"imageLabelPairs": [{"image": photo, "label": "jolie"}]}, timeout=120).json()["result"]
    key = built["indexKey"]

    page = sign_in(browser, app.base_url, VIEWER)
    expect(page.locator("#signed-in")).to_contain_text("Signed in as Vic Viewer", timeout=uidriver.TIMEOUT_MS)
    cookie = next(cookie for cookie in page.context.cookies() if cookie["name"] == "frood_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    uidriver.open_tab(page, "en", "monitor")
    expect(page.locator("#monitor-summary")).to_contain_text("Processed", timeout=uidriver.TIMEOUT_MS)

    uidriver.open_tab(page, "en", "gallery")
    # The viewer's browser asks to remove the identity the way the page would (same session, same route).
    answer = page.evaluate(
        """async ([key]) => {
            const config = await (await fetch('/config')).json();
            const fn = config.dependencies.find(d => d.api_name === 'gallery_remove');
            const r = await fetch('/gradio_api/queue/join', {method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({data: [key, 'jolie'], fn_index: fn.id, session_hash: 'viewer'})});
            return r.status;
        }""",
        [key],
    )
    assert answer == 403
    page.locator("#gallery-remove").click()  # the button itself: refused too (nothing changes)
    page.wait_for_timeout(1500)

    infer = requests.post(app.base_url + "/face-recognition-infer", headers={"X-API-Key": ADMIN}, json={"image": photo, "indexKey": key}, timeout=120)
    assert infer.json()["result"]["faces"][0]["recResults"][0]["label"] == "jolie"  # still enrolled

    page.goto(app.base_url + "/logout")
    assert page.url.endswith("/login")
    page.goto(app.base_url + "/")
    assert page.url.endswith("/login")  # signed out: the UI is closed again
