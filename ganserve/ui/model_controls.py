"""A model's controls as values: defaults, choices, bounds and the updates a model switch makes (no components here).

Everything is read from the model's ``ControlSpec`` (its request schema and description): nothing names a family.
The page's panels (``ganserve.ui.panels``) and the API (``ganserve.ui.api``) build and update their controls with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from ganserve.ui import urlstate
from ganserve.ui.actions import EDIT_RANGE, FROM_SEED, MAX_FRAMES, SEND_TARGETS, Explorer, number, seed_value
from ganserve.ui.backend import Backend, ModelInfo
from ganserve.ui.controls import ALL_LAYERS, MAX_SLIDERS, ControlSpec
from ganserve.ui.fields import PREFIX, FieldControl, field_updates, url_values

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
        (("attn_y", "attn_x"), spec.has("attention")),
        (("edit_method", "edit_layers", *[f"edit_{k}" for k in range(MAX_SLIDERS)]), spec.edits),
        (("edit_first", "edit_last"), spec.edits and v.get("edit_layers") == "custom"),
    ):
        if not keep:
            drop.update(keys)
    extra = url_values(spec, v)  # the model's generic fields, by their request names
    return urlstate.encode({**{k: val for k, val in v.items() if k not in drop}, **extra}, tuple(extra))


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
        "attn_y": 0,  # the attention panel's query pixel (models that declare `attention`)
        "attn_x": 0,
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


def _model_updates(
    info: ModelInfo, cutoff_value: Any, cls_value: Any, v: dict[str, Any], extras: Sequence[FieldControl] = ()
) -> dict[str, Any]:
    """The controls for a model, keyed as the page's model outputs (values that still fit are kept); ``extras``: the
    page's generic field controls (``ganserve.ui.fields``), whose updates come last."""
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
        **field_updates(spec, extras, v),
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
    for key, u in updates.items():  # generic field controls whose value the model changed
        if key.startswith(PREFIX) and isinstance(u, dict) and "value" in u:
            out[key] = u["value"]
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
