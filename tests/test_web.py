"""The upload page in a real headless browser (Debian's chromium, driven by Playwright), offline.

The screenshot is a test artifact: written to $DEEPFAKE_ARTIFACTS (default: the test's temp dir), its path
printed (pytest -s, or -rP, shows it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Server

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} not found: apt-get install chromium (.ci/run does)"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (a dev dependency) not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served: Server):
    """A phone-sized page that may only talk to the server under test: anything else is recorded and refused."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=2)
    page = context.new_page()
    outside = []

    def only_our_server(route):
        if route.request.url.startswith(served.url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_our_server)
    page.outside_requests = outside
    yield page
    context.close()


def artifact_path(tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("DEEPFAKE_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_upload_a_clip_and_see_the_verdict_faces_heatmaps_and_chart(page, served: Server, tmp_path):
    page.goto(served.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('v1')")
    page.set_input_files("#file", str(served.clips[0]))
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    verdict = page.text_content("#verdict")
    assert verdict in ("REAL", "FAKE")
    assert "P(fake)" in page.text_content("#score")
    figures = page.locator("#faces figure")
    assert figures.count() >= 4
    heatmaps = page.locator("#faces img.gradcam")
    assert heatmaps.count() == figures.count()
    # Every heatmap image decoded and is on screen.
    assert page.evaluate(
        "[...document.querySelectorAll('#faces img.gradcam')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert heatmaps.first.is_visible()
    assert page.locator("#chart svg circle").count() >= 4 and page.locator("#chart svg .threshold").count() == 1
    # Readable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot = artifact_path(tmp_path, "web-verdict.png")
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    # Switching the heatmap off shows the plain crops.
    page.uncheck("#show-heatmap")
    assert page.locator("#faces img.crop").first.is_visible() and not heatmaps.first.is_visible()
    assert page.outside_requests == []


def test_a_file_that_is_not_a_video_shows_the_reason(page, served: Server, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is text, not a video")
    page.goto(served.url + "/")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "422: notes.mp4: not a readable video" in page.text_content("#error")
    assert page.is_hidden("#result")


def test_the_api_docs_render_offline(page, served: Server):
    page.goto(served.url + "/docs")
    operations = page.locator(".opblock-summary-path")
    operations.first.wait_for(timeout=60_000)
    assert {"/v1/predict", "/v1/health", "/v1/model"} <= set(operations.all_text_contents())
    assert page.outside_requests == []
