"""The Projection tab: optimise a w that reproduces an uploaded image (StyleGAN2-ADA's projector); its w becomes
the sidebar's latent source. Runs on its button only (minutes), with progress where the backend reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ganserve.ui.backend import BackendError
from ganserve.ui.model_controls import _projection_note, url_for
from ganserve.ui.page import Page
from ganserve.ui.widgets import _message, _out_image, log

FIELDS = ("project", "project_steps")


@dataclass
class ProjectTab:
    tab: Any
    image: Any
    button: Any
    result: Any
    info: Any


def build(page: Page) -> ProjectTab:
    """The tab (call inside the page's gr.Tabs)."""
    with gr.Tab("Projection", id="project", visible=page.spec0.projection) as tab:
        with gr.Row():
            image = gr.Image(
                type="filepath",
                format="png",
                sources=["upload", "clipboard"],
                label="Image to project (square PNG or JPEG)",
                elem_id="project-image",
            )
            with gr.Column():
                r = page.spec0.ranges.get("project_steps")
                lo, hi, start = (int(r.minimum), int(r.maximum), int(r.default or 300)) if r else (1, 1000, 300)
                page.C["steps"] = gr.Slider(
                    lo, hi, value=start, step=1, label="Optimisation steps", elem_id="project-steps"
                )
                button = gr.Button("Project into W", variant="primary", elem_id="project-run")
                gr.Markdown(_projection_note(page.backend), elem_id="project-note")
        result = _out_image("Reconstruction", "The projection's reconstruction", "project-result")
        info = gr.Markdown("", elem_id="project-info")
    page.tab_items["project"] = tab
    page.M.update(proj_tab=tab, steps=page.C["steps"])
    page.OUT.update(proj_result=result, proj_info=info)
    page.named_inputs["project_image"] = image
    return ProjectTab(tab, image, button, result, info)


def wire(page: Page, t: ProjectTab) -> None:
    ex, backend = page.ex, page.backend

    def project_action(d: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
        v = page.values(d)
        reports = getattr(backend, "reports_progress", False)

        def step(k: int, n: int) -> None:
            progress((k, n), desc="projecting", unit="steps")

        try:
            if not reports:
                progress(None, desc="projecting on the server: no progress events over HTTP, please wait")
            r = ex.project(v, step if reports else None)
        except Exception as e:
            if not isinstance(e, (BackendError, ValueError)):
                log.exception("unexpected error in projection")
            msg = _message(e)
            gr.Warning(msg, title="Not projected")
            # The last reconstruction and its PSNR belong to another image: cleared, not left as this one's.
            return {page.status: f"⚠ {msg}", t.info: f"⚠ Not projected: {msg}", t.result: None}
        v["w"] = r["w"]
        return {
            t.result: gr.update(value=r["proj_result"], alt_text=r["proj_alt"]),
            t.info: r["proj_info"],
            page.C["w"]: r["w"],
            page.OUT["params"]: r["params"],
            page.status: r["status"],
            page.url_box: url_for(ex, {**v, "tab": "project"}),
        }

    page.then_strips(
        t.button.click(
            project_action,
            inputs=page.inputs,
            outputs=page.outputs,
            concurrency_id="project",
            concurrency_limit=1,
            show_progress="full",
            show_progress_on=[t.result],
            api_visibility="private",
        )
    )
