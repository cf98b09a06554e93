"""Issue 23 item 6 in a real headless browser (Debian's chromium via Playwright), on a page built for a BigGAN model
first (as a checkpoints folder sorted by name is): partial links mean the linked model's own defaults, the first visit
and each tab render on arrival, the keyboard paths (model by keys, slider keys, Enter in a slider's box, Tab out of
top-k) render, BigGAN's psi slider never offers the value its server refuses, Restore names a non-PNG, a failed
projection clears the last PSNR, and text contrast, radio focus rings and the image's name (desktop and phone).

Every wait is on a condition in the page (an image's alt text, the URL, a count), never a fixed sleep.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")

import ganserve
from ganserve.images import read_png_params
from ganserve.sampling import sample
from ganserve.ui.app import build_app, launch
from ganserve.ui.backend import LocalBackend
from tests.test_ui_browser import browser, open_page, pixels, query, refusal, set_number, shown_png  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]


@pytest.fixture(scope="module")
def paths(tiny_models_dir, tmp_path_factory):
    from tests import vq_fixtures
    from tests.family_fixtures import make_tiny_biggan, save_tiny

    folder = tmp_path_factory.mktemp("mixed")
    # BigGAN first: the page is built for it, and links to the StyleGAN2 model must not inherit its values.
    return {
        "tiny-biggan": save_tiny(folder, "tiny-biggan", make_tiny_biggan()),
        "tiny": tiny_models_dir / "tiny.safetensors",
        "tiny-vqgan": vq_fixtures.save_tiny(folder, "vqgan"),
    }


@pytest.fixture(scope="module")
def url(paths):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(LocalBackend(paths))
    _, address, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    yield address
    app.close()


@pytest.fixture(scope="module")
def G(paths):
    return {name: ganserve.load(p) for name, p in paths.items()}


@pytest.fixture()
def page(browser):  # noqa: F811
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    yield pg
    pg.close()


def wait_alt(page, *texts: str, selector: str = "#image img") -> bytes:
    """Wait until the image's alt text holds every text; its PNG."""
    page.wait_for_function(
        "([sel, ts]) => { const a = document.querySelector(sel)?.alt || ''; return ts.every(t => a.includes(t)); }",
        arg=[selector, list(texts)],
    )
    return shown_png(page, selector)[1]


def thumbs(page, gallery: str, n: int):
    items = page.locator(f"#{gallery} .thumbnail-item img")
    items.nth(n - 1).wait_for()
    return items


def test_partial_links_mean_the_models_own_defaults(page, url, G):
    # psi=0 with every w truncated is the average image: not cutoff 1 (the BigGAN's single w).
    open_page(page, f"{url}?model=tiny&seed=42&psi=0")
    png = wait_alt(page, "seed 42", "ψ 0")
    want = sample(G["tiny"], seeds=[42], truncation_psi=0.0)
    assert read_png_params(png) == want.params[0]  # no truncation_cutoff written into the PNG
    np.testing.assert_array_equal(pixels(png), want.images[0])
    assert read_png_params(png) == want.params[0]  # no truncation_cutoff written into the PNG
    page.wait_for_function("() => location.search.includes('seed=42')")
    q = query(page)
    assert (q["cutoff"], q["layers"], q["model"]) == ("6", "coarse", "tiny")
    assert page.locator("#cutoff input[type=number]").input_value() == "6"

    # The grid tab from a partial link: the model's images, none broken.
    open_page(page, f"{url}?tab=grid&model=tiny&grid=0-3&psi=0")
    items = thumbs(page, "grid-gallery", 4)
    assert items.count() == 4
    for k in range(4):
        png = page.request.get(items.nth(k).get_attribute("src")).body()
        np.testing.assert_array_equal(pixels(png), sample(G["tiny"], seeds=[k], truncation_psi=0.0).images[0])

    # Style mixing from a link with only the model: the model's first group (coarse), not BigGAN's [0, 1].
    open_page(page, f"{url}?tab=mix&model=tiny")
    items = thumbs(page, "mix-gallery", 16)
    assert read_png_params(page.request.get(items.first.get_attribute("src")).body())["style_mix"]["layers"] == "coarse"
    assert page.locator("#mix-layers input:checked").get_attribute("value") == "coarse"
    page.wait_for_function("() => location.search.includes('layers=coarse')")  # written after the render


def test_first_visit_and_each_tab_render_on_arrival(page, url, G):
    open_page(page, url)  # no query: the first model's default image, no click
    png = wait_alt(page, "tiny-biggan", "seed 0")
    np.testing.assert_array_equal(pixels(png), sample(G["tiny-biggan"], seeds=[0]).images[0])
    # BigGAN's psi is in (0, 1]: the slider starts at its default and never offers 0.
    box = page.locator("#psi input[type=number]")
    assert (box.input_value(), box.get_attribute("min"), box.get_attribute("max")) == ("1", "0.05", "1")
    for tab, gallery, n in (("Seed grid", "grid-gallery", 16), ("Interpolation", "interp-gallery", 8),
                            ("Seed browser", "browse-gallery", 64)):  # fmt: skip
        page.get_by_role("tab", name=tab).click()
        assert thumbs(page, gallery, n).count() == n, tab


def test_biggan_psi_refusal_keeps_the_users_value(page, url):
    open_page(page, f"{url}?model=tiny-biggan&seed=1&psi=0.5")
    wait_alt(page, "seed 1", "ψ 0.5")
    set_number(page, "#psi", "0")
    assert "Truncation ψ: 0 is not between 0.05 and 1" in refusal(page)
    assert page.locator("#psi input[type=number]").input_value() == "0.5"


def test_keyboard_paths_render(page, url, G):
    open_page(page, f"{url}?model=tiny&seed=3")
    wait_alt(page, "seed 3", "ψ 1")
    # Arrow keys on the psi slider: one step down, rendered on key release.
    page.locator("#psi input[type=range]").focus()
    page.keyboard.press("ArrowLeft")
    png = wait_alt(page, "seed 3", "ψ 0.95")
    np.testing.assert_array_equal(pixels(png), sample(G["tiny"], seeds=[3], truncation_psi=0.95).images[0])
    # Enter in the slider's number box renders (focus stays in the box).
    set_number(page, "#psi", "0.5", key="Enter")
    png = wait_alt(page, "seed 3", "ψ 0.5")
    np.testing.assert_array_equal(pixels(png), sample(G["tiny"], seeds=[3], truncation_psi=0.5).images[0])
    # The model chosen with the keyboard alone: type, arrow, Enter switch the page (its VQ controls appear).
    box = page.locator("#model input")
    box.click()
    box.fill("vqgan")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_function("() => location.search.includes('model=tiny-vqgan')")
    page.locator("#top-k").wait_for(state="visible")
    assert not page.locator("#psi").is_visible()
    # Top-k renders when the box is left with Tab, not only on Enter.
    set_number(page, "#top-k", "5", key="Tab")
    page.wait_for_function("() => location.search.includes('top_k=5')")
    png = shown_png(page)[1]
    assert read_png_params(png)["top_k"] == 5


# Text with less than 4.5:1 contrast against the first opaque background behind it (WCAG AA for normal text).
LOW_CONTRAST_JS = """() => {
  const rgb = (s) => { const m = s.match(/[\\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
  const lum = (c) => { const f = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
    if ((c[3] ?? 1) > 0.5) return c; } return [255, 255, 255]; };
  const low = [], seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || seen.has(el) || !el.offsetParent) continue;
    seen.add(el);
    const st = getComputedStyle(el);
    if (st.visibility === 'hidden' || parseFloat(st.opacity) === 0) continue;
    const fg = rgb(st.color), b = bg(el), a = fg[3] ?? 1;
    const shown = [0, 1, 2].map((i) => fg[i] * a + b[i] * (1 - a));
    const [hi, lo] = [lum(shown), lum(b)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const where = el.closest('[id]')?.id;
    if (ratio < 4.5) low.push(`${ratio.toFixed(2)}:1 '${n.textContent.trim().slice(0, 40)}' in #${where}`);
  }
  return low;
}"""


def test_accessibility_contrast_focus_and_names(page, browser, url):  # noqa: F811
    open_page(page, f"{url}?model=tiny&seed=3")
    wait_alt(page, "seed 3")
    assert page.evaluate(LOW_CONTRAST_JS) == []  # hints, slider ends, labels, footer, buttons, the JSON
    # The main image's button has a name: the image's description.
    assert page.locator("#image").get_by_role("button", name="tiny, seed 3, ψ 1").count() == 1
    # A radio focused from the keyboard shows a focus ring.
    page.keyboard.press("Shift")
    radio = page.locator("#noise input[type=radio]").first
    radio.focus()
    assert radio.evaluate("e => e.matches(':focus-visible') && getComputedStyle(e).outlineStyle !== 'none'")
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        open_page(phone, f"{url}?model=tiny&seed=3")
        wait_alt(phone, "seed 3")
        assert phone.evaluate(LOW_CONTRAST_JS) == []
    finally:
        phone.close()


def test_restore_refuses_a_non_png_with_a_clear_message(page, url, tmp_path):
    open_page(page, f"{url}?model=tiny&seed=3")
    wait_alt(page, "seed 3")
    renamed = tmp_path / "photo.png"  # a JPEG with a .png name: the file picker lets it through
    Image.new("RGB", (8, 8)).save(renamed, format="JPEG")
    page.locator("#restore input[type=file]").set_input_files(str(renamed))
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert "not a PNG image" in toast.inner_text()
    assert "BytesIO" not in toast.inner_text() and "BytesIO" not in page.locator("#status").inner_text()


def test_failed_projection_clears_the_stale_psnr(page, url, G, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "wide.png"
    Image.fromarray(sample(G["tiny"], seeds=[3]).images[0]).save(good)
    Image.new("RGB", (16, 8)).save(bad)
    open_page(page, f"{url}?model=tiny&steps=4")
    page.get_by_role("tab", name="Projection").click()
    page.locator("#project-image input[type=file]").set_input_files(str(good))
    page.click("#project-run")
    page.wait_for_function("() => document.querySelector('#project-info').innerText.includes('PSNR')")
    # A second image, dropped over the first (Gradio keeps its file input), that the projector refuses.
    page.locator("#project-image input[type=file]").set_input_files(str(bad))
    page.click("#project-run")
    page.wait_for_function("() => document.querySelector('#project-info').innerText.includes('Not projected')")
    assert "PSNR" not in page.locator("#project-info").inner_text()
    assert "must be square" in page.locator("#project-info").inner_text()
    assert page.locator("#project-result img").count() == 0


def test_clicking_a_direction_strip_sets_its_slider(page, url, G):
    open_page(page, f"{url}?model=tiny&seed=4")
    wait_alt(page, "seed 4")
    page.locator("#directions").get_by_text("Semantic directions").click()
    strip = page.locator("#strip-1 img")
    strip.wait_for()
    box = strip.bounding_box()
    # The strip is enlarged (whole-number scale): each of its 7 cells, -3 .. +3, is a seventh of the shown width.
    for cell, amount in ((6, 3.0), (1, -2.0), (3, 0.0)):
        strip.click(position={"x": box["width"] * (cell + 0.5) / 7, "y": box["height"] / 2})
        page.wait_for_function(
            "a => document.querySelector('#edit-1 input[type=number]').value === a", arg=f"{amount:g}"
        )
        edits = [{"direction": 1, "amount": amount, "method": "sefa"}] if amount else None
        png = wait_alt(page, "seed 4", *([f"direction 1 {amount:+g}"] if amount else []))
        if not amount:
            page.wait_for_function("() => !document.querySelector('#image img').alt.includes('direction 1')")
            png = shown_png(page)[1]
        np.testing.assert_array_equal(pixels(png), sample(G["tiny"], seeds=[4], edits=edits).images[0])


def test_a_link_with_edits_opens_the_directions_panel(page, url, G):
    open_page(page, f"{url}?model=tiny&seed=4&edit_2=2")
    png = wait_alt(page, "seed 4", "direction 2 +2")
    want = sample(G["tiny"], seeds=[4], edits=[{"direction": 2, "amount": 2.0, "method": "sefa"}])
    np.testing.assert_array_equal(pixels(png), want.images[0])
    page.locator("#edit-2").wait_for(state="visible")  # the panel is open: the slider that edits the image shows
    assert page.locator("#edit-2 input[type=number]").input_value() == "2"
    page.locator("#strip-2 img").wait_for()  # and its strips are made


@pytest.mark.parametrize("width", [1400, 390])
def test_messages_do_not_stack_or_cover_the_buttons(browser, url, width):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(60_000)
    try:
        open_page(page, f"{url}?model=tiny&tab=grid&grid=0-3")
        thumbs(page, "grid-gallery", 4)
        box = page.locator("#grid-seeds textarea, #grid-seeds input").first
        for text, message in (("0-99", "the limit is 64"), ("abc", "'abc' is not a seed")):
            box.fill(text)
            box.press("Enter")
            page.wait_for_function(
                "m => [...document.querySelectorAll('.toast-body')].some(t => t.innerText.includes(m))",
                arg=message,
            )
        shown = [t for t in page.locator(".toast-body").all() if t.is_visible()]
        assert len(shown) == 1 and "'abc' is not a seed" in shown[0].inner_text()  # the latest only
        toast, button = shown[0].bounding_box(), page.locator("#grid-generate").bounding_box()
        apart_y = toast["y"] >= button["y"] + button["height"] or toast["y"] + toast["height"] <= button["y"]
        apart_x = toast["x"] >= button["x"] + button["width"] or toast["x"] + toast["width"] <= button["x"]
        assert apart_x or apart_y
    finally:
        page.close()
