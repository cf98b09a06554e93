"""What the explorer's controls do, without Gradio components: settings in, files and texts out.

``Explorer`` turns a dict of control values (keyed as ``ganserve.ui.urlstate.KEYS``) into backend requests and the
pictures to show. Every value is checked here with a readable message (a number out of range, a seed that is not a
whole number) rather than clamped or rounded, whether it came from the page or from an API call. ``ganserve.ui.app``
maps the results onto components; nothing here names a family: what a model offers comes from its request schema and
description (``ControlSpec``).
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import math
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ganserve.images import encode_gif, encode_png, make_grid
from ganserve.requests import MAX_SEED, parse_seeds
from ganserve.ui.backend import Backend, BackendError, ModelInfo, Picture
from ganserve.ui.controls import (
    ALL_LAYERS,
    MAX_SLIDERS,
    STRIP_AMOUNTS,
    ControlSpec,
    Settings,
    common_fields,
    edit_layers_value,
    edits_field,
    layers_value,
    region_fields,
)
from ganserve.ui.fields import request_values
from ganserve.ui.figures import figure_html, style_mix_figure

BROWSE_PAGE = 64  # seeds per page of the seed browser
EDIT_RANGE = (-5.0, 5.0)  # a direction slider, in stds
MAX_FRAMES = 32  # interpolation frames the page offers
FROM_SEED = -1  # the class picker's "from the seed": no class is sent, the family takes each seed's own
SEND_TARGETS = {
    "seed": "Seed",
    "rows": "Style mixing: add to the row seeds",
    "cols": "Style mixing: add to the column seeds",
    "from": "Interpolation: start",
    "to": "Interpolation: end",
}


class Files:
    """Where result files are written before Gradio serves them (a folder removed at exit)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ganserve-ui-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)

    def write(self, name: str, data: bytes) -> str:
        d = self.root / uuid.uuid4().hex[:12]
        d.mkdir()
        path = d / name
        path.write_bytes(data)
        return str(path)

    @staticmethod
    def url(path: str) -> str:
        """The page-relative URL Gradio serves a file under (the folder is one of the app's allowed paths)."""
        return "gradio_api/file=" + quote(path)


# ---------------------------------------------------------------------------------------------------------------------
# Checked values


def number(value: Any, field: str, lo: float, hi: float, whole: bool = False) -> float:
    """``value`` as a number in [lo, hi] (a whole one when ``whole``), or a BackendError that says why not."""
    want = f"{'a whole number' if whole else 'a number'} from {lo:g} to {hi:g}"
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise BackendError(f"expected {want}, got nothing", field)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BackendError(f"expected {want}, got {value!r}", field) from None
    if not math.isfinite(x) or (whole and not x.is_integer()) or not lo <= x <= hi:
        raise BackendError(f"expected {want}, got {value!r}", field)
    return x


def seed_value(value: Any, field: str = "seed") -> int:
    if value is None or isinstance(value, bool):
        raise BackendError(f"expected a whole number in [0, {MAX_SEED}], got {value!r}", field)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise BackendError(f"expected a whole number in [0, {MAX_SEED}], got {value!r}", field) from None
    if not math.isfinite(x) or not x.is_integer() or not 0 <= x <= MAX_SEED:
        raise BackendError(f"expected a whole number in [0, {MAX_SEED}], got {value!r}", field)
    return int(x)


def seeds_text(text: Any, field: str) -> list[int]:
    try:
        return parse_seeds(str(text if text is not None else "").strip())
    except ValueError as e:
        raise BackendError(str(e), field) from None


def b64_file(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def keep_box(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        box = [int(v) for v in str(text).replace(" ", "").split(",")]
    except ValueError:
        raise BackendError("expected four whole numbers: top, left, bottom, right", "keep.box") from None
    if len(box) != 4:
        raise BackendError("expected four whole numbers: top, left, bottom, right", "keep.box")
    return box


def stem(params: dict[str, Any]) -> str:
    start = f"seed{params['seeds'][0]:04d}" if "seeds" in params else str(params.get("w", "w")).replace(":", "-")
    out = f"{params.get('model', 'image')}-{start}"
    if "style_mix" in params:
        out += f"-mix{params['style_mix']['seeds'][0]:04d}"
    if "frame" in params:
        out += f"-frame{params['frame']:03d}"
    return out


def describe_image(params: dict[str, Any]) -> str:
    """A short description of an image from its parameters (alt text, status lines)."""
    bits = [str(params.get("model", "image"))]
    bits.append(f"seed {params['seeds'][0]}" if "seeds" in params else f"latent {params.get('w', '')}")
    if "class" in params:
        bits.append(f"class {params['class']}")
    if "truncation_psi" in params:
        bits.append(f"ψ {params['truncation_psi']:g}")
    if "style_mix" in params:
        bits.append(f"mixed with seed {params['style_mix']['seeds'][0]} on layers {params['style_mix']['layers']}")
    if "t" in params:
        bits.append(f"t={params['t']:.2f} toward seed {params['interpolate']['to_seed']}")
    for e in params.get("edits") or []:
        bits.append(f"direction {e['direction']} {e['amount']:+g}")
    if "psnr" in params:
        bits.append(f"PSNR {params['psnr']:.1f} dB")
    return ", ".join(bits)


# ---------------------------------------------------------------------------------------------------------------------


class Explorer:
    """The explorer's actions over a backend. ``v``: control values keyed as ``urlstate.KEYS`` (+ ``region_image``,
    ``region_box``, ``project_image``); each action returns named results for ``ganserve.ui.app`` to show."""

    def __init__(self, backend: Backend, files: Files | None = None) -> None:
        self.backend = backend
        self.files = files or Files()
        self._infos: dict[str, ModelInfo] = {}

    # ---- models ------------------------------------------------------------------------------------------------
    def info(self, name: Any) -> ModelInfo:
        if not name:
            raise BackendError("choose a model", "model")
        name = str(name)
        if name not in self._infos:
            self._infos[name] = self.backend.describe(name)
        return self._infos[name]

    def spec(self, name: Any) -> ControlSpec:
        return ControlSpec.from_info(self.info(name))

    # ---- requests ----------------------------------------------------------------------------------------------
    def settings(self, spec: ControlSpec, v: dict[str, Any]) -> Settings:
        """The sidebar's values, checked against the model's bounds (nothing clamped)."""
        s = Settings()
        if spec.has("truncation_psi"):
            r = spec.ranges.get("truncation_psi")
            lo, hi = (r.minimum, r.maximum) if r else (-1.0, 2.0)
            s.truncation_psi = number(v.get("psi", 1.0), "truncation_psi", lo, hi)
        if spec.has("truncation_cutoff") and v.get("cutoff") not in (None, ""):
            s.truncation_cutoff = int(number(v["cutoff"], "truncation_cutoff", 0, max(spec.num_ws, 1), whole=True))
        noise = v.get("noise") or "const"
        choices = spec.choices.get("noise_mode")
        if spec.has("noise_mode") and choices and noise not in choices:
            raise BackendError(f"expected one of {', '.join(choices)}, got {noise!r}", "noise_mode")
        s.noise_mode = noise
        cls = v.get("class")
        s.class_ = None if cls in (None, "", FROM_SEED, str(FROM_SEED)) else cls
        if spec.has("temperature"):
            r = spec.ranges.get("temperature")
            s.temperature = number(v.get("temp", 1.0), "temperature", r.minimum if r else 0.01, r.maximum if r else 10)
        if spec.has("top_k") and v.get("top_k") not in (None, ""):
            s.top_k = int(number(v["top_k"], "top_k", 0, 1_000_000, whole=True)) or None
        if spec.has("top_p") and v.get("top_p") not in (None, ""):
            s.top_p = number(v["top_p"], "top_p", 0.0, 1.0)
            if s.top_p == 0:
                raise BackendError("expected a number above 0 and at most 1, got 0", "top_p")
        return s

    def edits(self, spec: ControlSpec, v: dict[str, Any]) -> list[dict[str, Any]]:
        """The direction sliders as the request's ``edits`` ([] when every slider is at 0 or the model has none)."""
        if not spec.edits:
            return []
        method = v.get("edit_method") or spec.direction_methods[0]
        choice = v.get("edit_layers") or ALL_LAYERS
        if choice not in (ALL_LAYERS, *spec.layer_groups, "custom"):
            raise BackendError(
                f"'{choice}' holds no layers in this model (choices: "
                f"{', '.join((ALL_LAYERS, *spec.layer_groups, 'custom'))})",
                "edits.layers",
            )
        first = last = 0
        if choice == "custom":
            top = max(spec.num_ws - 1, 0)
            first = int(number(v.get("edit_first", 0), "edits.layers (first)", 0, top, whole=True))
            last = int(number(v.get("edit_last", top), "edits.layers (last)", 0, top, whole=True))
            if first > last:
                raise BackendError(f"the first layer ({first}) is after the last ({last})", "edits.layers")
        amounts = {
            k: number(v.get(f"edit_{k}", 0.0) or 0.0, f"direction {k}", *EDIT_RANGE)
            for k in range(min(MAX_SLIDERS, spec.direction_count))
        }
        try:
            return edits_field(spec, method, edit_layers_value(choice, first, last), amounts)
        except ValueError as e:
            raise BackendError(str(e), "edits") from None

    def common(self, v: dict[str, Any], edits: bool = True) -> tuple[ModelInfo, ControlSpec, dict[str, Any]]:
        info = self.info(v.get("model"))
        spec = ControlSpec.from_info(info)
        fields = {**common_fields(spec, self.settings(spec, v)), **request_values(spec, v)}
        if edits:
            e = self.edits(spec, v)
            if e:
                fields["edits"] = e
        return info, spec, fields

    @staticmethod
    def latent(spec: ControlSpec, v: dict[str, Any]) -> str | None:
        w = str(v.get("w") or "").strip()
        return w if w and spec.latent_source else None

    def source(self, spec: ControlSpec, v: dict[str, Any]) -> dict[str, Any]:
        """Where the Seed tab, the strips, mixing rows and interpolation start: the projected w, else the seed."""
        w = self.latent(spec, v)
        return {"w": w} if w else {"seeds": [seed_value(v.get("seed"))]}

    def generate(self, model: str, request: dict[str, Any]) -> list[Picture]:
        return self.backend.generate(model, request)

    def generate_many(self, model: str, requests: list[dict[str, Any]]) -> list[list[Picture]]:
        many = getattr(self.backend, "generate_many", None)
        if many is not None:
            return many(model, requests)
        return [self.backend.generate(model, r) for r in requests]

    def save(self, pics: list[Picture]) -> list[str]:
        return [self.files.write(stem(p.params) + ".png", p.png) for p in pics]

    def save_array(self, name: str, image: np.ndarray, params: dict[str, Any]) -> str:
        return self.files.write(name, encode_png(image, params))

    # ---- the tabs ----------------------------------------------------------------------------------------------
    def seed_image(self, v: dict[str, Any]) -> dict[str, Any]:
        model = v.get("model")
        _, spec, fields = self.common(v)
        req = {**self.source(spec, v), **fields}
        if v.get("region_image"):
            req.update(region_fields(spec, b64_file(v["region_image"]), keep_box(v.get("region_box"))))
        (pic,) = self.generate(model, req)
        (path,) = self.save([pic])
        start = f"seed {pic.params['seeds'][0]}" if "seeds" in pic.params else pic.params.get("w", "")
        return {"image": path, "alt": describe_image(pic.params), "params": pic.params, "status": f"{model}: {start}"}

    def grid(self, v: dict[str, Any]) -> dict[str, Any]:
        model = v.get("model")
        seed_list = seeds_text(v.get("grid"), "seeds")
        _, _, fields = self.common(v)
        req = {"seeds": seed_list, **fields}
        classes = v.get("grid_classes") or []
        if classes:  # class-by-seed grid: one row per class (replaces the sidebar's single class)
            req.pop("class", None)
            req["classes"] = [int(c) for c in classes]
        pics = self.generate(model, req)
        paths = self.save(pics)
        names = self.spec(model).classes

        def label(pic: Picture) -> str:  # a class grid names each image's class (its id where the model has no names)
            seed, c = pic.params["seeds"][0], pic.params.get("class")
            if not classes:
                return f"seed {seed}"
            name = names[c] if isinstance(c, int) and 0 <= c < len(names) else c
            return f"{name} · seed {seed}"

        gallery = [(p, label(pic)) for p, pic in zip(paths, pics)]
        params = [pic.params for pic in pics]
        status = (
            f"{model}: {len(classes)} classes x {len(seed_list)} seeds" if classes else f"{model}: {len(pics)} seeds"
        )
        cols = len(seed_list) if classes else None
        return {
            "grid_gallery": gallery,
            "grid_columns": cols,
            "grid_params": params,
            "grid_files": self.grid_files(model, pics, cols),
            "params": params,
            "status": status,
        }

    def grid_files(self, model: str, pics: list[Picture], cols: int | None) -> list[str]:
        """The whole grid to download: one PNG (the images row by row, every image's parameters embedded) and a zip
        of the images, each its own PNG with its parameters, plus params.json."""
        sheet = make_grid(np.stack([p.array() for p in pics]), cols)
        params = [p.params for p in pics]
        png = self.save_array(f"{model}-grid.png", sheet, {"grid": params})
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:  # PNGs are compressed already
            for i, p in enumerate(pics):
                z.writestr(f"{i:03d}-{stem(p.params)}.png", p.png)
            z.writestr("params.json", json.dumps(params, indent=1))
        return [png, self.files.write(f"{model}-grid.zip", buf.getvalue())]

    def style_mix(self, v: dict[str, Any]) -> dict[str, Any]:
        model = v.get("model")
        _, spec, fields = self.common(v)
        preset = v.get("layers") or "custom"
        if preset not in spec.mix_presets:
            raise BackendError(
                f"'{preset}' holds no layers in this model (choices: {', '.join(spec.mix_presets)})", "style_mix.layers"
            )
        first, last = v.get("first", 0), v.get("last", 0)
        if preset == "custom":
            top = max(spec.num_ws - 1, 0)
            first = int(number(first, "style_mix.layers (first)", 0, top, whole=True))
            last = int(number(last, "style_mix.layers (last)", 0, top, whole=True))
        w = self.latent(spec, v)
        rows = [] if w else seeds_text(v.get("rows"), "row seeds")
        cols = seeds_text(v.get("cols"), "column seeds")
        mix = {"seeds": cols, "layers": layers_value(preset, first, last)}
        row_source = {"w": w} if w else {"seeds": rows}
        mixes = self.generate(model, {**row_source, "style_mix": mix, **fields})  # first: validates the whole mix
        row_pics, col_pics = self.generate_many(model, [{**row_source, **fields}, {"seeds": cols, **fields}])
        arrays = [np.stack([p.array() for p in pics]) for pics in (row_pics, col_pics)]
        figure = style_mix_figure(arrays[0], arrays[1], np.stack([p.array() for p in mixes]))
        params = [p.params for p in mixes]
        fig_path = self.save_array(f"{model}-style-mix.png", figure, {"grid": params})
        paths = self.save(mixes)
        row_names = [w] if w else [f"seed {s}" for s in rows]
        short = [f"{w[:8]}…" if w else str(s) for s in (rows or [0])]
        gallery = [
            (p, f"{short[i // len(cols)]} × {m.params['style_mix']['seeds'][0]}")
            for i, (p, m) in enumerate(zip(paths, mixes))
        ]
        h, wd = figure.shape[:2]
        alt = (
            f"Style mixing figure of {model}: column seeds {', '.join(map(str, cols))} across the top, rows "
            f"{', '.join(row_names)} down the left, each mix where they cross (layers {mix['layers']})"
        )
        view = figure_html(
            self.files.url(fig_path),
            (wd, h),
            (len(cols) + 1, len(row_names) + 1),
            col_labels=["", *[f"seed {c}" for c in cols]],
            row_labels=["", *row_names],
            alt=alt,
            download=Path(fig_path).name,
            max_size=(768, 560),
            elem_id="mix-figure-view",
        )
        status = f"{model}: {len(row_names)} x {len(cols)} mix, layers {mix['layers']}"
        return {
            "mix_figure": fig_path,
            "mix_view": view,
            "mix_gallery": gallery,
            "mix_params": params,
            "params": params,
            "status": status,
        }

    def interpolate(self, v: dict[str, Any]) -> dict[str, Any]:
        model = v.get("model")
        _, spec, fields = self.common(v)
        steps = int(number(v.get("frames", 8), "interpolate.steps", 2, MAX_FRAMES, whole=True))
        space = v.get("space") or "w"
        ip: dict[str, Any] = {"to_seed": seed_value(v.get("to"), "to seed"), "steps": steps, "space": space}
        to_class = v.get("to_class")
        if to_class is not None and str(to_class).strip() not in ("", "-1"):
            ip["to_class"] = int(to_class)  # class interpolation: the class embedding is lerped too
        w = self.latent(spec, v)
        start = {"w": w} if w else {"seeds": [seed_value(v.get("from"), "from seed")]}
        frames = self.generate(model, {**start, **fields, "interpolate": ip})
        paths = self.save(frames)
        gallery = [(p, f"t={f.params.get('t', 0):.2f}") for p, f in zip(paths, frames)]
        arrays = np.stack([f.array() for f in frames])
        from_name = w.replace(":", "-") if w else f"seed{int(start['seeds'][0]):04d}"
        gif = self.files.write(f"{model}-{from_name}-to{ip['to_seed']:04d}-{space}.gif", encode_gif(arrays))
        strip_img = make_grid(arrays, len(arrays))
        params = [f.params for f in frames]
        strip = self.save_array(f"{model}-interp-strip.png", strip_img, {"grid": params})
        h, wd = strip_img.shape[:2]
        what = w or f"seed {start['seeds'][0]}"
        alt = f"{len(frames)} frames of {model} from {what} to seed {ip['to_seed']} in {space.upper()}"
        view = figure_html(
            self.files.url(strip),
            (wd, h),
            (len(frames), 1),
            col_labels=[f"t={f.params.get('t', 0):.2f}" for f in frames],
            alt=alt,
            download=Path(strip).name,
            max_size=(10**6, 96),
            elem_id="interp-strip-view",
        )
        return {
            "ip_gallery": gallery,
            "ip_gif": gif,
            "ip_file": gif,
            "ip_strip": strip,
            "ip_view": view,
            "ip_params": params,
            "params": params,
            "gif_alt": f"Animation: {alt}",
            "status": f"{model}: {len(frames)} frames in {space.upper()}",
        }

    def browse(self, v: dict[str, Any]) -> dict[str, Any]:
        model = v.get("model")
        start = seed_value(v.get("browse", 0), "first seed")
        stop = min(start + BROWSE_PAGE - 1, MAX_SEED)
        _, _, fields = self.common(v)
        pics = self.generate(model, {"seeds": f"{start}-{stop}", **fields})
        paths = self.save(pics)
        gallery = [(p, f"seed {pic.params['seeds'][0]}") for p, pic in zip(paths, pics)]
        params = [pic.params for pic in pics]
        return {
            "browse_gallery": gallery,
            "browse_params": params,
            "params": params,
            "status": f"{model}: seeds {start}-{stop}",
        }

    def strips(self, v: dict[str, Any]) -> dict[str, Any]:
        """For each direction slider: the current source at -3..+3 stds along that direction alone."""
        model = v.get("model")
        _, spec, fields = self.common(v, edits=False)
        if not spec.edits:
            return {"strips": [None] * MAX_SLIDERS, "status": f"{model}: no semantic directions"}
        base = {**self.source(spec, v), **fields}
        count = min(MAX_SLIDERS, spec.direction_count)
        probe = {**v, **{f"edit_{k}": 0.0 for k in range(MAX_SLIDERS)}}
        requests, index = [base], {}
        for k in range(count):
            for a in STRIP_AMOUNTS:
                if a != 0:
                    (edit,) = self.edits(spec, {**probe, f"edit_{k}": a})
                    index[(k, a)] = len(requests)
                    requests.append({**base, "edits": [edit]})
        pics = [p for (p,) in self.generate_many(model, requests)]
        paths: list[str | None] = []
        for k in range(count):
            row = [pics[index[(k, a)]] if a != 0 else pics[0] for a in STRIP_AMOUNTS]
            strip = make_grid(np.stack([p.array() for p in row]), len(row))
            paths.append(self.save_array(f"{model}-direction{k}-strip.png", strip, {"grid": [p.params for p in row]}))
        paths += [None] * (MAX_SLIDERS - count)
        what = describe_image(pics[0].params)
        return {"strips": paths, "status": f"{model}: {count} direction strips at -3..+3 for {what}"}

    def project(self, v: dict[str, Any], progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Project the uploaded image into W (the reconstruction at ψ 1, no edits), keep its w as the source."""
        model = v.get("model")
        _, spec, _ = self.common(v, edits=False)
        if not spec.projection:
            raise BackendError("this model has no W space to project into", "project")
        image = v.get("project_image")
        if not image:
            raise BackendError("upload an image to project (PNG or JPEG)", "project")
        r = spec.ranges.get("project_steps")
        steps = int(
            number(v.get("steps", 300), "project_steps", r.minimum if r else 1, r.maximum if r else 1000, whole=True)
        )
        # The reconstruction shows the projection itself: no truncation, the model's constant noise, no edits.
        cls = v.get("class")
        cls = None if cls in (None, "", FROM_SEED, str(FROM_SEED)) else cls
        fields = common_fields(spec, Settings(truncation_psi=1.0, noise_mode="const", class_=cls))
        req = {"project": b64_file(image), "project_steps": steps, **fields}
        project = getattr(self.backend, "project", None)
        pic = project(model, req, progress) if project else self.generate(model, req)[0]
        (path,) = self.save([pic])
        w, psnr = pic.params.get("w", ""), pic.params.get("psnr")
        info = (
            f"**PSNR {psnr:.2f} dB** after {steps} steps. Latent `{w}`: the Seed, Style mixing and Interpolation "
            "tabs and the direction strips now start from it (*Use seeds* in the sidebar goes back)."
        )
        return {
            "proj_result": path,
            "proj_alt": f"Reconstruction: {describe_image(pic.params)}",
            "proj_info": info,
            "w": w,
            "params": pic.params,
            "status": f"{model}: projected into {w}, PSNR {psnr:.2f} dB",
        }
