"""Links to a tab the page was not built with (Style mixing, Projection, VQ on a page built for a BigGAN model) open
on that tab, every time; the Copy link button; the whole grid as one PNG and as a zip. In Debian's chromium
(Playwright), on the BigGAN-first page of test_ui_browser_defaults. Every wait is on a condition in the page."""

from __future__ import annotations

import io
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")

from ganserve.images import read_png_params
from tests.test_ui_browser import browser, open_page, set_number  # noqa: F401
from tests.test_ui_browser_defaults import G, page, paths, url  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

SELECTED = "() => document.querySelector('[role=tab][aria-selected=true]')?.innerText.trim()"


def selected_tab(page) -> str:  # noqa: F811
    return page.evaluate(SELECTED)


@pytest.mark.parametrize(
    ("query", "label"),
    [
        # a tab the page's first model hides and one of another family: every hidden tab is shown by the same
        # script (gsShowTab), so two loads cover it inside the suite's time budget
        ("tab=mix&model=tiny", "Style mixing"),
        ("tab=vq&model=tiny-vqgan", "VQ: reconstruct & re-sample"),
    ],
)
def test_a_link_to_a_hidden_tab_opens_it(page, url, query, label):  # noqa: F811
    # A slow browser (a phone, a busy machine) widens the race between un-hiding the tab and selecting it.
    page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 4})
    page.goto("about:blank")  # the last page's late requests cannot abort the next navigation
    open_page(page, f"{url}?{query}")
    page.wait_for_function(f"l => ({SELECTED})() === l", arg=label, timeout=20_000)
    # ... and stays there (a late select of the Seed tab must not undo it)
    page.wait_for_function("() => document.querySelector('#status').innerText.includes('Opened from the link')")
    assert selected_tab(page) == label


def test_copy_link_copies_the_current_settings(browser, url):  # noqa: F811
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    try:
        open_page(pg, f"{url}?model=tiny&seed=42&psi=0.5")
        pg.wait_for_function("() => location.search.includes('seed=42')")
        pg.locator("#copy-link").click()
        pg.wait_for_function("() => document.querySelector('#gs-copied')?.innerText === 'Link copied.'")
        copied = pg.evaluate("() => navigator.clipboard.readText()")
        assert copied == pg.url
        q = parse_qs(urlsplit(copied).query)
        assert (q["model"], q["seed"], q["psi"]) == (["tiny"], ["42"], ["0.5"])
        set_number(pg, "#seed", "43", key="Enter")  # a new render: the link follows it
        pg.wait_for_function("() => location.search.includes('seed=43')")
        pg.locator("#copy-link").click()
        pg.wait_for_function("() => navigator.clipboard.readText().then(t => t.includes('seed=43'))")
    finally:
        context.close()


def test_the_whole_grid_downloads_as_png_and_zip(page, url):  # noqa: F811
    open_page(page, f"{url}?tab=grid&model=tiny&grid=0-3&psi=0.5")
    links = page.locator("#grid-download a")
    links.nth(1).wait_for()
    hrefs = sorted((links.nth(k).get_attribute("href") for k in range(links.count())), key=lambda h: h[-3:])
    assert [h.rsplit(".", 1)[1] for h in hrefs] == ["png", "zip"]
    sheet = page.request.get(hrefs[0]).body()
    params = read_png_params(sheet)["grid"]
    assert [p["seeds"][0] for p in params] == [0, 1, 2, 3] and params[0]["truncation_psi"] == 0.5
    with zipfile.ZipFile(io.BytesIO(page.request.get(hrefs[1]).body())) as z:
        names = z.namelist()
    assert len(names) == 5 and names[-1] == "params.json" and names[0].startswith("000-tiny-seed0000")
