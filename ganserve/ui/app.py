"""The latent explorer: a Gradio Blocks app over a Backend (local models or a ganserve server).

Shared settings (model, truncation, noise, class, VQ sampling) sit in a sidebar; four tabs make images from them:
one seed, a grid of seeds, style mixing (StyleGAN2-ADA's figure) and interpolation (a strip and a GIF). Every image
is a PNG with its parameters embedded, shown next to it; dropping such a PNG on the sidebar restores its settings.
Each tab's button is also an API endpoint (``/generate``, ``/grid``, ``/style_mix``, ``/interpolate``, ``/restore``).
"""

from __future__ import annotations

import atexit
import base64
import functools
import logging
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import gradio as gr
import numpy as np

from ganserve.images import encode_gif, make_grid
from ganserve.requests import MAX_SEED, parse_seeds
from ganserve.ui.backend import Backend, BackendError, ModelInfo, Picture
from ganserve.ui.controls import LAYER_PRESETS, ControlSpec, Settings, common_fields, layers_value, region_fields
from ganserve.ui.figures import style_mix_figure
from ganserve.ui.restore import restore_from_png
from ganserve.ui.vq import vq_tab

log = logging.getLogger("ganserve.ui")

TITLE = "ganserve latent explorer"
# System fonts only: the default theme would fetch Google Fonts, which an offline machine waits on.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
# Small generators: scale images up to the frame, and show their pixels rather than a blur.
CSS = """
.gs-pixelated img { image-rendering: pixelated; }
.gs-fill img { width: 100%; height: 100%; object-fit: contain; }
"""


class _Files:
    """Where result files are written before Gradio copies them to its cache (a folder removed at exit)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ganserve-ui-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def write(self, name: str, data: bytes) -> str:
        d = self.root / uuid.uuid4().hex[:12]
        d.mkdir()
        path = d / name
        path.write_bytes(data)
        return str(path)


def _stem(params: dict[str, Any]) -> str:
    stem = f"{params.get('model', 'image')}-seed{params['seeds'][0]:04d}"
    if "style_mix" in params:
        stem += f"-mix{params['style_mix']['seeds'][0]:04d}"
    if "frame" in params:
        stem += f"-frame{params['frame']:03d}"
    return stem


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Failures become one readable line in the page (gr.Error), never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except BackendError as e:
            raise gr.Error(f"Invalid {e.field}: {e.message}" if e.field else e.message, print_exception=False) from None
        except ValueError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Unexpected error ({type(e).__name__}): {e}", print_exception=False) from None

    return wrapper


def _seeds_text(text: str, field: str) -> list[int]:
    try:
        return parse_seeds(str(text).strip())
    except ValueError as e:
        raise BackendError(str(e), field) from None


def _seed(value: Any, field: str = "seed") -> int:
    if value is None or not float(value).is_integer() or not 0 <= int(value) <= MAX_SEED:
        raise BackendError(f"expected a whole number in [0, {MAX_SEED}], got {value!r}", field)
    return int(value)


def build_app(backend: Backend, title: str = TITLE) -> gr.Blocks:
    """The explorer over ``backend``. Launch it with ``launch(app)``."""
    files = _Files()
    infos: dict[str, ModelInfo] = {}

    def info_for(name: str) -> ModelInfo:
        if not name:
            raise BackendError("choose a model", "model")
        if name not in infos:
            infos[name] = backend.describe(name)
        return infos[name]

    def settings(psi: float, cutoff: float | None, noise: str, cls: Any, temp: float, top_k: Any, top_p: Any):
        return Settings(
            truncation_psi=float(psi),
            truncation_cutoff=None if cutoff is None else int(cutoff),
            noise_mode=noise or "const",
            class_=None if cls in (None, "") else cls,
            temperature=float(temp if temp is not None else 1.0),
            top_k=int(top_k) if top_k else None,
            top_p=float(top_p) if top_p is not None else None,
        )

    def request(model: str, common: tuple, **fields: Any) -> tuple[ModelInfo, dict[str, Any]]:
        info = info_for(model)
        return info, {**fields, **common_fields(ControlSpec.from_info(info), settings(*common))}

    def save(pics: list[Picture]) -> list[str]:
        return [files.write(_stem(p.params) + ".png", p.png) for p in pics]

    def save_array(name: str, image: np.ndarray, params: dict[str, Any]) -> str:
        from ganserve.images import encode_png

        return files.write(name, encode_png(image, params))

    # ---- endpoints -------------------------------------------------------------------------------------------------

    @_readable
    def generate(
        model, seed, psi, cutoff, noise_mode, class_index, temperature, top_k, top_p, region_image=None, region_box=None
    ):
        info, req = request(
            model, (psi, cutoff, noise_mode, class_index, temperature, top_k, top_p), seeds=[_seed(seed)]
        )
        if region_image:
            req.update(region_fields(ControlSpec.from_info(info), _b64_file(region_image), _box(region_box)))
        (pic,) = backend.generate(model, req)
        (path,) = save([pic])
        return path, pic.params, f"{model}: seed {pic.params['seeds'][0]}"

    @_readable
    def grid(model, seeds, psi, cutoff, noise_mode, class_index, temperature, top_k, top_p, classes=None):
        seed_list = _seeds_text(seeds, "seeds")
        _, req = request(model, (psi, cutoff, noise_mode, class_index, temperature, top_k, top_p), seeds=seed_list)
        if classes:  # class-by-seed grid: one row per class (replaces the sidebar's single class)
            req.pop("class", None)
            req["classes"] = [int(c) for c in classes]
        pics = backend.generate(model, req)
        paths = save(pics)
        label = "class {class} seed {seed}" if classes else "seed {seed}"
        gallery = [(p, label.format(seed=pic.params["seeds"][0], **{"class": pic.params.get("class")}))
                   for p, pic in zip(paths, pics)]  # fmt: skip
        params = [pic.params for pic in pics]
        if classes:
            shown = gr.update(value=gallery, columns=len(seed_list))
            return shown, params, params, f"{model}: {len(classes)} classes x {len(seed_list)} seeds"
        return gallery, params, params, f"{model}: {len(pics)} seeds"

    @_readable
    def style_mix(
        model,
        row_seeds,
        col_seeds,
        layers,
        start,
        stop,
        psi,
        cutoff,
        noise_mode,
        class_index,
        temperature,
        top_k,
        top_p,
    ):
        common = (psi, cutoff, noise_mode, class_index, temperature, top_k, top_p)
        rows, cols = _seeds_text(row_seeds, "row seeds"), _seeds_text(col_seeds, "column seeds")
        mix = {"seeds": cols, "layers": layers_value(layers, start, stop)}
        _, req = request(model, common, seeds=rows, style_mix=mix)
        mixes = backend.generate(model, req)  # first: it validates the whole mix (limits, layer range)
        _, src_req = request(model, common, seeds=rows + cols)
        sources = backend.generate(model, src_req)
        arrays = np.stack([p.array() for p in sources])
        figure = style_mix_figure(arrays[: len(rows)], arrays[len(rows) :], np.stack([p.array() for p in mixes]))
        params = [p.params for p in mixes]
        fig_path = save_array(f"{model}-style-mix.png", figure, {"grid": params})
        paths = save(mixes)
        gallery = [(p, f"{m.params['seeds'][0]} x {m.params['style_mix']['seeds'][0]}") for p, m in zip(paths, mixes)]
        return fig_path, gallery, params, params, f"{model}: {len(rows)} x {len(cols)} mix, layers {mix['layers']}"

    @_readable
    def interpolate(
        model, seed, to_seed, steps, space, psi, cutoff, noise_mode, class_index, temperature, top_k, top_p,
        to_class=None,
    ):  # fmt: skip
        ip = {"to_seed": _seed(to_seed, "to seed"), "steps": int(steps), "space": space}
        if to_class is not None and str(to_class).strip() not in ("", "-1"):
            ip["to_class"] = int(to_class)  # class interpolation: the class embedding is lerped too
        _, req = request(
            model,
            (psi, cutoff, noise_mode, class_index, temperature, top_k, top_p),
            seeds=[_seed(seed)],
            interpolate=ip,
        )
        frames = backend.generate(model, req)
        paths = save(frames)
        gallery = [(p, f"t={f.params.get('t', 0):.2f}") for p, f in zip(paths, frames)]
        arrays = np.stack([f.array() for f in frames])
        gif = files.write(f"{model}-seed{int(seed):04d}-to{ip['to_seed']:04d}-{space}.gif", encode_gif(arrays))
        strip = save_array(
            f"{model}-interp-strip.png", make_grid(arrays, len(arrays)), {"grid": [f.params for f in frames]}
        )
        params = [f.params for f in frames]
        return gallery, gif, gif, strip, params, params, f"{model}: {len(frames)} frames in {space.upper()}"

    # ---- the page ------------------------------------------------------------------------------------------------

    models = backend.models()
    first = models[0] if models else None
    spec0 = ControlSpec.from_info(info_for(first)) if first else ControlSpec(frozenset())

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"## {title}\n Generator source: **{backend.label}**. Every image is a PNG that carries its "
            "settings: drop one on *Restore settings* to get them back."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                model = gr.Dropdown(models, value=first, label="Model", elem_id="model")
                model_md = gr.Markdown(_model_text(infos.get(first)))
                psi = gr.Slider(
                    **_slider(spec0, "truncation_psi", -1, 2, 1.0),
                    step=0.05,
                    label="Truncation ψ",
                    elem_id="psi",
                    visible=spec0.has("truncation_psi"),
                )
                cutoff = gr.Slider(
                    0,
                    max(spec0.num_ws, 1),
                    value=max(spec0.num_ws, 1),
                    step=1,
                    elem_id="cutoff",
                    label="Truncation cutoff",
                    info="truncate the first N ws (max: all)",
                    visible=spec0.has("truncation_cutoff"),
                )
                noise = gr.Radio(
                    list(spec0.choices.get("noise_mode", ("const",))),
                    value="const",
                    label="Noise mode",
                    visible=spec0.has("noise_mode"),
                )
                cls = gr.Dropdown(
                    _class_choices(spec0),
                    value=0 if spec0.class_picker else None,
                    label="Class",
                    visible=spec0.class_picker,
                    # API callers may pick a class of any served model, not only of the one the page shows first.
                    allow_custom_value=True,
                    elem_id="class",
                )
                with gr.Group(visible=spec0.vq_sampling) as vq_group:
                    temp = gr.Slider(**_slider(spec0, "temperature", 0.01, 10, 1.0), step=0.01, label="Temperature")
                    top_k = gr.Number(0, precision=0, minimum=0, label="Top-k (0 = off)")
                    top_p = gr.Slider(0.01, 1.0, value=1.0, step=0.01, label="Top-p (1 = off)")
                restore_file = gr.File(label="Restore settings from a ganserve PNG", file_types=[".png"], type="binary")
                status = gr.Markdown("", elem_id="status")
                params_box = gr.JSON(label="Image parameters", elem_id="params")
            with gr.Column(scale=3), gr.Tabs(selected="seed") as tabs:
                with gr.Tab("Seed", id="seed"):
                    with gr.Row():
                        seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
                        rand_btn = gr.Button("Random seed", elem_id="random")
                        gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    image = gr.Image(
                        format="png",
                        type="filepath",
                        label="Image",
                        interactive=False,
                        height=384,
                        elem_id="image",
                        elem_classes=["gs-pixelated", "gs-fill"],
                    )
                    with gr.Accordion("Region re-sampling", open=False, visible=spec0.region_resampling) as region:
                        region_image = gr.Image(
                            type="filepath",
                            format="png",
                            sources=["upload"],
                            label="Source image (its codes outside the box are re-sampled)",
                        )
                        region_box = gr.Textbox("0,0,4,4", label="Keep box: top, left, bottom, right (in codes)")
                with gr.Tab("Seed grid", id="grid"):
                    with gr.Row():
                        grid_seeds = gr.Textbox("0-15", label="Seeds (e.g. 0-15 or 1,5,9)", elem_id="grid-seeds")
                        grid_btn = gr.Button("Generate grid", variant="primary", elem_id="grid-generate")
                    grid_classes = gr.Dropdown(
                        _class_choices(spec0),
                        value=[],
                        multiselect=True,
                        label="Classes, one row each (class-by-seed grid; empty: the sidebar's class)",
                        visible=spec0.class_grid,
                        elem_id="grid-classes",
                    )
                    grid_gallery = gr.Gallery(
                        label="Grid",
                        columns=8,
                        format="png",
                        height="auto",
                        elem_classes="gs-pixelated",
                        elem_id="grid-gallery",
                    )
                with gr.Tab("Style mixing", id="mix", visible=spec0.has("style_mix")) as mix_tab:
                    with gr.Row():
                        mix_rows = gr.Textbox("0-3", label="Row seeds (take the other layers)")
                        mix_cols = gr.Textbox("10-13", label="Column seeds (give the chosen layers)")
                    with gr.Row():
                        mix_layers = gr.Radio(list(LAYER_PRESETS), value="coarse", label="Layers from the column seeds")
                        last_w = max(spec0.num_ws - 1, 1)  # a model without ws still needs a valid slider
                        mix_start = gr.Slider(0, last_w, value=0, step=1, label="Custom first layer")
                        mix_stop = gr.Slider(0, last_w, value=min(3, last_w), step=1, label="Custom last layer")
                    mix_btn = gr.Button("Mix styles", variant="primary", elem_id="mix-generate")
                    mix_figure = gr.Image(
                        format="png",
                        type="filepath",
                        label="Style mixing figure",
                        interactive=False,
                        height=512,
                        elem_id="mix-figure",
                        elem_classes=["gs-pixelated", "gs-fill"],
                    )
                    mix_gallery = gr.Gallery(
                        label="Mixed images", columns=8, format="png", height="auto", elem_classes="gs-pixelated"
                    )
                vq = vq_tab(spec0.region_resampling)  # VQ families: reconstruction and region re-sampling
                with gr.Tab("Interpolation", id="interp", visible=spec0.has("interpolate")) as interp_tab:
                    with gr.Row():
                        ip_from = gr.Number(0, precision=0, label="From seed")
                        ip_to = gr.Number(1, precision=0, label="To seed")
                        ip_steps = gr.Slider(2, 32, value=8, step=1, label="Frames")
                        ip_space = gr.Radio(_space_choices(spec0), value=_space_value(spec0), label="Space")
                        ip_to_class = gr.Dropdown(
                            [("same class", -1), *_class_choices(spec0)],
                            value=-1,
                            label="To class",
                            visible=spec0.class_interpolation,
                            elem_id="interp-to-class",
                        )
                    ip_btn = gr.Button("Interpolate", variant="primary", elem_id="interp-generate")
                    ip_gallery = gr.Gallery(
                        label="Frames", columns=8, format="png", height="auto", elem_classes="gs-pixelated"
                    )
                    with gr.Row():
                        ip_gif = gr.Image(
                            type="filepath",
                            label="Animation",
                            interactive=False,
                            height=256,
                            elem_classes=["gs-pixelated", "gs-fill"],
                        )
                        ip_file = gr.File(label="Download GIF")
                    ip_strip = gr.Image(
                        format="png",
                        type="filepath",
                        label="Strip",
                        interactive=False,
                        height=160,
                        elem_classes=["gs-pixelated", "gs-fill"],
                    )

        common = [psi, cutoff, noise, cls, temp, top_k, top_p]
        grid_params, mix_params, ip_params = gr.State([]), gr.State([]), gr.State([])

        gen_btn.click(
            generate, [model, seed, *common, region_image, region_box], [image, params_box, status], api_name="generate"
        )
        rand_btn.click(lambda: random.randint(0, MAX_SEED), None, seed, api_visibility="undocumented").then(
            generate,
            [model, seed, *common, region_image, region_box],
            [image, params_box, status],
            api_visibility="undocumented",
        )
        grid_btn.click(
            grid,
            [model, grid_seeds, *common, grid_classes],
            [grid_gallery, grid_params, params_box, status],
            api_name="grid",
        )
        mix_btn.click(
            style_mix,
            [model, mix_rows, mix_cols, mix_layers, mix_start, mix_stop, *common],
            [mix_figure, mix_gallery, mix_params, params_box, status],
            api_name="style_mix",
        )
        ip_btn.click(
            interpolate,
            [model, ip_from, ip_to, ip_steps, ip_space, *common, ip_to_class],
            [ip_gallery, ip_gif, ip_file, ip_strip, ip_params, params_box, status],
            api_name="interpolate",
        )
        vq.wire(backend, model, common, request, save, save_array, _seeds_text, _readable, params_box, status)
        for gallery, state in ((grid_gallery, grid_params), (mix_gallery, mix_params), (ip_gallery, ip_params)):
            gallery.select(_selected_params, state, params_box, api_visibility="undocumented")

        # Model change: controls follow the new model's schema; values that still fit are kept.
        model_outputs = [
            model_md,
            psi,
            cutoff,
            noise,
            cls,
            vq_group,
            temp,
            region,
            mix_tab,
            interp_tab,
            mix_start,
            mix_stop,
            grid_classes,
            ip_to_class,
            ip_space,
        ]

        @_readable
        def on_model(name, cutoff_value, cls_value):
            return _model_updates(info_for(name), cutoff_value, cls_value)

        model.change(on_model, [model, cutoff, cls], model_outputs, api_name="model_info")

        @_readable
        def restore(data: bytes | None):
            if not data:
                raise BackendError("upload a PNG made by ganserve", "image")
            r = restore_from_png(data)
            if r.model and r.model not in backend.models():
                raise BackendError(
                    f"the image was made by model '{r.model}', which this source does not serve", "model"
                )
            name = r.model or first
            upd = dict(zip(model_outputs, _model_updates(info_for(name), r.truncation_cutoff, r.class_)))
            upd[model] = gr.update(value=name)
            if r.truncation_psi is not None:
                upd[psi] = gr.update(value=r.truncation_psi)
            if r.noise_mode:
                upd[noise] = gr.update(value=r.noise_mode)
            if r.truncation_cutoff is None:  # absent: every w truncated
                upd[cutoff] = gr.update(value=max(info_for(name).num_ws, 1))
            if r.tab == "seed":
                upd[seed] = gr.update(value=r.seed)
            elif r.tab == "grid":
                upd[grid_seeds] = gr.update(value=r.seeds)
            elif r.tab == "mix":
                upd[mix_rows], upd[mix_cols] = gr.update(value=r.mix_rows), gr.update(value=r.mix_cols)
                if isinstance(r.mix_layers, list):
                    upd[mix_layers] = gr.update(value="custom")
                    upd[mix_start], upd[mix_stop] = gr.update(value=r.mix_layers[0]), gr.update(value=r.mix_layers[1])
                else:
                    upd[mix_layers] = gr.update(value=r.mix_layers)
            else:
                ip = r.interpolate
                upd[ip_from], upd[ip_to] = gr.update(value=ip["from_seed"]), gr.update(value=ip["to_seed"])
                upd[ip_steps], upd[ip_space] = gr.update(value=ip["steps"]), gr.update(value=ip["space"])
            upd[tabs] = gr.Tabs(selected=r.tab)
            upd[status] = gr.update(value=f"Restored: {r.summary()}.")
            return upd

        restore_outputs = [
            *model_outputs,
            model,
            seed,
            grid_seeds,
            mix_rows,
            mix_cols,
            mix_layers,
            ip_from,
            ip_to,
            ip_steps,
            ip_space,
            tabs,
            status,
        ]
        restore_file.upload(restore, restore_file, restore_outputs, api_name="restore")

        # Each page load re-reads the model list: a server may have registered or dropped models since start-up.
        @_readable
        def refresh_models(current: str | None):
            names = backend.models()
            return gr.update(choices=names, value=current if current in names else (names[0] if names else None))

        app.load(refresh_models, model, model, api_visibility="undocumented")
    return app


def _slider(spec: ControlSpec, name: str, lo: float, hi: float, default: float) -> dict[str, float]:
    r = spec.ranges.get(name)
    if r is None:
        return {"minimum": lo, "maximum": hi, "value": default}
    value = r.default if isinstance(r.default, (int, float)) else default
    return {"minimum": r.minimum, "maximum": r.maximum, "value": min(max(value, r.minimum), r.maximum)}


def _class_choices(spec: ControlSpec) -> list[tuple[str, int]]:
    return [(f"{i}: {name}", i) for i, name in enumerate(spec.classes)]


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


def _space_choices(spec: ControlSpec) -> list[tuple[str, str]]:
    labels = {"w": "W (lerp)", "z": "Z (slerp)"} if "w" in spec.interpolate_spaces else {"z": "Z (lerp)"}
    return [(labels.get(s, s.upper()), s) for s in spec.interpolate_spaces]


def _space_value(spec: ControlSpec) -> str:
    return "w" if "w" in spec.interpolate_spaces else spec.interpolate_spaces[0]


def _model_updates(info: ModelInfo, cutoff_value: Any, cls_value: Any) -> list[Any]:
    """Updates for [model_md, psi, cutoff, noise, cls, vq_group, temp, region, mix_tab, interp_tab, start, stop,
    grid_classes, ip_to_class, ip_space]."""
    spec = ControlSpec.from_info(info)
    top = max(spec.num_ws, 1)
    cutoff = top if cutoff_value is None or not 0 <= int(cutoff_value) <= top else int(cutoff_value)
    cls = _class_index(cls_value, spec.classes)
    psi = _slider(spec, "truncation_psi", -1, 2, 1.0)
    temp = _slider(spec, "temperature", 0.01, 10, 1.0)
    return [
        gr.update(value=_model_text(info)),
        gr.update(minimum=psi["minimum"], maximum=psi["maximum"], visible=spec.has("truncation_psi")),
        gr.update(maximum=top, value=cutoff, visible=spec.has("truncation_cutoff")),
        gr.update(choices=list(spec.choices.get("noise_mode", ("const",))), visible=spec.has("noise_mode")),
        gr.update(choices=_class_choices(spec), value=cls if spec.class_picker else None, visible=spec.class_picker),
        gr.update(visible=spec.vq_sampling),
        gr.update(minimum=temp["minimum"], maximum=temp["maximum"]),
        gr.update(visible=spec.region_resampling),
        gr.update(visible=spec.has("style_mix")),
        gr.update(visible=spec.has("interpolate")),
        gr.update(maximum=max(top - 1, 1)),
        gr.update(maximum=max(top - 1, 1)),
        gr.update(choices=_class_choices(spec), value=[], visible=spec.class_grid),
        gr.update(choices=[("same class", -1), *_class_choices(spec)], value=-1, visible=spec.class_interpolation),
        gr.update(choices=_space_choices(spec), value=_space_value(spec)),
    ]


def _class_index(value: Any, classes: tuple[str, ...]) -> int:
    """The picker's index for an index or a class name; 0 when it names no class of this model."""
    text = "" if value is None else str(value).strip()
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    lowered = [c.lower() for c in classes]
    return lowered.index(text.lower()) if text.lower() in lowered else 0


def _selected_params(state: list[dict[str, Any]], evt: gr.SelectData) -> dict[str, Any] | None:
    return state[evt.index] if state and 0 <= evt.index < len(state) else None


def _b64_file(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _box(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        box = [int(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise BackendError("expected four whole numbers: top, left, bottom, right", "keep.box") from None
    if len(box) != 4:
        raise BackendError("expected four whole numbers: top, left, bottom, right", "keep.box")
    return box


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, **kwargs: Any) -> Any:
    """Start the app (localhost only by default; no share links, no SSR node server)."""
    kwargs.setdefault("show_error", True)
    return app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        theme=THEME,
        css=CSS,
        footer_links=["api"],
        **kwargs,
    )
