"""The latent explorer: a Gradio Blocks app over a Backend (local models or a ganserve server).

Shared settings (model, latent source, truncation, noise, class, VQ sampling) sit in a sidebar; tabs make images from
them: one seed, a grid of seeds, style mixing (StyleGAN2-ADA's figure, labelled), interpolation (a strip and a GIF),
a seed browser (64 seeds a page; a click sends a seed to another tab) and projection of a real image into W. A panel
of semantic-direction sliders (SeFa / PCA) edits every tab's requests. Every image is a PNG with its parameters
embedded; dropping one on *Restore settings* restores and re-renders it, and the page URL carries every setting.

The page is live: releasing a slider, Enter in a box, the arrow keys in the seed box or a changed choice re-render
the tab shown; events that arrive while one runs collapse to the latest (``trigger_mode="always_last"``, one render
at a time). Page events never fail: a refused value is a warning toast and a status line, and the last good pictures
stay as they were. The API endpoints (``/generate``, ``/grid``, ``/style_mix``, ``/interpolate``, ``/browse``,
``/strips``, ``/project``, ``/restore``, ``/model_info``) are separate events on hidden buttons, so their answers
stay plain values and their errors stay errors (``AppError`` for gradio_client).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import gradio as gr

from ganserve.ui import fields
from ganserve.ui.actions import seeds_text
from ganserve.ui.api import wire_api
from ganserve.ui.assets import CSS, head
from ganserve.ui.backend import Backend, ModelInfo
from ganserve.ui.controls import ControlSpec, common_fields

# Re-exported: other modules and tests import these from here.
from ganserve.ui.model_controls import (  # noqa: F401
    COMMON_API,
    COMMON_KEYS,
    EDIT_API,
    METHOD_LABELS,
    MODEL_NUMBERS,
    PAGE_DEFAULTS,
    PSI_STEP,
    TEMP_STEP,
    _check_url_value,
    _class_index,
    _model_updates,
    _slider,
    model_defaults,
    url_for,
)
from ganserve.ui.page import Page
from ganserve.ui.panels import (
    attention,
    browse,
    directions,
    grid,
    history,
    interp,
    lifecycle,
    mix,
    project,
    seed,
    sidebar,
    upscale,
)
from ganserve.ui.vq import vq_tab
from ganserve.ui.widgets import IMAGE_BUTTONS, _readable  # noqa: F401

TITLE = "ganserve latent explorer"
# System fonts only: the default theme would fetch Google Fonts, which an offline machine waits on.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
PANELS = (sidebar, seed, grid, mix, interp, browse, project, directions, attention)
VQ_FIELDS = ("image", "keep")  # the VQ tab's (ganserve.ui.vq)


def claimed_fields() -> set[str]:
    """The request fields the page's panels present themselves; every other declared field gets a generic control."""
    return {f for panel in PANELS for f in panel.FIELDS} | set(VQ_FIELDS)


def build_app(backend: Backend, title: str = TITLE) -> gr.Blocks:
    """The explorer over ``backend``. Launch it with ``launch(app)``."""
    page = Page(backend)
    page.extras = fields.collect(_request_models(page), claimed_fields())
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"## {title}\n Generator source: **{backend.label}**. Every image is a PNG that carries its settings "
            "(drop one on *Restore settings*), and the page address holds the current settings: share it.",
            elem_id="gs-intro",
        )
        with gr.Row(elem_id="gs-main-row"):
            side = sidebar.build(page)
            with gr.Column(scale=3, elem_id="gs-main-col"):
                with gr.Tabs(selected="seed") as tabs:
                    tabs_built = [(seed, seed.build(page))]
                    tabs_built += [(upscale, upscale.build(page, tabs_built[0][1].tab))]  # in the Seed tab
                    tabs_built += [(history, history.build(page, tabs_built[0][1].tab))]  # so is the history
                    tabs_built += [(grid, grid.build(page)), (mix, mix.build(page))]
                    vq = vq_tab(page.spec0.region_resampling)  # VQ families: reconstruction and region re-sampling
                    page.tab_items["vq"] = vq.tab
                    page.M["vq_tab"] = vq.tab
                    tabs_built += [
                        (interp, interp.build(page)),
                        (browse, browse.build(page)),
                        (project, project.build(page)),
                    ]
                dirs = directions.build(page)
                attn = attention.build(page)  # models that declare `attention`
        page.finish(tabs)
        sidebar.wire(page, side)
        for panel, built in tabs_built:
            panel.wire(page, built)
        directions.wire(page, dirs)
        attention.wire(page, attn)
        # The shared settings re-render the tab shown.
        page.on([*sidebar.triggers(page), *directions.triggers(page)], page.render_tab(None))
        lifecycle.wire_tabs(page)
        lifecycle.wire_model_switch(page)
        lifecycle.wire_restore(page, side.restore_file)
        lifecycle.wire_load(app, page)
        wire_api(page)
        _wire_vq(page, vq)
    app.ganserve_files_root = str(page.ex.files.root)  # served as an allowed path (labelled figures link to their PNGs)
    return app


def _request_models(page: Page) -> list[type]:
    """The request models whose declared fields the page offers: every family this install can load."""
    return fields.registered_request_models()


def _wire_vq(page: Page, vq: Any) -> None:
    """The VQ tab: its own button and endpoint (/vq_resample) with the sidebar's settings."""
    ex, C = page.ex, page.C
    keys = [*COMMON_KEYS, *(c.key for c in page.extras)]

    def vq_request(name: str, common_values: tuple, **request: Any) -> tuple[ModelInfo, dict[str, Any]]:
        info = ex.info(name)
        spec = ControlSpec.from_info(info)
        v = dict(zip(keys, common_values))
        return info, {**request, **common_fields(spec, ex.settings(spec, v)), **fields.request_values(spec, v)}

    vq.wire(
        page.backend,
        C["model"],
        [C[k] for k in keys],
        vq_request,
        ex.save,
        ex.save_array,
        seeds_text,
        _readable,
        page.OUT["params"],
        page.status,
    )


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Start the app (localhost only by default; no share links, no SSR node server)."""
    kwargs.setdefault("show_error", True)
    allowed = list(kwargs.pop("allowed_paths", None) or [])
    root = getattr(app, "ganserve_files_root", None)
    if root:
        allowed.append(root)
    return app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        theme=THEME,
        css=CSS + history.CSS,
        head=head(),
        footer_links=["api"],
        allowed_paths=allowed,
        **kwargs,
    )
