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

import inspect
import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import gradio as gr

from ganserve.requests import MAX_SEED
from ganserve.ui import urlstate
from ganserve.ui.actions import (
    BROWSE_PAGE,
    EDIT_RANGE,
    FROM_SEED,
    MAX_FRAMES,
    SEND_TARGETS,
    Explorer,
    number,
    seed_value,
    seeds_text,
)
from ganserve.ui.assets import CSS, head
from ganserve.ui.backend import Backend, BackendError, ModelInfo
from ganserve.ui.controls import (
    ALL_LAYERS,
    MAX_SLIDERS,
    ControlSpec,
    common_fields,
)
from ganserve.ui.restore import Restored, format_seeds, restore_from_png
from ganserve.ui.vq import vq_tab

log = logging.getLogger("ganserve.ui")

TITLE = "ganserve latent explorer"
# System fonts only: the default theme would fetch Google Fonts, which an offline machine waits on.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
IMAGE_BUTTONS = ["download", "fullscreen"]  # no "share": it only works on Hugging Face Spaces
METHOD_LABELS = {"sefa": "SeFa", "pca": "PCA"}
# gradio_client names of the shared controls -> the page's setting keys
COMMON_API = {
    "psi": "psi",
    "cutoff": "cutoff",
    "noise_mode": "noise",
    "class_index": "class",
    "temperature": "temp",
    "top_k": "top_k",
    "top_p": "top_p",
}
EDIT_API = ["edit_method", "edit_layers", "edit_first", "edit_last", *[f"edit_{k}" for k in range(MAX_SLIDERS)]]
# Numbers whose page sliders are bounded by the first model (other models' bounds differ): checked in the actions.
MODEL_NUMBERS = (
    "psi",
    "cutoff",
    "temp",
    "top_p",
    "first",
    "last",
    "edit_first",
    "edit_last",
    *[f"edit_{k}" for k in range(MAX_SLIDERS)],
)
COMMON_KEYS = ("psi", "cutoff", "noise", "class", "temp", "top_k", "top_p")
PSI_STEP, TEMP_STEP = 0.05, 0.01
# The settings whose defaults no model changes (the controls start with them; ``model_defaults`` adds the rest).
PAGE_DEFAULTS: dict[str, Any] = {
    "w": "",
    "top_k": 0,
    "top_p": 1.0,
    "seed": 0,
    "grid": "0-15",
    "grid_classes": [],
    "rows": "0-3",
    "cols": "10-13",
    "from": 0,
    "to": 1,
    "frames": 8,
    "to_class": -1,
    "browse": 0,
    "send_to": "seed",
    "edit_layers": ALL_LAYERS,
    **{f"edit_{k}": 0.0 for k in range(MAX_SLIDERS)},
}


def _message(e: Exception) -> str:
    if isinstance(e, BackendError):
        return f"Invalid {e.field}: {e.message}" if e.field else e.message
    if isinstance(e, ValueError):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}"


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """API endpoints: failures become one readable line (gr.Error; AppError for gradio_client), never a trace."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (BackendError, ValueError) as e:
            raise gr.Error(_message(e), print_exception=False) from None
        except Exception as e:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(_message(e), print_exception=False) from None

    return wrapper


def build_app(backend: Backend, title: str = TITLE) -> gr.Blocks:
    """The explorer over ``backend``. Launch it with ``launch(app)``."""
    ex = Explorer(backend)
    models = backend.models()
    first = models[0] if models else None
    info0 = ex.info(first) if first else None
    spec0 = ControlSpec.from_info(info0) if info0 else ControlSpec(frozenset())
    C: dict[str, Any] = {}  # the settings, keyed as urlstate.KEYS: URL, page and API share these names
    last_w = max(spec0.num_ws - 1, 1)  # a model without ws still needs valid sliders

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"## {title}\n Generator source: **{backend.label}**. Every image is a PNG that carries its settings "
            "(drop one on *Restore settings*), and the page address holds the current settings: share it.",
            elem_id="gs-intro",
        )
        with gr.Row(elem_id="gs-main-row"):
            # ---- sidebar ---------------------------------------------------------------------------------------
            with gr.Column(scale=1, min_width=280, elem_id="gs-sidebar"):
                C["model"] = gr.Dropdown(models, value=first, label="Model", elem_id="model")
                model_md = gr.Markdown(_model_text(info0))
                with gr.Group(visible=spec0.latent_source) as source_group:
                    C["w"] = gr.Textbox(
                        "",
                        label="Start from a latent (a projection's w; empty: the seeds)",
                        placeholder="w:0123456789abcdef",
                        max_lines=1,
                        elem_id="w-source",
                    )
                    use_seeds = gr.Button("Use seeds", size="sm", elem_id="use-seeds")
                C["psi"] = gr.Slider(
                    **_slider(spec0, "truncation_psi", -1, 2, 1.0, PSI_STEP),
                    step=PSI_STEP,
                    label="Truncation ψ",
                    elem_id="psi",
                    visible=spec0.has("truncation_psi"),
                )
                C["cutoff"] = gr.Slider(
                    0,
                    max(spec0.num_ws, 1),
                    value=max(spec0.num_ws, 1),
                    step=1,
                    elem_id="cutoff",
                    label="Truncation cutoff",
                    info="truncate the first N ws (max: all)",
                    visible=spec0.has("truncation_cutoff"),
                )
                C["noise"] = gr.Radio(
                    list(spec0.choices.get("noise_mode", ("const",))),
                    value="const",
                    label="Noise mode",
                    visible=spec0.has("noise_mode"),
                    elem_id="noise",
                )
                C["class"] = gr.Dropdown(
                    _picker_choices(spec0),
                    value=model_defaults(spec0)["class"],
                    label="Class",
                    visible=spec0.class_picker,
                    # API callers may pick a class of any served model, not only of the one the page shows first.
                    allow_custom_value=True,
                    elem_id="class",
                )
                with gr.Group(visible=spec0.vq_sampling) as vq_group:
                    C["temp"] = gr.Slider(
                        **_slider(spec0, "temperature", 0.01, 10, 1.0, TEMP_STEP),
                        step=TEMP_STEP,
                        label="Temperature",
                        elem_id="temp",
                    )
                    C["top_k"] = gr.Number(0, precision=0, minimum=0, label="Top-k (0 = off)", elem_id="top-k")
                    C["top_p"] = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="Top-p (1 = off)", elem_id="top-p")
                restore_file = gr.File(
                    label="Restore settings from a ganserve PNG (drop it here)",
                    file_types=[".png"],
                    type="binary",
                    interactive=True,
                    elem_id="restore",
                )
                status = gr.Markdown("", elem_id="status")
                params_box = gr.JSON(label="Image parameters", elem_id="params")
            # ---- tabs ------------------------------------------------------------------------------------------
            with gr.Column(scale=3, elem_id="gs-main-col"):
                with gr.Tabs(selected="seed") as tabs:
                    with gr.Tab("Seed", id="seed") as seed_tab:
                        with gr.Row():
                            C["seed"] = gr.Number(
                                0, precision=None, label="Seed", info="Enter: render; ↑ / ↓: seed ± 1", elem_id="seed"
                            )
                            rand_btn = gr.Button("Random seed", elem_id="random")
                            gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                        image = _out_image("Image", "The generated image (Generate to make one)", "image")
                        with gr.Accordion("Region re-sampling", open=False, visible=spec0.region_resampling) as region:
                            region_image = gr.Image(
                                type="filepath",
                                format="png",
                                sources=["upload"],
                                label="Source image (its codes outside the box are re-sampled)",
                            )
                            region_box = gr.Textbox("0,0,4,4", label="Keep box: top, left, bottom, right (in codes)")
                    with gr.Tab("Seed grid", id="grid") as grid_tab:
                        with gr.Row():
                            C["grid"] = gr.Textbox(
                                "0-15",
                                label="Seeds (e.g. 0-15 or 1,5,9; Enter: render)",
                                elem_id="grid-seeds",
                                max_lines=1,
                            )
                            grid_btn = gr.Button("Generate grid", variant="primary", elem_id="grid-generate")
                        C["grid_classes"] = gr.Dropdown(
                            _class_choices(spec0),
                            value=[],
                            multiselect=True,
                            label="Classes, one row each (class-by-seed grid; empty: the sidebar's class)",
                            visible=spec0.class_grid,
                            elem_id="grid-classes",
                        )
                        grid_gallery = _gallery("Grid", "grid-gallery")
                    with gr.Tab("Style mixing", id="mix", visible=spec0.has("style_mix")) as mix_tab:
                        with gr.Row():
                            C["rows"] = gr.Textbox(
                                "0-3", label="Row seeds (take the other layers)", max_lines=1, elem_id="mix-rows"
                            )
                            C["cols"] = gr.Textbox(
                                "10-13", label="Column seeds (give the chosen layers)", max_lines=1, elem_id="mix-cols"
                            )
                        with gr.Row():
                            presets = spec0.mix_presets
                            C["layers"] = gr.Radio(
                                list(presets),
                                value=presets[0],
                                label="Layers from the column seeds",
                                elem_id="mix-layers",
                            )
                            C["first"] = gr.Slider(
                                0,
                                last_w,
                                value=0,
                                step=1,
                                label="Custom first layer",
                                visible=presets[0] == "custom",
                                elem_id="mix-first",
                            )
                            C["last"] = gr.Slider(
                                0,
                                last_w,
                                value=min(3, last_w),
                                step=1,
                                label="Custom last layer (inclusive)",
                                visible=presets[0] == "custom",
                                elem_id="mix-last",
                            )
                        mix_btn = gr.Button("Mix styles", variant="primary", elem_id="mix-generate")
                        mix_view = gr.HTML("", elem_id="mix-view")
                        mix_figure = gr.Image(
                            format="png",
                            type="filepath",
                            label="Style mixing figure",
                            interactive=False,
                            visible=False,
                            elem_id="mix-figure",
                        )
                        mix_gallery = _gallery("Mixed images", "mix-gallery")
                    vq = vq_tab(spec0.region_resampling)  # VQ families: reconstruction and region re-sampling
                    with gr.Tab("Interpolation", id="interp", visible=spec0.has("interpolate")) as interp_tab:
                        with gr.Row():
                            C["from"] = gr.Number(0, precision=None, label="From seed", elem_id="interp-from")
                            C["to"] = gr.Number(1, precision=None, label="To seed", elem_id="interp-to")
                            C["frames"] = gr.Slider(
                                2, MAX_FRAMES, value=8, step=1, label="Frames", elem_id="interp-frames"
                            )
                            C["space"] = gr.Radio(
                                _space_choices(spec0), value=_space_value(spec0), label="Space", elem_id="interp-space"
                            )
                            C["to_class"] = gr.Dropdown(
                                [("same class", -1), *_class_choices(spec0)],
                                value=-1,
                                label="To class",
                                visible=spec0.class_interpolation,
                                elem_id="interp-to-class",
                            )
                        ip_btn = gr.Button("Interpolate", variant="primary", elem_id="interp-generate")
                        ip_view = gr.HTML("", elem_id="interp-strip")
                        ip_gallery = _gallery("Frames", "interp-gallery")
                        with gr.Row():
                            ip_gif = gr.Image(
                                type="filepath",
                                label="Animation",
                                interactive=False,
                                buttons=IMAGE_BUTTONS,
                                alt_text="Animation of the frames",
                                elem_id="interp-gif",
                                elem_classes=["gs-int", "gs-out", "gs-pixelated"],
                            )
                            ip_file = gr.File(label="Download GIF")
                        ip_strip = gr.Image(
                            format="png", type="filepath", label="Strip", interactive=False, visible=False
                        )
                    with gr.Tab("Seed browser", id="browse") as browse_tab:
                        with gr.Row():
                            prev_btn = gr.Button(f"◀ Previous {BROWSE_PAGE}", elem_id="browse-prev")
                            C["browse"] = gr.Number(
                                0, precision=None, label="First seed of the page (Enter: show)", elem_id="browse-start"
                            )
                            next_btn = gr.Button(f"Next {BROWSE_PAGE} ▶", elem_id="browse-next")
                        C["send_to"] = gr.Radio(
                            _send_choices(spec0), value="seed", label="A click on a seed sends it to", elem_id="send-to"
                        )
                        browse_gallery = _gallery("Seeds", "browse-gallery", allow_preview=False)
                    with gr.Tab("Projection", id="project", visible=spec0.projection) as proj_tab:
                        with gr.Row():
                            proj_image = gr.Image(
                                type="filepath",
                                format="png",
                                sources=["upload", "clipboard"],
                                label="Image to project (square PNG or JPEG)",
                                elem_id="project-image",
                            )
                            with gr.Column():
                                r = spec0.ranges.get("project_steps")
                                C["steps"] = gr.Slider(
                                    int(r.minimum) if r else 1,
                                    int(r.maximum) if r else 1000,
                                    value=int(r.default or 300) if r else 300,
                                    step=1,
                                    label="Optimisation steps",
                                    elem_id="project-steps",
                                )
                                proj_btn = gr.Button("Project into W", variant="primary", elem_id="project-run")
                                gr.Markdown(_projection_note(backend), elem_id="project-note")
                        proj_result = _out_image("Reconstruction", "The projection's reconstruction", "project-result")
                        proj_info = gr.Markdown("", elem_id="project-info")
                # ---- semantic directions ---------------------------------------------------------------------------
                with gr.Accordion(
                    "Semantic directions: move every tab's images along the model's main directions",
                    open=False,
                    visible=spec0.edits,
                    elem_id="directions",
                ) as directions:
                    with gr.Row():
                        C["edit_method"] = gr.Radio(
                            _method_choices(spec0), value=_method_value(spec0), label="Method", elem_id="edit-method"
                        )
                        C["edit_layers"] = gr.Dropdown(
                            _edit_layer_choices(spec0), value=ALL_LAYERS, label="Layers edited", elem_id="edit-layers"
                        )
                        C["edit_first"] = gr.Slider(
                            0, last_w, value=0, step=1, label="First layer", visible=False, elem_id="edit-first"
                        )
                        C["edit_last"] = gr.Slider(
                            0,
                            last_w,
                            value=last_w,
                            step=1,
                            label="Last layer (inclusive)",
                            visible=False,
                            elem_id="edit-last",
                        )
                        edit_reset = gr.Button("All to 0", size="sm", elem_id="edit-reset")
                    gr.Markdown(
                        "Amounts are in standard deviations of the model's ws along each direction (0: unedited). "
                        "Each strip shows the current seed at −3 … +3 along that direction alone; click a strip to "
                        "set its slider.",
                    )
                    edit_rows, strips = [], []
                    for k in range(MAX_SLIDERS):
                        with gr.Row(visible=k < spec0.direction_count, elem_classes="gs-direction-row") as row:
                            C[f"edit_{k}"] = gr.Slider(
                                *EDIT_RANGE,
                                value=0,
                                step=0.1,
                                label=f"Direction {k}",
                                elem_id=f"edit-{k}",
                                scale=1,
                                min_width=200,
                            )
                            strips.append(
                                gr.Image(
                                    format="png",
                                    type="filepath",
                                    show_label=False,
                                    interactive=False,
                                    buttons=[],
                                    alt_text=f"Direction {k}: the seed at −3 … +3",
                                    elem_id=f"strip-{k}",
                                    scale=2,
                                    elem_classes=["gs-int", "gs-strip", "gs-pixelated"],
                                )
                            )
                        edit_rows.append(row)

        # ---- hidden plumbing -------------------------------------------------------------------------------------
        tab_state = gr.State("seed")
        grid_params, mix_params, ip_params, browse_params = gr.State([]), gr.State([]), gr.State([]), gr.State([])
        panel_open, strips_key = gr.State(False), gr.State(None)
        shown_model = gr.State(first)  # the model the controls were last set up for
        # The load event has set the page up. A hidden control, not a State: an event sends the page's values as they
        # were when it fired, and a State is read when it runs (a tab's select at mount would see True).
        loaded = gr.Checkbox(False, visible=False)
        url_box = gr.Textbox("", visible=False)
        seed_go = gr.Button("render seed", visible="hidden", elem_id="seed-go")
        restore_api_file = gr.File(type="binary", visible=False, label="PNG made by ganserve")

        tab_items = {
            "seed": seed_tab,
            "grid": grid_tab,
            "mix": mix_tab,
            "interp": interp_tab,
            "browse": browse_tab,
            "project": proj_tab,
            "vq": vq.tab,
        }
        # What a model switch updates (the first 15 are /model_info's original outputs, in order).
        M: dict[str, Any] = {
            "model_md": model_md,
            "psi": C["psi"],
            "cutoff": C["cutoff"],
            "noise": C["noise"],
            "class": C["class"],
            "vq_group": vq_group,
            "temp": C["temp"],
            "region": region,
            "mix_tab": mix_tab,
            "interp_tab": interp_tab,
            "first": C["first"],
            "last": C["last"],
            "grid_classes": C["grid_classes"],
            "to_class": C["to_class"],
            "space": C["space"],
            "vq_tab": vq.tab,
            "source_group": source_group,
            "proj_tab": proj_tab,
            "steps": C["steps"],
            "directions": directions,
            "edit_method": C["edit_method"],
            "edit_layers": C["edit_layers"],
            "edit_first": C["edit_first"],
            "edit_last": C["edit_last"],
            "layers": C["layers"],
            "send_to": C["send_to"],
            **{f"edit_row_{k}": edit_rows[k] for k in range(MAX_SLIDERS)},
        }
        # Every component a page event may update: each event returns the ones it changes.
        OUT: dict[str, Any] = {
            **{f"set:{k}": c for k, c in C.items()},
            **{f"model:{k}": c for k, c in M.items()},
            "image": image,
            "grid_gallery": grid_gallery,
            "grid_params": grid_params,
            "mix_figure": mix_figure,
            "mix_view": mix_view,
            "mix_gallery": mix_gallery,
            "mix_params": mix_params,
            "ip_gallery": ip_gallery,
            "ip_gif": ip_gif,
            "ip_file": ip_file,
            "ip_strip": ip_strip,
            "ip_view": ip_view,
            "ip_params": ip_params,
            "browse_gallery": browse_gallery,
            "browse_params": browse_params,
            "proj_result": proj_result,
            "proj_info": proj_info,
            "params": params_box,
            "status": status,
            "url": url_box,
            "tabs": tabs,
            "tab": tab_state,
            "shown_model": shown_model,
            "restore": restore_file,
            "loaded": loaded,
            "panel_open": panel_open,
        }
        page_outputs = list(dict.fromkeys(OUT.values()))
        page_inputs = {
            *C.values(),
            tab_state,
            grid_params,
            mix_params,
            ip_params,
            browse_params,
            panel_open,
            strips_key,
            shown_model,
            loaded,
            restore_file,
            region_image,
            region_box,
            proj_image,
            *strips,
        }
        progress_on = [image, grid_gallery, mix_view, ip_view, browse_gallery]

        def values(d: dict[Any, Any]) -> dict[str, Any]:
            v = {k: d.get(c) for k, c in C.items()}
            v.update(
                tab=d.get(tab_state) or "seed",
                region_image=d.get(region_image),
                region_box=d.get(region_box),
                project_image=d.get(proj_image),
            )
            return v

        # ---- what the page shows -----------------------------------------------------------------------------------
        def shown(tab: str, v: dict[str, Any]) -> dict[str, Any]:
            """Render ``tab`` with the settings ``v``: updates keyed as OUT (the URL follows a successful render)."""
            if tab == "seed":
                r = ex.seed_image(v)
                out = {"image": gr.update(value=r["image"], alt_text=r["alt"])}
            elif tab == "grid":
                r = ex.grid(v)
                out = {
                    "grid_gallery": gr.update(value=r["grid_gallery"], columns=r["grid_columns"] or 8),
                    "grid_params": r["grid_params"],
                }
            elif tab == "mix":
                r = ex.style_mix(v)
                out = {k: r[k] for k in ("mix_figure", "mix_view", "mix_gallery", "mix_params")}
            elif tab == "interp":
                r = ex.interpolate(v)
                out = {k: r[k] for k in ("ip_gallery", "ip_file", "ip_strip", "ip_view", "ip_params")}
                out["ip_gif"] = gr.update(value=r["ip_gif"], alt_text=r["gif_alt"])
            elif tab == "browse":
                r = ex.browse(v)
                out = {k: r[k] for k in ("browse_gallery", "browse_params")}
            else:  # projection and VQ run on their own buttons only (minutes, or an upload to choose)
                return {"url": url_for(ex, {**v, "tab": tab})}
            return {**out, "params": r["params"], "status": r["status"], "url": url_for(ex, {**v, "tab": tab})}

        def page(action: Callable[..., dict[str, Any]]) -> Callable[..., dict[Any, Any]]:
            """A page event: never fails; a problem is a warning toast and the status line (no error badges,
            nothing dimmed: the last good pictures stay)."""

            def run(d: dict[Any, Any], *extra: Any) -> dict[Any, Any]:
                try:
                    out = action(values(d), d, *extra)
                except Exception as e:
                    if not isinstance(e, (BackendError, ValueError)):
                        log.exception("unexpected error in %s", getattr(action, "__name__", "page event"))
                    msg = _message(e)
                    gr.Warning(msg, title="Not rendered")
                    return {status: f"⚠ {msg}"}
                return _merged(out, OUT) if out else gr.skip()

            run.__name__ = getattr(action, "__name__", "page_event")
            return run

        def page_select(action: Callable[..., dict[str, Any]]) -> Callable[..., dict[Any, Any]]:
            """``page`` for a select event (Gradio passes the event data by the annotation)."""
            inner = page(action)

            def run(d: dict[Any, Any], evt: gr.SelectData) -> dict[Any, Any]:
                return inner(d, evt)

            run.__name__ = inner.__name__
            return run

        # A page event: every setting in, any component out, one render at a time, the latest wins.
        page_event = dict(inputs=page_inputs, outputs=page_outputs, trigger_mode="always_last", concurrency_id="page",
                          concurrency_limit=1, show_progress="minimal", show_progress_on=progress_on,
                          api_visibility="private")  # fmt: skip

        def then_strips(dep: Any) -> Any:
            """After a page event, the direction strips (when the panel is open and their source or settings
            changed), one render at a time, the latest wins."""
            return dep.then(strips_event, inputs=page_inputs, outputs=[*strips, strips_key], trigger_mode="always_last",
                            concurrency_id="strips", concurrency_limit=1, show_progress="hidden",
                            api_visibility="private")  # fmt: skip

        def on(triggers: list[Any], action: Callable[..., dict[str, Any]], **kwargs: Any) -> Any:
            """Wire a page event (``page_event``), then the direction strips."""
            return then_strips(gr.on(triggers, page(action), **{**page_event, **kwargs}))

        def render_tab(tab: str | None) -> Callable[..., dict[str, Any]]:
            def action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
                t = tab or v["tab"]
                return {**shown(t, v), **({"tab": t} if tab else {})}

            action.__name__ = f"render_{tab or 'current'}"
            return action

        # A tab opened for the first time shows its default at once (projection and VQ wait for an upload).
        TAB_OUTPUTS = {"seed": [image], "grid": [grid_gallery], "mix": [mix_gallery], "interp": [ip_gallery],
                       "browse": [browse_gallery]}  # fmt: skip

        def arrive(tab: str) -> Callable[..., dict[str, Any]]:
            def action(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
                if not d.get(loaded):  # the tabs' own select as the page mounts: the load event renders
                    return {}
                if any(d.get(c) for c in TAB_OUTPUTS[tab]):
                    return {"tab": tab}
                return {**shown(tab, v), "tab": tab}

            action.__name__ = f"arrive_{tab}"
            return action

        # ---- direction strips ------------------------------------------------------------------------------------
        def strip_settings(v: dict[str, Any]) -> tuple:
            keys = ("model", "w", "seed", *COMMON_KEYS, "edit_method", "edit_layers", "edit_first", "edit_last")
            return tuple(str(v.get(k)) for k in keys)

        def strips_event(d: dict[Any, Any], force: bool = False) -> dict[Any, Any]:
            v = values(d)
            key = strip_settings(v)
            if not d.get(panel_open) or (key == d.get(strips_key) and not force):
                return gr.skip()
            try:
                spec = ex.spec(v["model"])
                if not spec.edits:
                    return gr.skip()
                r = ex.strips(v)
            except Exception as e:  # the render beside it reports what is wrong with the settings
                log.debug("strips not made: %s", e)
                return gr.skip()
            out: dict[Any, Any] = {strips_key: key}
            for k, path in enumerate(r["strips"]):
                out[strips[k]] = gr.update(value=path, alt_text=f"Direction {k} at −3 … +3 stds: {r['status']}")
            return out

        # ---- events: buttons, Enter, released sliders, changed choices ------------------------------------------
        on([gen_btn.click, C["seed"].submit, seed_go.click], render_tab("seed"))
        on([grid_btn.click, C["grid"].submit, C["grid_classes"].input], render_tab("grid"))
        on(
            [mix_btn.click, C["rows"].submit, C["cols"].submit, C["first"].release, C["last"].release],
            render_tab("mix"),
        )
        on(
            [
                ip_btn.click,
                C["from"].submit,
                C["to"].submit,
                C["frames"].release,
                C["space"].input,
                C["to_class"].input,
            ],
            render_tab("interp"),
        )
        on(
            [
                C["psi"].release,
                C["cutoff"].release,
                C["noise"].input,
                C["class"].input,
                C["temp"].release,
                C["top_k"].submit,
                C["top_k"].blur,  # Tab out of the box renders too
                C["top_p"].release,
                C["w"].submit,
                C["edit_method"].input,
                *[C[f"edit_{k}"].release for k in range(MAX_SLIDERS)],
            ],
            render_tab(None),
        )

        def random_seed(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            v["seed"] = random.randint(0, MAX_SEED)
            return {"set:seed": v["seed"], **shown("seed", v), "tab": "seed"}

        on([rand_btn.click], random_seed)

        def use_seeds_action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            v["w"] = ""
            return {"set:w": "", **shown(v["tab"], v)}

        on([use_seeds.click], use_seeds_action)

        def mix_preset(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            custom = v.get("layers") == "custom"
            return {"set:first": gr.update(visible=custom), "set:last": gr.update(visible=custom), **shown("mix", v)}

        on([C["layers"].input], mix_preset)

        def edit_layers(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            custom = v.get("edit_layers") == "custom"
            out = {"set:edit_first": gr.update(visible=custom), "set:edit_last": gr.update(visible=custom)}
            return {**out, **shown(v["tab"], v)}

        on([C["edit_layers"].input, C["edit_first"].release, C["edit_last"].release], edit_layers)

        def reset_edits(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            zero = {f"edit_{k}": 0.0 for k in range(MAX_SLIDERS)}
            return {**{f"set:{k}": 0.0 for k in zero}, **shown(v["tab"], {**v, **zero})}

        on([edit_reset.click], reset_edits)

        def page_step(delta: int) -> Callable[..., dict[str, Any]]:
            def action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
                start = int(number(v.get("browse", 0), "first seed", 0, MAX_SEED, whole=True))
                v["browse"] = min(max(start + delta, 0), MAX_SEED - BROWSE_PAGE + 1)
                return {"set:browse": v["browse"], **shown("browse", v), "tab": "browse"}

            action.__name__ = "browse_previous" if delta < 0 else "browse_next"
            return action

        on([prev_btn.click], page_step(-BROWSE_PAGE))
        on([next_btn.click], page_step(BROWSE_PAGE))
        on([C["browse"].submit], render_tab("browse"))

        def send(v: dict[str, Any], d: dict[Any, Any], evt: gr.SelectData) -> dict[str, Any]:
            page_params = d.get(browse_params) or []
            if not 0 <= evt.index < len(page_params):
                raise BackendError("that seed is no longer on the page: show the page again", "seed")
            s = int(page_params[evt.index]["seeds"][0])
            target = v.get("send_to") or "seed"
            if target == "seed":
                v.update(seed=s, w="")
                return {"set:seed": s, "set:w": "", **shown("seed", v), "tabs": gr.Tabs(selected="seed"), "tab": "seed"}
            if target in ("rows", "cols"):
                current = [] if not str(v.get(target) or "").strip() else seeds_text(v[target], target)
                new = format_seeds(current if s in current else [*current, s])
                v[target] = new
                where = "row" if target == "rows" else "column"
                note = " (the sidebar's latent is the row while it is set)" if target == "rows" and v.get("w") else ""
                return {
                    f"set:{target}": new,
                    "status": f"Seed {s} added to the style-mixing {where} seeds: {new}{note}.",
                    "url": url_for(ex, v),
                }
            v[target] = s
            end = "start" if target == "from" else "end"
            note = " (the sidebar's latent is the start while it is set)" if target == "from" and v.get("w") else ""
            return {
                f"set:{target}": s,
                "status": f"Seed {s} is the interpolation {end}{note}.",
                "url": url_for(ex, v),
            }

        then_strips(gr.on([browse_gallery.select], page_select(send), **page_event))

        # A click on a direction strip sets its slider in the page (assets.py): Gradio's own select event reports
        # pixel positions only for images shown at most at their natural size, and the strips are enlarged.

        # ---- tabs, the directions panel ------------------------------------------------------------------------------
        for key, item in tab_items.items():
            item.select(lambda key=key: key, None, tab_state, queue=False, api_visibility="private")
            item.select(None, None, None, js=f"() => gsSetTab('{key}')", api_visibility="private")
            if key in TAB_OUTPUTS:
                on([item.select], arrive(key), inputs={*page_inputs, *TAB_OUTPUTS[key]})

        directions.expand(lambda: True, None, panel_open, queue=False, api_visibility="private").then(
            lambda d: strips_event(d, force=True),
            inputs=page_inputs,
            outputs=[*strips, strips_key],
            trigger_mode="always_last",
            concurrency_id="strips",
            concurrency_limit=1,
            api_visibility="private",
            show_progress="minimal",
            show_progress_on=strips,
        )
        directions.collapse(lambda: False, None, panel_open, queue=False, api_visibility="private")

        url_box.change(None, url_box, None, js="(q) => gsSetUrl(q)", api_visibility="private")

        # ---- model switch ------------------------------------------------------------------------------------------
        def switch_model(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
            prev = d.get(shown_model)
            if prev == v["model"] or not v["model"]:  # set by the page itself (a link, a restore): already shown
                return {}
            info = ex.info(v["model"])
            if prev and prev != v["model"] and prev in backend.models():
                # Settings that meant "the default" for the previous model mean it for the new one too.
                before = ex.spec(prev)
                if not before.has("truncation_cutoff") or _int(v.get("cutoff")) >= max(before.num_ws, 1):
                    v["cutoff"] = None  # every w truncated
                if not before.has("style_mix"):
                    v.update(layers=None, first=-1, last=-1)
                if not before.edits:
                    v.update(edit_layers=None, edit_first=-1, edit_last=-1)
            upd = _model_updates(info, v.get("cutoff"), v.get("class"), v)
            out = {**{f"model:{k}": u for k, u in upd.items()}, "shown_model": v["model"]}
            before = dict(v)
            v.update(_new_values(upd))
            try:
                out.update(shown(v["tab"], v))
            except (BackendError, ValueError) as e:  # the model is switched; its first render may still be refused
                out["status"] = f"{v['model']}: {_message(e)}"
            if "psi" in before and v.get("psi") != before.get("psi") and ex.spec(v["model"]).has("truncation_psi"):
                out["status"] = (
                    f"{out.get('status', '')} (ψ {before['psi']} is outside this model's range: now {v['psi']})"
                )
            return out

        # change, not select: a model chosen with the keyboard (type, arrows, Enter) switches the page too.
        on([C["model"].change], switch_model)

        # ---- restore from a PNG: set the controls, render, and clear the drop zone for the next file ----------------
        def restored(r: Restored, v: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            """(updates keyed as OUT, the settings after them) for a restored image."""
            if r.model and r.model not in backend.models():
                raise BackendError(
                    f"the image was made by model '{r.model}', which this source does not serve", "model"
                )
            name = r.model or first
            info = ex.info(name)
            upd = {f"model:{k}": u for k, u in _model_updates(info, r.truncation_cutoff, r.class_, v).items()}
            v = {**v, **_new_values(_model_updates(info, r.truncation_cutoff, r.class_, v)), "model": name}
            new: dict[str, Any] = {"model": name, "w": r.w or ""}
            if r.truncation_psi is not None:
                new["psi"] = r.truncation_psi
            if r.noise_mode:
                new["noise"] = r.noise_mode
            if r.truncation_cutoff is None:  # absent: every w truncated
                new["cutoff"] = max(info.num_ws, 1)
            if r.tab == "seed" and r.seed is not None:
                new["seed"] = r.seed
            elif r.tab == "grid":
                new["grid"] = r.seeds
            elif r.tab == "mix":
                if r.mix_rows:
                    new["rows"] = r.mix_rows
                new["cols"] = r.mix_cols
                if isinstance(r.mix_layers, list):
                    new.update(layers="custom", first=r.mix_layers[0], last=r.mix_layers[1])
                else:
                    new["layers"] = r.mix_layers
            elif r.tab == "interp":
                ip = r.interpolate
                if ip.get("from_seed") is not None:
                    new["from"] = ip["from_seed"]
                new.update(to=ip["to_seed"], frames=ip["steps"], space=ip["space"])
            new.update(_edit_values(r.edits))
            v.update(new)
            for key, value in new.items():
                upd[f"set:{key}"] = gr.update(value=value)
            custom = new.get("layers", v.get("layers")) == "custom"
            upd["set:first"] = gr.update(value=v.get("first"), visible=custom)
            upd["set:last"] = gr.update(value=v.get("last"), visible=custom)
            edit_custom = v.get("edit_layers") == "custom"
            upd["set:edit_first"] = gr.update(value=v.get("edit_first"), visible=edit_custom)
            upd["set:edit_last"] = gr.update(value=v.get("edit_last"), visible=edit_custom)
            upd["tabs"], upd["tab"], upd["shown_model"] = gr.Tabs(selected=r.tab), r.tab, name
            return upd, v

        def restore_action(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
            data = d.get(restore_file)
            clear = {"restore": gr.update(value=None)}  # the drop zone takes the next file at once
            if not data:
                return clear
            r = restore_from_png(data)
            upd, v2 = restored(r, v)
            out = {**upd, **clear}
            try:
                out.update(shown(r.tab, v2))
                out["status"] = f"Restored: {r.summary()}."
            except (BackendError, ValueError) as e:
                out["status"] = f"Restored: {r.summary()}; not rendered: {_message(e)}"
                gr.Warning(_message(e), title="Not rendered")
            return out

        restore_dep = gr.on([restore_file.upload], page(restore_action), **page_event)
        # A refused file is cleared too, so the next drop works.
        restore_dep.then(lambda: gr.update(value=None), None, restore_file, api_visibility="private", queue=False)
        then_strips(restore_dep)

        # ---- projection ----------------------------------------------------------------------------------------------
        def project_action(d: dict[Any, Any], progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
            v = values(d)
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
                return {status: f"⚠ {msg}", proj_info: f"⚠ Not projected: {msg}", proj_result: None}
            v["w"] = r["w"]
            return {
                proj_result: gr.update(value=r["proj_result"], alt_text=r["proj_alt"]),
                proj_info: r["proj_info"],
                C["w"]: r["w"],
                params_box: r["params"],
                status: r["status"],
                url_box: url_for(ex, {**v, "tab": "project"}),
            }

        then_strips(
            proj_btn.click(
                project_action,
                inputs=page_inputs,
                outputs=page_outputs,
                concurrency_id="project",
                concurrency_limit=1,
                show_progress="full",
                show_progress_on=[proj_result],
                api_visibility="private",
            )
        )

        # ---- opening the page: the model list, and the settings in the URL (rendered) -------------------------------
        def load_action(v: dict[str, Any], d: dict[Any, Any], request: gr.Request) -> dict[str, Any]:
            names = backend.models()
            current = v.get("model") if v.get("model") in names else (names[0] if names else None)
            out: dict[str, Any] = {}
            if names != models or current != v.get("model"):
                out["set:model"] = gr.update(choices=names, value=current)
            query = dict(request.query_params) if request is not None else {}
            wanted, errors = urlstate.decode(query)
            ready = f"Ready: {len(names)} model{'s' if len(names) != 1 else ''} from {backend.label}."
            if not wanted:  # the first visit: the default image at once, not an empty panel
                out["loaded"] = True
                try:
                    return {**out, **shown("seed", v), "status": ready}
                except (BackendError, ValueError) as e:
                    return {**out, "status": f"{ready} ⚠ {_message(e)}"}
            name = wanted.get("model", current)
            if name not in names:
                errors.append(f"model: '{name}' is not served here")
                name = current
            info = ex.info(name)
            spec = ControlSpec.from_info(info)
            # A setting the link leaves out means this model's default, never the page's value for the first model.
            v.update(model_defaults(spec), model=name)
            out.update({f"model:{k}": u for k, u in _model_updates(info, v["cutoff"], v["class"], v).items()})
            for key, value in wanted.items():
                if key in ("model", "tab"):
                    continue
                try:
                    v[key] = _check_url_value(key, value, spec)
                except (BackendError, ValueError) as e:
                    errors.append(f"{key}: {e.message if isinstance(e, BackendError) else e}")
            for key in C:  # every control: the link's value or the model's default
                if key != "model":
                    out[f"set:{key}"] = gr.update(value=v[key])
            out["set:model"] = gr.update(choices=names, value=name)
            for pair, flag in (
                (("first", "last"), v.get("layers") == "custom"),
                (("edit_first", "edit_last"), v.get("edit_layers") == "custom"),
            ):
                for key in pair:
                    out[f"set:{key}"] = gr.update(value=v.get(key), visible=flag)
            tab = wanted.get("tab", "seed")
            out["tabs"], out["tab"], out["shown_model"], out["loaded"] = gr.Tabs(selected=tab), tab, name, True
            if spec.edits and any(float(v.get(f"edit_{k}") or 0) for k in range(MAX_SLIDERS)):
                # The link's edits change the image: the panel that says so is shown open (with its strips).
                out["model:directions"] = gr.update(visible=True, open=True)
                out["panel_open"] = True
            if errors:
                gr.Warning("Some settings in the link were refused: " + "; ".join(errors), title="Link")
            try:
                out.update(shown(tab, v))
                out["status"] = "Opened from the link" + (f" ({len(errors)} settings refused)" if errors else "") + "."
            except (BackendError, ValueError) as e:
                out["status"] = f"⚠ {_message(e)}"
                gr.Warning(_message(e), title="Not rendered")
            return out

        def load_page(d: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
            return page(load_action)(d, request)

        load_dep = app.load(
            load_page,
            inputs=page_inputs,
            outputs=page_outputs,
            show_progress="minimal",
            show_progress_on=progress_on,
            api_visibility="private",
        )
        # The link's tab again, once its tab button is shown: selected in the same update that un-hides it (a tab the
        # first model lacks, e.g. Projection on a BigGAN-first page), the browser may still show the Seed tab. Only
        # then: a tab the user clicks just after the load must not be undone.
        hidden_at_build = {tab for tab, shown in (("mix", spec0.has("style_mix")), ("interp", spec0.has("interpolate")),
                           ("project", spec0.projection), ("vq", spec0.region_resampling)) if not shown}  # fmt: skip
        load_dep.then(
            lambda t: gr.Tabs(selected=t) if t in hidden_at_build else gr.skip(),
            tab_state,
            tabs,
            queue=False,
            api_visibility="private",
        )
        then_strips(load_dep)

        # ---- the API: plain values in and out, errors as errors ---------------------------------------------------
        outputs = ApiOutputs(
            status=status,
            params_box=params_box,
            image=image,
            grid_gallery=grid_gallery,
            mix_figure=mix_figure,
            mix_gallery=mix_gallery,
            ip_gallery=ip_gallery,
            ip_gif=ip_gif,
            ip_file=ip_file,
            ip_strip=ip_strip,
            browse_gallery=browse_gallery,
            strips=strips,
            proj_image=proj_image,
            proj_result=proj_result,
            region_image=region_image,
            region_box=region_box,
            restore_api_file=restore_api_file,
        )
        _wire_api(app, ex, backend, C, first, M, tab_items, tabs, outputs)

        # VQ tab: its own button and endpoint (/vq_resample) with the sidebar's settings.
        common = [C[k] for k in COMMON_KEYS]

        def vq_request(name: str, common_values: tuple, **fields: Any) -> tuple[ModelInfo, dict[str, Any]]:
            info = ex.info(name)
            spec = ControlSpec.from_info(info)
            return info, {**fields, **common_fields(spec, ex.settings(spec, dict(zip(COMMON_KEYS, common_values))))}

        vq.wire(
            backend, C["model"], common, vq_request, ex.save, ex.save_array, seeds_text, _readable, params_box, status
        )
        for gallery, state in ((grid_gallery, grid_params), (mix_gallery, mix_params), (ip_gallery, ip_params)):
            gallery.select(_selected_params, state, params_box, api_visibility="undocumented")
    app.ganserve_files_root = str(ex.files.root)  # served as an allowed path (labelled figures link to their PNGs)
    return app


@dataclass
class ApiOutputs:
    """The page's components that the API endpoints write to (``_wire_api``)."""

    status: Any
    params_box: Any
    image: Any
    grid_gallery: Any
    mix_figure: Any
    mix_gallery: Any
    ip_gallery: Any
    ip_gif: Any
    ip_file: Any
    ip_strip: Any
    browse_gallery: Any
    strips: Any
    proj_image: Any
    proj_result: Any
    region_image: Any
    region_box: Any
    restore_api_file: Any


def _wire_api(app, ex, backend, C, first, M, tab_items, tabs, w: ApiOutputs) -> None:
    """The named endpoints for gradio_client, on hidden buttons (the page's own events are private)."""
    # Choices that depend on the model are free text for API callers (any served model's groups, spaces and
    # methods; the request says what is wrong), not the page's radios, which hold the first model's choices.
    free = {
        key: gr.Textbox(str(C[key].value), visible=False, label=C[key].label)
        for key in ("layers", "space", "edit_method", "edit_layers")
    }
    # Numbers likewise: the page's sliders stop at the first model's bounds.
    free.update({key: gr.Number(C[key].value, visible=False, label=C[key].label) for key in MODEL_NUMBERS})
    common = {name: free.get(key, C[key]) for name, key in COMMON_API.items()}
    edits = {name: free.get(name, C[name]) for name in EDIT_API}

    def values(kw: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
        return {rename.get(k, COMMON_API.get(k, k)): val for k, val in kw.items()}

    def endpoint(name: str, fn: Callable[..., Any], inputs: dict[str, Any], outputs: list[Any]) -> None:
        wrapped = _readable(fn)
        # Named parameters for the API page and gradio_client; those whose control starts empty are optional.
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]
        named = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in inputs]
        wrapped.__signature__ = inspect.Signature([*own, *named])
        gr.Button(visible=False).click(wrapped, inputs_kwargs=inputs, outputs=outputs, api_name=name)

    def generate(**kw: Any) -> tuple:
        r = ex.seed_image(values(kw, {}))
        return r["image"], r["params"], r["status"]

    endpoint(
        "generate",
        generate,
        {
            "model": C["model"],
            "seed": C["seed"],
            **common,
            "region_image": w.region_image,
            "region_box": w.region_box,
            "w": C["w"],
            **edits,
        },
        [w.image, w.params_box, w.status],
    )

    def grid(**kw: Any) -> tuple:
        r = ex.grid(values(kw, {"seeds": "grid", "classes": "grid_classes"}))
        shown = (
            gr.update(value=r["grid_gallery"], columns=r["grid_columns"]) if r["grid_columns"] else r["grid_gallery"]
        )
        return shown, r["params"], r["status"]

    endpoint(
        "grid",
        grid,
        {"model": C["model"], "seeds": C["grid"], **common, "classes": C["grid_classes"], **edits},
        [w.grid_gallery, w.params_box, w.status],
    )

    def style_mix(**kw: Any) -> tuple:
        r = ex.style_mix(values(kw, {"row_seeds": "rows", "col_seeds": "cols", "start": "first", "stop": "last"}))
        return r["mix_figure"], r["mix_gallery"], r["params"], r["status"]

    endpoint(
        "style_mix",
        style_mix,
        {
            "model": C["model"],
            "row_seeds": C["rows"],
            "col_seeds": C["cols"],
            "layers": free["layers"],
            "start": free["first"],
            "stop": free["last"],
            **common,
            "w": C["w"],
            **edits,
        },
        [w.mix_figure, w.mix_gallery, w.params_box, w.status],
    )

    def interpolate(**kw: Any) -> tuple:
        r = ex.interpolate(values(kw, {"seed": "from", "to_seed": "to", "steps": "frames"}))
        return r["ip_gallery"], r["ip_gif"], r["ip_file"], r["ip_strip"], r["params"], r["status"]

    endpoint(
        "interpolate",
        interpolate,
        {
            "model": C["model"],
            "seed": C["from"],
            "to_seed": C["to"],
            "steps": C["frames"],
            "space": free["space"],
            **common,
            "to_class": C["to_class"],
            "w": C["w"],
            **edits,
        },
        [w.ip_gallery, w.ip_gif, w.ip_file, w.ip_strip, w.params_box, w.status],
    )

    def browse(**kw: Any) -> tuple:
        r = ex.browse(values(kw, {"start": "browse"}))
        return r["browse_gallery"], r["params"], r["status"]

    endpoint(
        "browse",
        browse,
        {"model": C["model"], "start": C["browse"], **common, **edits},
        [w.browse_gallery, w.params_box, w.status],
    )

    def strips_api(**kw: Any) -> tuple:
        r = ex.strips(values(kw, {}))
        return (*r["strips"], r["status"])

    endpoint(
        "strips",
        strips_api,
        {"model": C["model"], "seed": C["seed"], **common, "w": C["w"], **{k: edits[k] for k in EDIT_API[:4]}},
        [*w.strips, w.status],
    )

    def project(progress: gr.Progress = gr.Progress(), **kw: Any) -> tuple:  # noqa: B008
        reports = getattr(backend, "reports_progress", False)
        r = ex.project(
            values(kw, {"image": "project_image"}),
            (lambda k, n: progress((k, n), desc="projecting", unit="steps")) if reports else None,
        )
        return r["proj_result"], r["params"], r["status"]

    endpoint(
        "project",
        project,
        {"model": C["model"], "image": w.proj_image, "steps": C["steps"], **common},
        [w.proj_result, w.params_box, w.status],
    )

    def model_info(name: str, cutoff_value: Any, cls_value: Any) -> tuple:
        upd = _model_updates(ex.info(name), cutoff_value, cls_value, {})
        return tuple(upd.values())

    gr.Button(visible=False).click(
        _readable(model_info), [C["model"], C["cutoff"], C["class"]], list(M.values()), api_name="model_info"
    )

    restore_outputs = [  # (each once: a component listed twice gets no value)
        *M.values(),
        C["model"],
        C["seed"],
        C["grid"],
        C["rows"],
        C["cols"],
        C["layers"],
        C["from"],
        C["to"],
        C["frames"],
        C["space"],
        tabs,
        w.status,
        C["w"],
    ]
    restore_outputs = list(dict.fromkeys(restore_outputs))

    def restore(data: bytes | None) -> dict[Any, Any]:
        if not data:
            raise BackendError("upload a PNG made by ganserve", "image")
        r = restore_from_png(data)
        if r.model and r.model not in backend.models():
            raise BackendError(f"the image was made by model '{r.model}', which this source does not serve", "model")
        name = r.model or first
        info = ex.info(name)
        upd: dict[Any, Any] = dict(zip(M.values(), _model_updates(info, r.truncation_cutoff, r.class_, {}).values()))
        upd[C["model"]] = gr.update(value=name)
        upd[C["w"]] = gr.update(value=r.w or "")
        if r.truncation_psi is not None:
            upd[C["psi"]] = gr.update(value=r.truncation_psi)
        if r.noise_mode:
            upd[C["noise"]] = gr.update(value=r.noise_mode)
        if r.truncation_cutoff is None:
            upd[C["cutoff"]] = gr.update(value=max(info.num_ws, 1))
        if r.tab == "seed":
            upd[C["seed"]] = gr.update(value=r.seed)
        elif r.tab == "grid":
            upd[C["grid"]] = gr.update(value=r.seeds)
        elif r.tab == "mix":
            upd[C["rows"]], upd[C["cols"]] = gr.update(value=r.mix_rows), gr.update(value=r.mix_cols)
            if isinstance(r.mix_layers, list):
                upd[C["layers"]] = gr.update(value="custom")
                upd[C["first"]] = gr.update(value=r.mix_layers[0], visible=True)
                upd[C["last"]] = gr.update(value=r.mix_layers[1], visible=True)
            else:
                upd[C["layers"]] = gr.update(value=r.mix_layers)
        else:
            ip = r.interpolate
            upd[C["from"]], upd[C["to"]] = gr.update(value=ip["from_seed"]), gr.update(value=ip["to_seed"])
            upd[C["frames"]], upd[C["space"]] = gr.update(value=ip["steps"]), gr.update(value=ip["space"])
        upd[tabs] = gr.Tabs(selected=r.tab)
        upd[w.status] = gr.update(value=f"Restored: {r.summary()}.")
        return upd

    gr.Button(visible=False).click(_readable(restore), w.restore_api_file, restore_outputs, api_name="restore")


# ---------------------------------------------------------------------------------------------------------------------
# Controls for a model


def _merged(out: dict[str, Any], components: dict[str, Any]) -> dict[Any, Any]:
    """Updates keyed as OUT -> keyed by component; two updates of one component (a model switch's choices and a
    restored value) are merged, the later one's keys winning."""
    merged: dict[Any, Any] = {}
    for key, val in out.items():
        comp = components[key]
        before = merged.get(comp)
        if (
            isinstance(before, dict)
            and before.get("__type__") == "update"
            and isinstance(val, dict)
            and (val.get("__type__") == "update")
        ):
            val = {**before, **val}
        merged[comp] = val
    return merged


def url_for(ex: Explorer, v: dict[str, Any]) -> str:
    """The query string for the settings ``v``: only the controls the model has (and custom ranges when chosen)."""
    try:
        spec = ex.spec(v.get("model"))
    except Exception:
        return urlstate.encode(v)
    drop = set()
    for keys, keep in (
        (("psi",), spec.has("truncation_psi")),
        (("cutoff",), spec.has("truncation_cutoff")),
        (("noise",), spec.has("noise_mode")),
        (("class",), spec.class_picker),
        (("temp", "top_k", "top_p"), spec.vq_sampling),
        (("w",), spec.latent_source),
        (("grid_classes",), spec.class_grid),
        (("rows", "cols", "layers", "first", "last"), spec.has("style_mix")),
        (("first", "last"), v.get("layers") == "custom"),
        (("from", "to", "frames", "space"), spec.has("interpolate")),
        (("to_class",), spec.class_interpolation and str(v.get("to_class")) != "-1"),
        (("steps",), spec.projection),
        (("edit_method", "edit_layers", *[f"edit_{k}" for k in range(MAX_SLIDERS)]), spec.edits),
        (("edit_first", "edit_last"), spec.edits and v.get("edit_layers") == "custom"),
    ):
        if not keep:
            drop.update(keys)
    return urlstate.encode({k: val for k, val in v.items() if k not in drop})


def _out_image(label: str, alt_text: str, elem_id: str) -> Any:
    """A rendered image: PNG by path, read-only, pixelated when enlarged."""
    return gr.Image(format="png", type="filepath", label=label, interactive=False, buttons=IMAGE_BUTTONS,
                    alt_text=alt_text, elem_id=elem_id, elem_classes=["gs-int", "gs-out", "gs-pixelated"])  # fmt: skip


def _gallery(label: str, elem_id: str, **kwargs: Any) -> Any:
    return gr.Gallery(
        label=label,
        columns=8,
        format="png",
        height="auto",
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
        elem_classes=["gs-pixelated", "gs-gallery"],
        **kwargs,
    )


def _slider(spec: ControlSpec, name: str, lo: float, hi: float, default: float, step: float = 0.01) -> dict[str, float]:
    """A slider's bounds and start for a schema field: an exclusive minimum starts one step above it (a slider
    cannot leave out its end, and the server refuses the bound itself: BigGAN's psi in (0, 1])."""
    r = spec.ranges.get(name)
    if r is None:
        return {"minimum": lo, "maximum": hi, "value": default}
    minimum = round(r.minimum + step, 6) if r.exclusive_minimum else r.minimum
    value = r.default if isinstance(r.default, (int, float)) else default
    return {"minimum": minimum, "maximum": r.maximum, "value": min(max(value, minimum), r.maximum)}


def model_defaults(spec: ControlSpec) -> dict[str, Any]:
    """Every setting's default for a model, keyed as ``urlstate.KEYS``: what a setting missing from a link means
    (never the values the page was built with for another model)."""
    top = max(spec.num_ws, 1)
    last_w = max(top - 1, 1)
    steps = spec.ranges.get("project_steps")
    noise = spec.choices.get("noise_mode", ("const",))
    return {
        **PAGE_DEFAULTS,
        "psi": _slider(spec, "truncation_psi", -1, 2, 1.0, PSI_STEP)["value"],
        "cutoff": top,
        "noise": "const" if "const" in noise else noise[0],
        "class": (FROM_SEED if spec.class_from_seed else 0) if spec.class_picker else None,
        "temp": _slider(spec, "temperature", 0.01, 10, 1.0, TEMP_STEP)["value"],
        "layers": spec.mix_presets[0],
        "first": 0,
        "last": min(3, last_w),
        "space": _space_value(spec),
        "steps": int(steps.default or 300) if steps else 300,
        "edit_method": _method_value(spec),
        "edit_first": 0,
        "edit_last": last_w,
    }


def _class_choices(spec: ControlSpec) -> list[tuple[str, int]]:
    return [(f"{i}: {name}", i) for i, name in enumerate(spec.classes)]


def _picker_choices(spec: ControlSpec) -> list[tuple[str, int]]:
    """The class picker: the classes, after "from the seed" (no class sent) where the family allows it."""
    n = len(spec.classes)
    seed = [(f"from the seed (seed % {n})", FROM_SEED)] if spec.class_from_seed else []
    return seed + _class_choices(spec)


def _model_text(info: ModelInfo | None) -> str:
    if info is None:
        return "No models available."
    bits = [f"family **{info.family}**"]
    if info.resolution:
        bits.append(f"{info.resolution}×{info.resolution}")
    if info.num_ws:
        bits.append(f"{info.num_ws} ws")
    if info.classes:
        bits.append(f"{len(info.classes)} classes")
    if info.version:
        bits.append(f"version `{info.version}`")
    return ", ".join(bits)


def _projection_note(backend: Backend) -> str:
    if getattr(backend, "reports_progress", False):
        return "Optimises a w so the generator reproduces the image (StyleGAN2-ADA's projector); progress below."
    return (
        "Optimises a w so the generator reproduces the image, on the server: one plain request, so there is no "
        "step-by-step progress over HTTP (expect about as many seconds as a few hundred renders)."
    )


def _space_choices(spec: ControlSpec) -> list[tuple[str, str]]:
    labels = {"w": "W (lerp)", "z": "Z (slerp)"} if "w" in spec.interpolate_spaces else {"z": "Z (lerp)"}
    return [(labels.get(s, s.upper()), s) for s in spec.interpolate_spaces]


def _space_value(spec: ControlSpec) -> str:
    return "w" if "w" in spec.interpolate_spaces else spec.interpolate_spaces[0]


def _method_choices(spec: ControlSpec) -> list[tuple[str, str]]:
    methods = spec.direction_methods or ("sefa",)
    return [(METHOD_LABELS.get(m, m.upper()), m) for m in methods]


def _method_value(spec: ControlSpec) -> str:
    return (spec.direction_methods or ("sefa",))[0]


def _edit_layer_choices(spec: ControlSpec) -> list[tuple[str, str]]:
    groups = [(f"{name} ({lo}-{hi})", name) for name, (lo, hi) in spec.layer_groups.items()]
    return [("all layers", ALL_LAYERS), *groups, ("custom range", "custom")]


def _send_choices(spec: ControlSpec) -> list[tuple[str, str]]:
    keep = {"seed"}
    if spec.has("style_mix"):
        keep |= {"rows", "cols"}
    if spec.has("interpolate"):
        keep |= {"from", "to"}
    return [(label, key) for key, label in SEND_TARGETS.items() if key in keep]


def _model_updates(info: ModelInfo, cutoff_value: Any, cls_value: Any, v: dict[str, Any]) -> dict[str, Any]:
    """The controls for a model, keyed as the page's model outputs (values that still fit are kept)."""
    spec = ControlSpec.from_info(info)
    top = max(spec.num_ws, 1)
    try:
        cutoff = int(cutoff_value) if cutoff_value is not None and 0 <= float(cutoff_value) <= top else top
    except (TypeError, ValueError):
        cutoff = top
    cls = _class_index(cls_value, spec.classes, spec.class_from_seed)
    psi = _slider(spec, "truncation_psi", -1, 2, 1.0, PSI_STEP)
    temp = _slider(spec, "temperature", 0.01, 10, 1.0, TEMP_STEP)
    presets = spec.mix_presets
    layers = v.get("layers") if v.get("layers") in presets else presets[0]
    methods = spec.direction_methods or ("sefa",)
    method = v.get("edit_method") if v.get("edit_method") in methods else methods[0]
    edit_choices = _edit_layer_choices(spec)
    edit_layers = v.get("edit_layers") if v.get("edit_layers") in [c[1] for c in edit_choices] else ALL_LAYERS
    send = _send_choices(spec)
    steps = spec.ranges.get("project_steps")
    n_dirs = min(MAX_SLIDERS, spec.direction_count)
    last_w = max(top - 1, 1)

    def in_range(key: str, bounds: dict[str, float]) -> dict[str, Any]:
        """A value outside the new model's range goes to the model's default (a slider refuses what it cannot
        show); only when the page's values are known."""
        if key not in v:
            return {}
        try:
            ok = bounds["minimum"] <= float(v[key]) <= bounds["maximum"]
        except (TypeError, ValueError):
            ok = False
        return {} if ok else {"value": bounds["value"]}

    def fit(key: str, default: int) -> dict[str, Any]:
        """A layer slider's value that the new maximum would refuse is replaced (only when the page's values are
        known: ``v`` is empty for /model_info)."""
        if key not in v:
            return {}
        try:
            value = int(v[key])
        except (TypeError, ValueError):
            return {"value": default}
        return {} if 0 <= value <= last_w else {"value": default}

    return {
        "model_md": gr.update(value=_model_text(info)),
        "psi": gr.update(
            minimum=psi["minimum"], maximum=psi["maximum"], visible=spec.has("truncation_psi"), **in_range("psi", psi)
        ),
        "cutoff": gr.update(maximum=top, value=cutoff, visible=spec.has("truncation_cutoff")),
        "noise": gr.update(choices=list(spec.choices.get("noise_mode", ("const",))), visible=spec.has("noise_mode")),
        "class": gr.update(
            choices=_picker_choices(spec), value=cls if spec.class_picker else None, visible=spec.class_picker
        ),
        "vq_group": gr.update(visible=spec.vq_sampling),
        "temp": gr.update(minimum=temp["minimum"], maximum=temp["maximum"], **in_range("temp", temp)),
        "region": gr.update(visible=spec.region_resampling),
        "mix_tab": gr.update(visible=_tab_visible(spec.has("style_mix"))),
        "interp_tab": gr.update(visible=_tab_visible(spec.has("interpolate"))),
        "first": gr.update(maximum=last_w, visible=layers == "custom", **fit("first", 0)),
        "last": gr.update(maximum=last_w, visible=layers == "custom", **fit("last", min(3, last_w))),
        "grid_classes": gr.update(choices=_class_choices(spec), value=[], visible=spec.class_grid),
        "to_class": gr.update(
            choices=[("same class", -1), *_class_choices(spec)], value=-1, visible=spec.class_interpolation
        ),
        "space": gr.update(choices=_space_choices(spec), value=_space_value(spec)),
        "vq_tab": gr.update(visible=_tab_visible(spec.region_resampling)),
        "source_group": gr.update(visible=spec.latent_source),
        "proj_tab": gr.update(visible=_tab_visible(spec.projection)),
        "steps": gr.update(minimum=int(steps.minimum), maximum=int(steps.maximum)) if steps else gr.update(),
        "directions": gr.update(visible=spec.edits),
        "edit_method": gr.update(choices=_method_choices(spec), value=method),
        "edit_layers": gr.update(choices=edit_choices, value=edit_layers),
        "edit_first": gr.update(maximum=last_w, visible=edit_layers == "custom", **fit("edit_first", 0)),
        "edit_last": gr.update(maximum=last_w, visible=edit_layers == "custom", **fit("edit_last", last_w)),
        "layers": gr.update(choices=list(presets), value=layers),
        "send_to": gr.update(
            choices=send, value=v.get("send_to") if v.get("send_to") in dict(send).values() else "seed"
        ),
        **{f"edit_row_{k}": gr.update(visible=k < n_dirs) for k in range(MAX_SLIDERS)},
    }


def _int(value: Any, default: int = -1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _tab_visible(shown: bool) -> bool | str:
    """A tab's visibility in an update: Gradio 6 hides an already shown tab's button only with "hidden"."""
    return True if shown else "hidden"


def _new_values(updates: dict[str, Any]) -> dict[str, Any]:
    """The setting values a model switch changes (cutoff, class, mixing preset, ...), keyed as the settings."""
    out = {}
    for key in (
        "psi",
        "temp",
        "cutoff",
        "class",
        "space",
        "layers",
        "edit_method",
        "edit_layers",
        "send_to",
        "to_class",
        "first",
        "last",
        "edit_first",
        "edit_last",
    ):
        u = updates.get(key)
        if isinstance(u, dict) and "value" in u:
            out[key] = u["value"]
    if "grid_classes" in updates:
        out["grid_classes"] = []
    return out


def _edit_values(edits: list[dict[str, Any]]) -> dict[str, Any]:
    """Recorded edits -> the direction panel's values (one method and layer range; directions beyond the sliders
    are not shown)."""
    out: dict[str, Any] = {f"edit_{k}": 0.0 for k in range(MAX_SLIDERS)}
    if not edits:
        return out
    out["edit_method"] = str(edits[0].get("method", "sefa"))
    layers = edits[0].get("layers")
    if layers is None:
        out["edit_layers"] = ALL_LAYERS
    elif isinstance(layers, str) and "-" in layers:
        lo, hi = layers.split("-", 1)
        out.update(edit_layers="custom", edit_first=int(lo), edit_last=int(hi))
    else:
        out["edit_layers"] = str(layers)
    for e in edits:
        k = int(e.get("direction", -1))
        if 0 <= k < MAX_SLIDERS:
            out[f"edit_{k}"] = float(e.get("amount", 0.0))
    return out


def _check_url_value(key: str, value: Any, spec: ControlSpec) -> Any:
    """A value from the URL, checked against the model's bounds (BackendError / ValueError when out of them)."""
    top = max(spec.num_ws - 1, 0)
    bounds = {
        "cutoff": (0, max(spec.num_ws, 1), True),
        "first": (0, top, True),
        "last": (0, top, True),
        "edit_first": (0, top, True),
        "edit_last": (0, top, True),
        "frames": (2, MAX_FRAMES, True),
        "top_k": (0, 1_000_000, True),
        "top_p": (0.01, 1.0, False),
    }
    if key in ("seed", "from", "to", "browse"):
        return seed_value(value, key)
    if key in ("psi", "temp", "steps"):
        name = {"psi": "truncation_psi", "temp": "temperature", "steps": "project_steps"}[key]
        r = spec.ranges.get(name)
        lo, hi = (r.minimum, r.maximum) if r else {"psi": (-1, 2), "temp": (0.01, 10), "steps": (1, 1000)}[key]
        return number(value, key, lo, hi, whole=key == "steps")
    if key.startswith("edit_") and key[5:].isdigit():
        return number(value, key, *EDIT_RANGE)
    if key in bounds:
        lo, hi, whole = bounds[key]
        x = number(value, key, lo, hi, whole)
        return int(x) if whole else x
    if key == "noise" and value not in spec.choices.get("noise_mode", (value,)):
        raise ValueError(f"'{value}' is not a noise mode")
    if key == "layers" and value not in spec.mix_presets:
        raise ValueError(f"'{value}' is not one of {', '.join(spec.mix_presets)}")
    if key == "space" and value not in spec.interpolate_spaces:
        raise ValueError(f"'{value}' is not one of {', '.join(spec.interpolate_spaces)}")
    if key == "class":
        if not spec.classes:
            raise ValueError("this model has no classes")
        return _class_index(value, spec.classes, spec.class_from_seed)
    if key == "send_to" and value not in SEND_TARGETS:
        raise ValueError(f"'{value}' is not one of {', '.join(SEND_TARGETS)}")
    return value


def _class_index(value: Any, classes: tuple[str, ...], from_seed: bool = False) -> int:
    """The picker's index for an index or a class name (FROM_SEED for "-1" / "seed" where the family takes its class
    from the seed); 0 when it names no class of this model."""
    text = "" if value is None else str(value).strip()
    if from_seed and text.lower() in ("-1", "seed"):
        return FROM_SEED
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    lowered = [c.lower() for c in classes]
    return lowered.index(text.lower()) if text.lower() in lowered else 0


def _selected_params(state: list[dict[str, Any]], evt: gr.SelectData) -> dict[str, Any] | None:
    return state[evt.index] if state and 0 <= evt.index < len(state) else None


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
        css=CSS,
        head=head(),
        footer_links=["api"],
        allowed_paths=allowed,
        **kwargs,
    )
