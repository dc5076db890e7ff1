"""The web page in headless Chromium (Debian's ``chromium`` package, driven by Playwright)."""

from __future__ import annotations

import base64
import io
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from cascade_testutil import tiny_cascade
from openimagen.serve import ServerThread, ServeSettings, create_app

RES = 32
KEY = "page-key-1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class SlowCascade:
    """The real cascade with a pause per sampling step, so the page can show progress."""

    def __init__(self, inner, pause: float = 0.06):
        self.inner, self.pause = inner, pause

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, prompts, seeds, *, progress=None, **kwargs):
        def slow(done, total):
            time.sleep(self.pause)
            if progress is not None:
                progress(done, total)

        return self.inner.generate(prompts, seeds, progress=slow, **kwargs)


@pytest.fixture(scope="module")
def server(minilm):
    cascade = SlowCascade(tiny_cascade(minilm, base_res=16, sr_res=RES))
    with ServerThread(create_app(cascade, ServeSettings(api_key=KEY, max_steps=10))) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page()
        page.console_errors = []
        page.on(
            "console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None
        )
        page.goto(server.url + "/")
        yield page
        browser.close()


def wait_for_images(page, timeout=60.0) -> tuple[set, set]:
    """Poll the page until an image shows; return the progress values and statuses seen."""
    values, statuses = set(), set()
    deadline = time.monotonic() + timeout
    while page.locator("#images img").count() == 0 and "Error" not in page.text_content("#status"):
        assert time.monotonic() < deadline, "no image on the page"
        values.add(page.get_attribute("#progress", "value"))
        statuses.add(page.text_content("#status"))
        time.sleep(0.03)
    return values, statuses


def test_page_shows_model_and_asks_for_the_key(page):
    page.wait_for_selector("#apikey", state="visible")
    assert f"{RES}x{RES}" in page.text_content("#model")
    page.fill("#prompt", "a red circle")
    page.click("#generate")
    page.wait_for_selector("#status.error")
    assert "401" in page.text_content("#status") and "API key" in page.text_content("#status")
    assert page.locator("#images img").count() == 0


def test_typing_a_prompt_gives_an_image_with_progress(page):
    page.fill("#apikey", KEY)
    page.fill("#prompt", "two blue squares")
    page.fill("#seed", "7")
    page.fill("#steps", "6")
    page.fill("#guidance", "2")
    page.click("#generate")
    values, statuses = wait_for_images(page)
    # progress went through intermediate steps of 12 (6 steps x 2 stages)
    steps_seen = {int(v) for v in values if v not in (None, "0")}
    assert any(0 < v < 12 for v in steps_seen), (values, statuses)
    assert any(s.startswith("Sampling: step") and s.endswith("of 12") for s in statuses)
    assert page.text_content("#status") == "Done: 1 image(s)."
    assert page.text_content("#images figcaption") == "seed 7"
    src = page.get_attribute("#images img", "src")
    assert src.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert image.size == (RES, RES) and image.text["prompt"] == "two blue squares"
    assert image.text["seed"] == "7" and '"guidance_weight": 2.0' in image.text["sampling"]
    assert image.text["ai_generated"] == "true" and image.text["watermark"] == "openimagen-dct8-v1"
    assert page.eval_on_selector("#images img", "img => img.naturalWidth") == RES
    # the only console errors are the refused request of the previous test
    assert all("401" in e for e in page.console_errors), page.console_errors
