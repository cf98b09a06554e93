"""End to end in a real headless browser (Debian's chromium, driven by Playwright's Python package): load the page,
change seed and psi, generate, and check that the new image is the core's; then restore settings by uploading it."""

from __future__ import annotations

import io
import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

import ganserve  # noqa: E402
from ganserve.images import read_png_params  # noqa: E402
from ganserve.sampling import sample  # noqa: E402
from ganserve.ui.app import build_app, launch  # noqa: E402
from ganserve.ui.backend import LocalBackend  # noqa: E402

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright's own browser download is never used
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]


@pytest.fixture(scope="module")
def app_url(tiny_models_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(LocalBackend({n: tiny_models_dir / f"{n}.safetensors" for n in ("tiny", "tiny-cond")}))
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def shown_image(page) -> tuple[str, bytes]:
    img = page.locator("#image img")
    src = img.get_attribute("src")
    return src, page.request.get(src).body()


def set_number(page, selector: str, value: str) -> None:
    box = page.locator(selector)
    box.fill(value)
    box.press("Tab")  # Gradio takes the value on change / blur


def fill_text(page, selector: str, value: str) -> None:
    """Type into a Gradio textbox and leave it, so the app has the value before the next click reads it.

    An update still in flight from an earlier event (page load, a model switch) can reset the box after it was
    typed into: type again until the value stays put.
    """
    box = page.locator(f"{selector} textarea, {selector} input").first
    for _ in range(40):
        box.fill(value)
        box.press("Tab")
        page.wait_for_timeout(250)
        if box.input_value() == value:
            page.wait_for_timeout(250)
            if box.input_value() == value:
                return
    raise AssertionError(f"{selector} would not keep the value {value!r}")


def test_generate_in_the_browser(page, app_url, tiny_models_dir, tmp_path):
    page.goto(app_url)
    page.wait_for_selector("#generate")
    assert page.locator("#image img").count() == 0

    set_number(page, "#seed input[type=number]", "42")
    set_number(page, "#psi input[type=number]", "0.5")
    page.click("#generate")
    page.wait_for_selector("#image img")
    src, png = shown_image(page)

    G = ganserve.load(tiny_models_dir / "tiny.safetensors")
    want = sample(G, seeds=[42], truncation_psi=0.5)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), want.images[0])
    assert read_png_params(png) == want.params[0]
    page.wait_for_function("() => document.querySelector('#params').innerText.includes('0.5')")
    assert "42" in page.locator("#params").inner_text()

    # A new seed gives a new image in place of the old one.
    set_number(page, "#seed input[type=number]", "43")
    page.click("#generate")
    page.wait_for_function(
        "old => { const i = document.querySelector('#image img'); return i && i.src !== old; }", arg=src
    )
    _, png2 = shown_image(page)
    assert read_png_params(png2)["seeds"] == [43]
    assert png2 != png

    # Uploading the first image restores its settings.
    saved = tmp_path / "seed42.png"
    saved.write_bytes(png)
    page.locator("input[type=file]").first.set_input_files(str(saved))
    page.wait_for_function("() => document.querySelector('#seed input').value === '42'")
    assert page.locator("#psi input[type=number]").input_value() == "0.5"
    assert "Restored" in page.locator("#status").inner_text()
    page.screenshot(path=str(tmp_path / "ui.png"))


def test_server_errors_show_as_messages(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#generate")
    page.get_by_role("tab", name="Seed grid").click()
    fill_text(page, "#grid-seeds", "0-99")
    page.click("#grid-generate")
    toast = page.locator(".toast-body").first
    toast.wait_for()
    text = toast.inner_text()
    assert "100 images requested; the limit is 64" in text
    assert "Traceback" not in text
    assert page.locator("#grid-generate").is_enabled()  # the page stays usable


def test_model_switch_shows_class_picker_and_gallery_click_shows_params(page, app_url):
    page.goto(app_url)
    page.wait_for_selector("#generate")
    assert not page.locator("#class").is_visible()  # 'tiny' is unconditional
    page.locator("#model input").click()
    page.get_by_role("option", name="tiny-cond").click()
    # the model list closes with an animation: read options only once it is gone and the class list is open
    page.get_by_role("option", name="tiny-cond").wait_for(state="hidden")
    page.locator("#class").wait_for(state="visible")
    page.locator("#class input").click()
    page.get_by_role("option", name="0: circle").wait_for()
    names = page.get_by_role("option").all_inner_texts()
    assert [n.replace("✓", "").strip() for n in names] == ["0: circle", "1: square", "2: triangle"]
    page.get_by_role("option", name="2: triangle").click()

    page.get_by_role("tab", name="Seed grid").click()
    fill_text(page, "#grid-seeds", "5-8")
    page.click("#grid-generate")
    thumbs = page.locator("#grid-gallery button.thumbnail-item, #grid-gallery .thumbnail-item")
    thumbs.nth(3).wait_for()
    assert thumbs.count() == 4
    thumbs.nth(2).click()
    # The JSON viewer puts tokens on lines of their own: compare without whitespace.
    page.wait_for_function(
        "() => document.querySelector('#params').innerText.replace(/\\s+/g, '').includes('\"seeds\":[7]')"
    )
    text = "".join(page.locator("#params").inner_text().split())
    assert '"class":2' in text and '"model":"tiny-cond"' in text
