"""The explorer's named endpoints for gradio_client (``/generate``, ``/grid``, ``/style_mix``, ``/interpolate``,
``/browse``, ``/strips``, ``/project``, ``/attention``, ``/model_info``, ``/restore``), on hidden buttons: plain
values in and out, errors as errors (``AppError``). The page's own events are private (``ganserve.ui.page``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from ganserve.ui.backend import BackendError
from ganserve.ui.fields import PREFIX
from ganserve.ui.model_controls import COMMON_API, EDIT_API, MODEL_NUMBERS, _model_updates
from ganserve.ui.page import Page
from ganserve.ui.panels import attention as attention_panel
from ganserve.ui.panels.lifecycle import restored_values
from ganserve.ui.restore import restore_from_png
from ganserve.ui.widgets import _readable


class Api:
    """What the endpoints share: the page, and the inputs that stand for the shared settings."""

    def __init__(self, page: Page) -> None:
        self.page, self.ex, self.C = page, page.ex, page.C
        C = page.C
        # Choices that depend on the model are free text for API callers (any served model's groups, spaces and
        # methods; the request says what is wrong), not the page's radios, which hold the first model's choices.
        self.free = {
            key: gr.Textbox(str(C[key].value), visible=False, label=C[key].label)
            for key in ("layers", "space", "edit_method", "edit_layers")
        }
        # Numbers likewise: the page's sliders stop at the first model's bounds.
        numbers = [*MODEL_NUMBERS, *(c.key for c in page.extras if c.widget in ("slider", "number"))]
        self.free.update({key: gr.Number(C[key].value, visible=False, label=C[key].label) for key in numbers})
        self.common = {name: self.free.get(key, C[key]) for name, key in COMMON_API.items()}
        # The generic fields by their request names (brightness=0.5), beside the shared settings.
        self.common.update({c.api_name: self.free.get(c.key, C[c.key]) for c in page.extras})
        self.edits = {name: self.free.get(name, C[name]) for name in EDIT_API}

    def values(self, kw: dict[str, Any], rename: dict[str, str]) -> dict[str, Any]:
        """Endpoint keywords -> the page's settings keys."""
        extras = {c.api_name: c.path for c in self.page.extras}  # glow_amount -> glow.amount
        keys = {k: PREFIX + extras[k] if k in extras else COMMON_API.get(k, k) for k in kw}
        return {rename.get(k, keys[k]): val for k, val in kw.items()}

    def endpoint(self, name: str, fn: Callable[..., Any], inputs: dict[str, Any], outputs: list[Any]) -> None:
        wrapped = _readable(fn)
        # Named parameters for the API page and gradio_client; those whose control starts empty are optional.
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]
        named = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None) for k in inputs]
        wrapped.__signature__ = inspect.Signature([*own, *named])
        gr.Button(visible=False).click(wrapped, inputs_kwargs=inputs, outputs=outputs, api_name=name)


def wire_api(page: Page) -> None:
    api = Api(page)
    _images(api)
    _figures(api)
    _attention(api)
    _models(api)


def _attention(api: Api) -> None:
    """/attention: the self-attention map of pixel [y, x] for /generate's settings (models that declare it)."""
    C, page = api.C, api.page
    free = {k: gr.Number(0, visible=False, label=C[k].label) for k in ("attn_y", "attn_x")}  # no page bounds

    def attention_map(**kw: Any) -> tuple:
        r = attention_panel.attention_map(page, api.values(kw, {"y": "attn_y", "x": "attn_x"}))
        return r["map"], r["shown"], r["caption"], r["params"], r["status"]

    inputs = {"model": C["model"], "seed": C["seed"], "y": free["attn_y"], "x": free["attn_x"], **api.common}
    raw = gr.Image(type="filepath", format="png", visible=False, label="Attention map (the model's pixels)")
    outputs = [raw, page.OUT["attn_image"], page.OUT["attn_caption"], page.OUT["params"]]
    api.endpoint("attention", attention_map, {**inputs, "w": C["w"], **api.edits}, [*outputs, page.status])


def _images(api: Api) -> None:
    """/generate, /grid, /browse: images of seeds."""
    ex, C, page, out = api.ex, api.C, api.page, api.page.OUT
    report = [out["params"], page.status]

    def generate(**kw: Any) -> tuple:
        r = ex.seed_image(api.values(kw, {}))
        return r["image"], r["params"], r["status"]

    named = page.named_inputs
    api.endpoint(
        "generate",
        generate,
        {
            "model": C["model"],
            "seed": C["seed"],
            **api.common,
            "region_image": named["region_image"],
            "region_box": named["region_box"],
            "w": C["w"],
            **api.edits,
        },
        [out["image"], *report],
    )

    def grid(**kw: Any) -> tuple:
        r = ex.grid(api.values(kw, {"seeds": "grid", "classes": "grid_classes"}))
        cols = r["grid_columns"]
        return (
            (gr.update(value=r["grid_gallery"], columns=cols) if cols else r["grid_gallery"]),
            r["params"],
            r["status"],
        )

    api.endpoint(
        "grid",
        grid,
        {"model": C["model"], "seeds": C["grid"], **api.common, "classes": C["grid_classes"], **api.edits},
        [out["grid_gallery"], *report],
    )

    def browse(**kw: Any) -> tuple:
        r = ex.browse(api.values(kw, {"start": "browse"}))
        return r["browse_gallery"], r["params"], r["status"]

    api.endpoint(
        "browse",
        browse,
        {"model": C["model"], "start": C["browse"], **api.common, **api.edits},
        [out["browse_gallery"], *report],
    )


def _figures(api: Api) -> None:
    """/style_mix, /interpolate, /strips, /project: figures made of several renders."""
    ex, C, page, out, free = api.ex, api.C, api.page, api.page.OUT, api.free
    report = [out["params"], page.status]

    def style_mix(**kw: Any) -> tuple:
        r = ex.style_mix(api.values(kw, {"row_seeds": "rows", "col_seeds": "cols", "start": "first", "stop": "last"}))
        return r["mix_figure"], r["mix_gallery"], r["params"], r["status"]

    api.endpoint(
        "style_mix",
        style_mix,
        {
            "model": C["model"],
            "row_seeds": C["rows"],
            "col_seeds": C["cols"],
            "layers": free["layers"],
            "start": free["first"],
            "stop": free["last"],
            **api.common,
            "w": C["w"],
            **api.edits,
        },
        [out["mix_figure"], out["mix_gallery"], *report],
    )

    def interpolate(**kw: Any) -> tuple:
        r = ex.interpolate(api.values(kw, {"seed": "from", "to_seed": "to", "steps": "frames"}))
        return r["ip_gallery"], r["ip_gif"], r["ip_file"], r["ip_strip"], r["params"], r["status"]

    api.endpoint(
        "interpolate",
        interpolate,
        {
            "model": C["model"],
            "seed": C["from"],
            "to_seed": C["to"],
            "steps": C["frames"],
            "space": free["space"],
            **api.common,
            "to_class": C["to_class"],
            "w": C["w"],
            **api.edits,
        },
        [out["ip_gallery"], out["ip_gif"], out["ip_file"], out["ip_strip"], *report],
    )

    def strips_api(**kw: Any) -> tuple:
        r = ex.strips(api.values(kw, {}))
        return (*r["strips"], r["status"])

    api.endpoint(
        "strips",
        strips_api,
        {"model": C["model"], "seed": C["seed"], **api.common, "w": C["w"], **{k: api.edits[k] for k in EDIT_API[:4]}},
        [*page.strips, page.status],
    )

    def project(progress: gr.Progress = gr.Progress(), **kw: Any) -> tuple:  # noqa: B008
        reports = getattr(page.backend, "reports_progress", False)
        r = ex.project(
            api.values(kw, {"image": "project_image"}),
            (lambda k, n: progress((k, n), desc="projecting", unit="steps")) if reports else None,
        )
        return r["proj_result"], r["params"], r["status"]

    api.endpoint(
        "project",
        project,
        {"model": C["model"], "image": page.named_inputs["project_image"], "steps": C["steps"], **api.common},
        [out["proj_result"], *report],
    )


def _models(api: Api) -> None:
    """/model_info (a model's controls) and /restore (a PNG's settings)."""
    ex, C, page, M = api.ex, api.C, api.page, api.page.M

    def model_info(name: str, cutoff_value: Any, cls_value: Any) -> tuple:
        upd = _model_updates(ex.info(name), cutoff_value, cls_value, {}, page.extras)
        return tuple(upd.get(k, gr.update()) for k in M)

    gr.Button(visible=False).click(
        _readable(model_info), [C["model"], C["cutoff"], C["class"]], list(M.values()), api_name="model_info"
    )
    settings = ("model", "seed", "grid", "rows", "cols", "layers", "from", "to", "frames", "space")
    # (each once: a component listed twice gets no value)
    outputs = list(dict.fromkeys([*M.values(), *(C[k] for k in settings), page.tabs, page.status, C["w"]]))

    def restore(data: bytes | None) -> dict[Any, Any]:
        if not data:
            raise BackendError("upload a PNG made by ganserve", "image")
        r = restore_from_png(data)
        if r.model and r.model not in page.backend.models():
            raise BackendError(f"the image was made by model '{r.model}', which this source does not serve", "model")
        name = r.model or page.first
        info = ex.info(name)
        upd: dict[Any, Any] = {
            M[k]: u for k, u in _model_updates(info, r.truncation_cutoff, r.class_, {}, page.extras).items() if k in M
        }
        upd[C["model"]] = gr.update(value=name)
        for key, value in restored_values(r, info.num_ws).items():
            if C.get(key) in outputs:
                upd[C[key]] = gr.update(value=value)
        if isinstance(r.mix_layers, list) and r.tab == "mix":
            upd[C["first"]] = gr.update(value=r.mix_layers[0], visible=True)
            upd[C["last"]] = gr.update(value=r.mix_layers[1], visible=True)
        upd[page.tabs] = gr.Tabs(selected=r.tab)
        upd[page.status] = gr.update(value=f"Restored: {r.summary()}.")
        return upd

    restore_file = gr.File(type="binary", visible=False, label="PNG made by ganserve")
    gr.Button(visible=False).click(_readable(restore), restore_file, outputs, api_name="restore")
