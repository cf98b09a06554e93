"""End to end in a real headless browser (Debian's chromium, driven by Playwright's Python package, loopback only):
generate, live controls (Enter, arrow keys, released sliders), the settings in the URL, refused inputs, the direction
sliders and their strips, projection of an image, the seed browser, restore by upload, and the layout (grid fully
shown, whole-number scaling, labels off the pictures, alt texts, keyboard focus, a phone-sized window).

Every wait is on a condition in the page (an image's src, a status line, the URL), never a fixed sleep.
"""

from __future__ import annotations

import io
import socket
import time
from urllib.parse import parse_qs, urlsplit

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
TIMINGS: dict[str, float] = {}  # measured in the browser, printed at the end of the module (pytest -s)


@pytest.fixture(scope="module")
def app_url(tiny_models_dir, latents_dir, tmp_path_factory):
    from tests.family_fixtures import make_tiny_biggan, save_tiny

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = {n: tiny_models_dir / f"{n}.safetensors" for n in ("tiny", "tiny-cond")}
    paths["tiny-biggan"] = save_tiny(tmp_path_factory.mktemp("biggan"), "tiny-biggan", make_tiny_biggan())
    app = build_app(LocalBackend(paths))
    _, url, _ = launch(app, port=port, prevent_thread_lock=True, quiet=True)
    yield url
    app.close()
    if TIMINGS:
        print("\nbrowser timings (s):", {k: round(v, 2) for k, v in TIMINGS.items()})


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.set_default_timeout(60_000)
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def models(tiny_models_dir):
    return {name: ganserve.load(tiny_models_dir / f"{name}.safetensors") for name in ("tiny", "tiny-cond")}


# ---- helpers --------------------------------------------------------------------------------------------------------


def open_page(page, url: str) -> None:
    """Open the page and wait until its load event has finished (the status line says so)."""
    page.goto(url)
    page.wait_for_function("() => { const s = document.querySelector('#status'); return s && s.innerText.trim(); }")


def wait_status(page, text: str) -> str:
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=text)
    return page.locator("#status").inner_text()


def shown_png(page, selector: str = "#image img") -> tuple[str, bytes]:
    src = page.locator(selector).get_attribute("src")
    return src, page.request.get(src).body()


def wait_new_image(page, old: str | None, selector: str = "#image img") -> tuple[str, bytes]:
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel); return i && i.src && i.src !== old; }",
        arg=[selector, old],
    )
    return shown_png(page, selector)


def pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG"
        a = np.asarray(im)
    return a[:, :, None] if a.ndim == 2 else a


def set_number(page, selector: str, value: str, key: str = "Tab") -> None:
    """Type into a number box (a slider's, or a gr.Number) and leave it: Tab releases a slider, Enter submits."""
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(value)
    box.press(key)


RETRIES = {"count": 0}


def fill_text(page, selector: str, value: str, key: str = "Tab") -> None:
    """Type into a Gradio textbox and leave it (Enter submits). Pages are used only after their load event has
    finished (``open_page``), so nothing resets the box; the retry stays as a guard and is counted."""
    box = page.locator(f"{selector} textarea, {selector} input").first
    for attempt in range(10):
        box.fill(value)
        if box.input_value() == value:
            box.press(key)
            return
        RETRIES["count"] = attempt + 1
    raise AssertionError(f"{selector} would not keep the value {value!r}")


def wait_alt(page, *texts: str, selector: str = "#image img") -> tuple[str, bytes]:
    """Wait until the image's alt text holds every text (the page renders on arrival, so an image is always there:
    wait for the one asked for); its src and PNG."""
    page.wait_for_function(
        "([sel, ts]) => { const a = document.querySelector(sel)?.alt || ''; return ts.every(t => a.includes(t)); }",
        arg=[selector, list(texts)],
    )
    return shown_png(page, selector)


def query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def refusal(page) -> str:
    page.wait_for_selector("#gs-refusal:not([hidden])")
    return page.locator("#gs-refusal span").inner_text()


# ---- tests ----------------------------------------------------------------------------------------------------------


def test_generate_restore_twice_and_render(page, app_url, models, tmp_path):
    open_page(page, app_url)
    # The first visit shows the default image (seed 0) with no click.
    _, png0 = wait_alt(page, "tiny, seed 0,")
    np.testing.assert_array_equal(pixels(png0), sample(models["tiny"], seeds=[0]).images[0])
    set_number(page, "#seed", "42")
    set_number(page, "#psi", "0.5")
    t0 = time.perf_counter()
    page.click("#generate")
    src, png = wait_alt(page, "seed 42,", "ψ 0.5")
    TIMINGS["generate (click to image)"] = time.perf_counter() - t0
    want = sample(models["tiny"], seeds=[42], truncation_psi=0.5)
    np.testing.assert_array_equal(pixels(png), want.images[0])
    assert read_png_params(png) == want.params[0]
    assert "seed 42" in page.locator("#image img").get_attribute("alt")  # defect 6: a real alt text
    assert page.locator("button[aria-label=Share], button[title=Share]").count() == 0  # defect 2
    # The label and the toolbar sit above the picture; the picture is at a whole-number scale.
    pic = page.locator("#image img").bounding_box()
    for part in ("#image [data-testid=block-label]", "#image .icon-button-wrapper"):
        box = page.locator(part).first.bounding_box()
        assert box["y"] + box["height"] <= pic["y"] + 1, part
    assert pic["width"] % models["tiny"].config.resolution == 0 and pic["width"] >= 4 * models["tiny"].config.resolution

    # Enter in the seed box renders (live); the released psi slider too.
    set_number(page, "#seed", "43", key="Enter")
    src, png2 = wait_new_image(page, src)
    assert read_png_params(png2)["seeds"] == [43]

    # Restore on the page: the controls come back AND the image is rendered (defect 1), and the drop zone takes a
    # second file at once.
    first = tmp_path / "seed42.png"
    first.write_bytes(png)
    page.locator("#restore input[type=file]").set_input_files(str(first))
    src, png3 = wait_new_image(page, src)
    assert read_png_params(png3)["seeds"] == [42]
    assert page.locator("#seed input").input_value() == "42"
    assert page.locator("#psi input[type=number]").input_value() == "0.5"
    assert "Restored" in wait_status(page, "Restored")
    second = tmp_path / "seed43.png"
    second.write_bytes(png2)
    page.locator("#restore input[type=file]").wait_for(state="attached")
    page.locator("#restore input[type=file]").set_input_files(str(second))
    src, png4 = wait_new_image(page, src)
    assert read_png_params(png4)["seeds"] == [43]


def test_url_state_round_trip(page, browser, app_url, models):
    # A fresh page opened from a link sets the controls and renders, with no click.
    t0 = time.perf_counter()
    open_page(page, f"{app_url}?model=tiny-cond&class=2&seed=7&psi=0.6&noise=random&tab=seed")
    page.wait_for_selector("#image img")
    TIMINGS["open a link to an image"] = time.perf_counter() - t0
    src, png = shown_png(page)
    want = sample(models["tiny-cond"], seeds=[7], truncation_psi=0.6, noise_mode="random", **{"class": 2})
    np.testing.assert_array_equal(pixels(png), want.images[0])
    assert page.locator("#class input").input_value() == "2: triangle"

    # A live change (psi released) re-renders and writes the URL; that URL reopens the same image elsewhere.
    set_number(page, "#psi", "0.8")
    src, png = wait_new_image(page, src)
    page.wait_for_function("() => location.search.includes('psi=0.8')")
    q = query(page)
    assert (q["model"], q["class"], q["seed"], q["tab"], q["noise"]) == ("tiny-cond", "2", "7", "seed", "random")
    other = browser.new_page()
    try:
        open_page(other, page.url)
        other.wait_for_selector("#image img")
        _, png_other = shown_png(other)
        np.testing.assert_array_equal(pixels(png_other), pixels(png))
    finally:
        other.close()

    # The grid tab from a link; a bad value in a link is refused with a message, the rest still applies.
    open_page(page, f"{app_url}?model=tiny&tab=grid&grid=3-5&psi=5")
    page.locator("#grid-gallery .thumbnail-item").nth(2).wait_for()
    assert page.locator("#grid-gallery .thumbnail-item").count() == 3
    assert "psi: expected a number from -1 to 2, got 5" in page.locator(".toast-body").first.inner_text()
    assert page.locator("#psi input[type=number]").input_value() == "1"


def test_live_controls_collapse_to_the_latest(page, app_url, models):
    open_page(page, app_url)
    set_number(page, "#seed", "10", key="Enter")
    src, _ = wait_alt(page, "seed 10,")
    # One arrow key: seed + 1, rendered.
    page.locator("#seed input").focus()
    t0 = time.perf_counter()
    page.keyboard.press("ArrowUp")
    src, png = wait_new_image(page, src)
    TIMINGS["arrow key to new image"] = time.perf_counter() - t0
    assert read_png_params(png)["seeds"] == [11]
    # Five quick presses: the box counts every one, renders collapse, and the last one shown is seed 16.
    for _ in range(5):
        page.keyboard.press("ArrowUp")
    assert page.locator("#seed input").input_value() == "16"
    page.wait_for_function("() => (document.querySelector('#image img')?.alt || '').includes('seed 16')")
    _, png = shown_png(page)
    np.testing.assert_array_equal(pixels(png), sample(models["tiny"], seeds=[16]).images[0])
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => (document.querySelector('#image img')?.alt || '').includes('seed 15')")
    # A released slider (cutoff) re-renders the shown tab.
    src, _ = shown_png(page)
    set_number(page, "#psi", "0.3")
    set_number(page, "#cutoff", "2")
    page.wait_for_function("() => (document.querySelector('#image img')?.alt || '').includes('ψ 0.3')")
    page.wait_for_function("() => location.search.includes('cutoff=2')")
    _, png = shown_png(page)
    want = sample(models["tiny"], seeds=[15], truncation_psi=0.3, truncation_cutoff=2)
    np.testing.assert_array_equal(pixels(png), want.images[0])
    # Live preview: a drag renders while the button is still down (a release is only the pointerup).
    box = page.locator("#psi input[type=range]").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.9, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.wait_for_function(
        "() => { const m = (document.querySelector('#image img')?.alt || '').match(/ψ (-?[0-9.]+)/);"
        " return m && m[1] !== '0.3'; }"
    )
    page.mouse.up()
    final = float(page.locator("#psi input[type=number]").input_value())
    page.wait_for_function("a => (document.querySelector('#image img')?.alt || '').endsWith(a)", arg=f"ψ {final:g}")
    assert page.locator("#history-strip .thumbnail-item").count() >= 2  # the renders made here, newest first
    # Thumbnails, not a lone render as wide as the tab (which pushed the panels below it out of reach).
    assert page.locator("#history-strip .thumbnail-item img").first.bounding_box()["height"] <= 128
    # A and B: two renders of the history, side by side in the slider.
    for mode, k in (("Show as A", 1), ("Show as B", 0)):
        page.locator("#history-mode label", has_text=mode).click()
        page.locator("#history-strip .thumbnail-item").nth(k).click()
    page.locator("#history-compare img").nth(1).wait_for()
    assert "A: seed 15 · ψ 0.3" in page.locator("#history-compare").inner_text()


def test_bad_inputs_are_refused_not_clamped(page, app_url):
    open_page(page, app_url)
    set_number(page, "#seed", "5", key="Enter")
    src, _ = wait_alt(page, "seed 5,")
    cases = [
        ("#psi", "", "Tab", "Truncation ψ: enter a number between -1 and 2", "1"),
        ("#psi", "5", "Tab", "Truncation ψ: 5 is not between -1 and 2", "1"),
        ("#psi", "-3", "Tab", "Truncation ψ: -3 is not between -1 and 2", "1"),
        ("#seed", "1.5", "Enter", "Seed: 1.5 is not a whole number", "5"),
        ("#seed", "-1", "Enter", "Seed: -1 is not between 0 and", "5"),
    ]
    for selector, typed, key, message, kept in cases:
        set_number(page, selector, typed, key)
        assert message in refusal(page)
        assert page.locator(f"{selector} input[type=number]").first.input_value() == kept
        page.locator("#gs-refusal button").click()
    page.get_by_role("tab", name="Interpolation").click()
    set_number(page, "#interp-frames", "100")
    assert "Frames: 100 is not between 2 and 32" in refusal(page)
    assert page.locator("#interp-frames input[type=number]").input_value() == "8"
    # Nothing was rendered for any of them: the image is still seed 5's.
    page.get_by_role("tab", name="Seed", exact=True).click()
    assert page.locator("#image img").get_attribute("src") == src
    # A server-side refusal (too many seeds) is one line: a toast and the status, no error badge, nothing dimmed.
    page.get_by_role("tab", name="Seed grid").click()
    fill_text(page, "#grid-seeds", "0-99", key="Enter")
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert "100 images requested; the limit is 64" in toast.inner_text()
    assert "Traceback" not in toast.inner_text()
    assert "limit is 64" in wait_status(page, "limit is 64")
    assert page.locator("[data-testid=status-tracker] .error").count() == 0
    assert page.locator("[data-testid=status-tracker].translucent:not(.hide)").count() == 0
    assert page.locator("#grid-generate").is_enabled()


def test_direction_sliders_and_strips(page, app_url, models):
    G = models["tiny"]
    open_page(page, app_url)
    set_number(page, "#seed", "4", key="Enter")
    src, png0 = wait_alt(page, "seed 4,")
    t0 = time.perf_counter()
    page.locator("#directions").get_by_text("Semantic directions").click()
    page.wait_for_selector("#strip-9 img", state="attached")
    TIMINGS["open directions: 10 strips of 7"] = time.perf_counter() - t0
    assert page.locator("#edit-0").is_visible() and page.locator("#edit-9").is_visible()
    # A strip: the seed at -3 .. +3 along that direction; its middle is the unedited image.
    strip = pixels(page.request.get(page.locator("#strip-1 img").get_attribute("src")).body())
    h = G.config.resolution
    assert strip.shape[:2] == (h, 7 * h)
    np.testing.assert_array_equal(strip[:, 3 * h : 4 * h], pixels(png0))
    want = sample(G, seeds=[4], edits=[{"direction": 1, "amount": 3.0, "method": "sefa"}]).images[0]
    np.testing.assert_array_equal(strip[:, 6 * h :], want)

    # Releasing a slider edits the shown image; amount 0 is the unedited image exactly.
    set_number(page, "#edit-2", "2")
    src, png = wait_new_image(page, src)
    want = sample(G, seeds=[4], edits=[{"direction": 2, "amount": 2.0, "method": "sefa"}])
    np.testing.assert_array_equal(pixels(png), want.images[0])
    assert read_png_params(png)["edits"] == want.params[0]["edits"]
    page.wait_for_function("() => location.search.includes('edit_2=2')")
    # Edits apply to the other tabs' requests too.
    page.get_by_role("tab", name="Seed grid").click()
    fill_text(page, "#grid-seeds", "4,9", key="Enter")
    # (the tab's default grid, rendered on arrival, may show first: wait for the two asked for)
    page.wait_for_function("() => document.querySelectorAll('#grid-gallery .thumbnail-item').length === 2")
    first_thumb = page.locator("#grid-gallery .thumbnail-item img").first.get_attribute("src")
    np.testing.assert_array_equal(pixels(page.request.get(first_thumb).body()), want.images[0])
    page.get_by_role("tab", name="Seed", exact=True).click()
    # PCA, on the coarse layers only.
    page.locator("#edit-method").get_by_text("PCA", exact=True).click()
    src, png = wait_new_image(page, src)
    want = sample(G, seeds=[4], edits=[{"direction": 2, "amount": 2.0, "method": "pca"}])
    np.testing.assert_array_equal(pixels(png), want.images[0])
    set_number(page, "#edit-2", "0")
    src, png = wait_new_image(page, src)
    np.testing.assert_array_equal(pixels(png), pixels(png0))
    assert "edits" not in read_png_params(png)


def test_projection_round_trip(page, app_url, models, tmp_path):
    G = models["tiny"]
    target = tmp_path / "target.png"
    Image.fromarray(sample(G, seeds=[3]).images[0]).save(target)
    open_page(page, app_url)
    page.get_by_role("tab", name="Projection").click()
    page.locator("#project-image input[type=file]").set_input_files(str(target))
    set_number(page, "#project-steps", "6")
    # Progress: a flag flips when Gradio's progress display appears over the reconstruction.
    page.evaluate("""() => { window.sawProgress = false; new MutationObserver(() => {
        const r = document.querySelector('#project-result');
        if (r && r.querySelector('.progress-text, .eta-bar, .meta-text')) window.sawProgress = true;
        }).observe(document.body, {subtree: true, childList: true}); }""")
    t0 = time.perf_counter()
    page.click("#project-run")
    page.wait_for_selector("#project-result img")
    TIMINGS["project 6 steps (tiny)"] = time.perf_counter() - t0
    assert page.evaluate("window.sawProgress")
    info = page.locator("#project-info").inner_text()
    assert "PSNR" in info and "dB" in info
    _, recon = shown_png(page, "#project-result img")
    params = read_png_params(recon)
    w = params["w"]
    assert page.locator("#w-source input, #w-source textarea").first.input_value() == w
    # The core answers the same request with the same w, pixels and parameters.
    want = sample(G, project=_b64(target), project_steps=6, truncation_psi=1.0)
    np.testing.assert_array_equal(pixels(recon), want.images[0])
    assert params == want.params[0]

    # The projected w is now the Seed tab's source (edits apply to it), and the mixing figure's row.
    page.get_by_role("tab", name="Seed", exact=True).click()
    page.click("#generate")
    page.wait_for_function("w => (document.querySelector('#image img')?.alt || '').includes(w)", arg=w)
    _, png = shown_png(page)
    np.testing.assert_array_equal(pixels(png), sample(G, w=w).images[0])
    page.get_by_role("tab", name="Style mixing").click()
    page.click("#mix-generate")
    page.wait_for_selector("#mix-figure-view img")
    assert w in page.locator("#mix-figure-view .gs-figure-rows").inner_text()
    # Back to seeds.
    page.click("#use-seeds")
    page.wait_for_function("() => !location.search.includes('w=w')")
    assert page.locator("#w-source input, #w-source textarea").first.input_value() == ""


def _b64(path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def test_seed_browser_sends_seeds(page, app_url):
    open_page(page, app_url)
    page.get_by_role("tab", name="Seed browser").click()
    t0 = time.perf_counter()
    page.click("#browse-next")
    wait_status(page, "seeds 64-127")
    TIMINGS["seed browser page of 64"] = time.perf_counter() - t0
    thumbs = page.locator("#browse-gallery .thumbnail-item")
    assert thumbs.count() == 64
    # Click through: to the mixing columns, to the interpolation end, then to Seed (which switches tab and renders).
    page.locator("#send-to").get_by_text("Style mixing: add to the column seeds").click()
    thumbs.nth(2).click()
    wait_status(page, "Seed 66 added to the style-mixing column seeds: 10-13,66")
    page.locator("#send-to").get_by_text("Interpolation: end").click()
    thumbs.nth(3).click()
    wait_status(page, "Seed 67 is the interpolation end")
    page.locator("#send-to").get_by_text("Seed", exact=True).click()
    thumbs.nth(5).click()
    page.wait_for_function("() => (document.querySelector('#image img')?.alt || '').includes('seed 69')")
    assert page.locator("#seed input").input_value() == "69"
    q = query(page)
    assert (q["cols"], q["to"], q["seed"], q["tab"]) == ("10-13,66", "67", "69", "seed")
    page.get_by_role("tab", name="Style mixing").click()
    assert page.locator("#mix-cols textarea, #mix-cols input").first.input_value() == "10-13,66"


def test_layout_and_accessibility(page, browser, app_url):
    open_page(page, app_url)
    # Style mixing offers only the groups 'tiny' (6 ws) has; the custom sliders show only for 'custom'.
    page.get_by_role("tab", name="Style mixing").click()
    labels = page.locator("#mix-layers label").all_inner_texts()
    assert [t.strip() for t in labels] == ["coarse", "middle", "custom"]
    assert not page.locator("#mix-first").is_visible()
    page.locator("#mix-layers").get_by_text("custom").click()
    page.locator("#mix-first").wait_for(state="visible")
    page.wait_for_selector("#mix-figure-view img")
    # The figure: a whole-number scale, seed labels over the columns and beside the rows.
    fig = page.locator("#mix-figure-view img")
    natural, shown = fig.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    assert shown >= natural and shown % natural == 0
    assert page.locator("#mix-figure-view .gs-figure-cols").inner_text().split() == [
        "seed", "10", "seed", "11", "seed", "12", "seed", "13"]  # fmt: skip
    assert "seed 0" in page.locator("#mix-figure-view .gs-figure-rows").inner_text()

    # A 64-seed grid is shown whole: no scroll box, every thumbnail inside the gallery, captions under the pictures.
    page.get_by_role("tab", name="Seed grid").click()
    fill_text(page, "#grid-seeds", "0-63", key="Enter")
    page.locator("#grid-gallery .thumbnail-item").nth(63).wait_for()
    page.locator("#grid-gallery .thumbnail-item img").nth(63).wait_for()
    box = page.locator("#grid-gallery").bounding_box()
    last = page.locator("#grid-gallery .thumbnail-item").nth(63).bounding_box()
    assert last["y"] + last["height"] <= box["y"] + box["height"] + 1
    scroll = page.locator("#grid-gallery .grid-wrap").evaluate("e => [e.scrollHeight, e.clientHeight]")
    assert scroll[0] <= scroll[1] + 1
    img = page.locator("#grid-gallery .thumbnail-item img").first.bounding_box()
    cap = page.locator("#grid-gallery .caption-label").first.bounding_box()
    assert cap["y"] >= img["y"] + img["height"] - 1  # the caption is under the picture, not on it
    label = page.locator("#grid-gallery [data-testid=block-label]").bounding_box()
    assert label["y"] + label["height"] <= img["y"] + 1  # the gallery's label is above the first row

    # The 32-frame strip is readable: at least 64 px tall, a whole-number scale, frame labels.
    page.get_by_role("tab", name="Interpolation").click()
    set_number(page, "#interp-frames", "32")
    page.wait_for_function("() => document.querySelectorAll('#interp-strip-view .gs-figure-cols span').length === 32")
    h, nh = page.locator("#interp-strip-view img").evaluate("i => [i.getBoundingClientRect().height, i.naturalHeight]")
    assert h >= 64 and h % nh == 0

    # Keyboard focus on a slider is visible.
    page.locator("#psi input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    outline = page.locator("#psi input[type=range]").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none"

    # A phone-sized window: Generate is on the first screen.
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        open_page(phone, app_url)
        top = phone.locator("#generate").bounding_box()["y"]
        assert top + 40 < 844, top
    finally:
        phone.close()


def test_model_switch_shows_class_picker_and_gallery_click_shows_params(page, app_url):
    open_page(page, app_url)
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
    fill_text(page, "#grid-seeds", "5-8", key="Enter")
    page.wait_for_function("() => location.search.includes('grid=5-8') && location.search.includes('class=2')")
    thumbs = page.locator("#grid-gallery .thumbnail-item")
    thumbs.nth(3).wait_for()
    assert thumbs.count() == 4
    thumbs.nth(2).click()
    # The JSON viewer puts tokens on lines of their own: compare without whitespace.
    page.wait_for_function(
        "() => document.querySelector('#params').innerText.replace(/\\s+/g, '').includes('\"seeds\":[7]')"
    )
    text = "".join(page.locator("#params").inner_text().split())
    assert '"class":2' in text and '"model":"tiny-cond"' in text
    assert RETRIES["count"] == 0  # no typed value was lost to an update in flight


def visible_tabs(page) -> list[str]:
    return [t.inner_text() for t in page.get_by_role("tab").all() if t.is_visible()]


def pick_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.get_by_role("option", name=name, exact=True).wait_for(state="hidden")


def test_controls_follow_the_model_and_switch_back_cleanly(page, app_url):
    # A BigGAN model: no style mixing, projection, latent source or directions; psi in (0, 1]; z interpolation.
    open_page(page, f"{app_url}?model=tiny-biggan&class=1&seed=3&psi=0.5&tab=seed")
    page.wait_for_selector("#image img")
    assert visible_tabs(page) == ["Seed", "Seed grid", "Interpolation", "Seed browser"]
    assert not page.locator("#directions").is_visible() and not page.locator("#w-source").is_visible()
    assert page.locator("#psi input[type=number]").get_attribute("max") == "1"
    # To a StyleGAN2 model: its tabs and panels come back, and settings that meant "the default" stay the default
    # (every w truncated, the first mixing group), not the BigGAN's leftovers.
    pick_model(page, "tiny")
    page.wait_for_function("() => location.search.includes('model=tiny&')")
    assert visible_tabs(page) == ["Seed", "Seed grid", "Style mixing", "Interpolation", "Seed browser", "Projection"]
    assert page.locator("#directions").is_visible()
    q = query(page)
    assert (q["cutoff"], q["layers"], q["psi"]) == ("6", "coarse", "0.5")
    # Back, with a psi BigGAN cannot take: it goes to the model's default and the status says so; nothing breaks.
    set_number(page, "#psi", "1.5")
    page.wait_for_function("() => location.search.includes('psi=1.5')")
    pick_model(page, "tiny-biggan")
    assert "outside this model's range" in wait_status(page, "outside this model's range")
    set_number(page, "#psi", "0.3")
    page.wait_for_function("() => location.search.includes('psi=0.3') && location.search.includes('model=tiny-biggan')")
    assert page.locator("[data-testid=status-tracker] .error").count() == 0


def test_class_from_the_seed_in_the_picker(page, app_url, tmp_path):
    # A link with class=-1 on a BigGAN model: the picker shows "from the seed", the image is the seed's own class.
    open_page(page, f"{app_url}?model=tiny-biggan&class=-1&seed=4&psi=0.5&tab=seed")
    page.wait_for_selector("#image img")
    assert page.locator("#class input").input_value() == "from the seed (seed % 3)"
    _, png = shown_png(page)
    from tests.family_fixtures import make_tiny_biggan, save_tiny

    G = ganserve.load(save_tiny(tmp_path, "tiny-biggan", make_tiny_biggan()))  # the app's model: same weights
    want = sample(G, seeds=[4], truncation_psi=0.5)
    assert want.params[0]["class"] == 1
    np.testing.assert_array_equal(pixels(png), want.images[0])
