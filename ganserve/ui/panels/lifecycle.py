"""The page-wide events: choosing a tab, switching the model, restoring a PNG's settings, and opening the page
(the model list, and the settings in the link, rendered)."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from ganserve.ui import fields, urlstate
from ganserve.ui.backend import BackendError
from ganserve.ui.controls import MAX_SLIDERS, ControlSpec
from ganserve.ui.model_controls import _check_url_value, _edit_values, _int, _model_updates, _new_values, model_defaults
from ganserve.ui.page import Page
from ganserve.ui.panels import attention
from ganserve.ui.restore import Restored, declared_values, restore_from_png
from ganserve.ui.widgets import _message


def wire_tabs(page: Page) -> None:
    """A tab's select: it becomes the tab shown (the URL's tab), and a tab opened for the first time renders."""
    for key, item in page.tab_items.items():
        item.select(lambda key=key: key, None, page.tab_state, queue=False, api_visibility="private")
        item.select(None, None, None, js=f"() => gsSetTab('{key}')", api_visibility="private")
        if key in page.tab_outputs:
            page.on([item.select], page.arrive(key), inputs={*page.inputs, *page.tab_outputs[key]})


def wire_model_switch(page: Page) -> None:
    ex = page.ex

    def switch_model(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
        prev = d.get(page.shown_model)
        if prev == v["model"] or not v["model"]:  # set by the page itself (a link, a restore): already shown
            return {}
        info = ex.info(v["model"])
        if prev and prev in page.backend.models():
            # Settings that meant "the default" for the previous model mean it for the new one too.
            before = ex.spec(prev)
            if not before.has("truncation_cutoff") or _int(v.get("cutoff")) >= max(before.num_ws, 1):
                v["cutoff"] = None  # every w truncated
            if not before.has("style_mix"):
                v.update(layers=None, first=-1, last=-1)
            if not before.edits:
                v.update(edit_layers=None, edit_first=-1, edit_last=-1)
        upd = _model_updates(info, v.get("cutoff"), v.get("class"), v, page.extras)
        out = {**{f"model:{k}": u for k, u in upd.items()}, "shown_model": v["model"]}
        before = dict(v)
        v.update(_new_values(upd))
        try:
            out.update(page.shown(v["tab"], v))
        except (BackendError, ValueError) as e:  # the model is switched; its first render may still be refused
            out["status"] = f"{v['model']}: {_message(e)}"
        if "psi" in before and v.get("psi") != before.get("psi") and ex.spec(v["model"]).has("truncation_psi"):
            out["status"] = f"{out.get('status', '')} (ψ {before['psi']} is outside this model's range: now {v['psi']})"
        return out

    # change, not select: a model chosen with the keyboard (type, arrows, Enter) switches the page too.
    page.on([page.C["model"].change], switch_model)


def restored_values(r: Restored, num_ws: int) -> dict[str, Any]:
    """The settings a restored image sets, keyed as urlstate.KEYS."""
    new: dict[str, Any] = {"w": r.w or ""}
    if r.truncation_psi is not None:
        new["psi"] = r.truncation_psi
    if r.noise_mode:
        new["noise"] = r.noise_mode
    if r.truncation_cutoff is None:  # absent: every w truncated
        new["cutoff"] = max(num_ws, 1)
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
    return new


def restored(page: Page, r: Restored, v: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(updates keyed as OUT, the settings after them) for a restored image."""
    if r.model and r.model not in page.backend.models():
        raise BackendError(f"the image was made by model '{r.model}', which this source does not serve", "model")
    name = r.model or page.first
    info = page.ex.info(name)
    model_upd = _model_updates(info, r.truncation_cutoff, r.class_, v, page.extras)
    upd = {f"model:{k}": u for k, u in model_upd.items()}
    v = {**v, **_new_values(model_upd), "model": name}
    new = {"model": name, **restored_values(r, info.num_ws)}
    v.update(new)
    for key, value in new.items():
        upd[f"set:{key}"] = gr.update(value=value)
    custom = new.get("layers", v.get("layers")) == "custom"
    upd["set:first"] = gr.update(value=v.get("first"), visible=custom)
    upd["set:last"] = gr.update(value=v.get("last"), visible=custom)
    edit_custom = v.get("edit_layers") == "custom"
    upd["set:edit_first"] = gr.update(value=v.get("edit_first"), visible=edit_custom)
    upd["set:edit_last"] = gr.update(value=v.get("edit_last"), visible=edit_custom)
    upd.update(_declared_updates(page, r.params, v))
    upd["tabs"], upd["tab"], upd["shown_model"] = gr.Tabs(selected=r.tab), r.tab, name
    return upd, v


def _declared_updates(page: Page, params: dict[str, Any], v: dict[str, Any]) -> dict[str, Any]:
    """The generic controls (``ganserve.ui.fields``: declared fields no panel presents) set to the render's values,
    for the fields its model has (``v`` takes them): the same request, so the same pixels."""
    spec = page.ex.spec(v["model"])
    own = {c.path: c for c in page.extras if spec.has(c.top)}
    values = declared_values(params, {path: c.default for path, c in own.items()})
    v.update({own[path].key: value for path, value in values.items()})
    return {f"set:{own[path].key}": gr.update(value=value) for path, value in values.items()}


def wire_restore(page: Page, restore_file: Any) -> None:
    """Restore from a PNG: set the controls, render, and clear the drop zone for the next file."""

    def restore_action(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
        data = d.get(restore_file)
        clear = {"restore": gr.update(value=None)}  # the drop zone takes the next file at once
        if not data:
            return clear
        r = restore_from_png(data)
        upd, v2 = restored(page, r, v)
        out = {**upd, **clear}
        try:
            out.update(page.shown(r.tab, v2))
            out["status"] = f"Restored: {r.summary()}."
        except (BackendError, ValueError) as e:
            out["status"] = f"Restored: {r.summary()}; not rendered: {_message(e)}"
            gr.Warning(_message(e), title="Not rendered")
        return out

    dep = gr.on([restore_file.upload], page.page(restore_action), **page.event)
    # A refused file is cleared too, so the next drop works.
    dep.then(lambda: gr.update(value=None), None, restore_file, api_visibility="private", queue=False)
    page.then_strips(dep)


def linked(page: Page, wanted: dict[str, Any], errors: list[str], v: dict[str, Any], names: list[str]) -> dict:
    """The updates that set the page up for a link's settings (``v`` takes them): the linked model's controls, and
    every setting the link's value or that model's default."""
    name = wanted.get("model", v.get("model"))
    if name not in names:
        errors.append(f"model: '{name}' is not served here")
        name = v.get("model")
    info = page.ex.info(name)
    spec = ControlSpec.from_info(info)
    # A setting the link leaves out means this model's default, never the page's value for the first model.
    v.update(model_defaults(spec), **fields.defaults(spec, page.extras), model=name)
    out = {f"model:{k}": u for k, u in _model_updates(info, v["cutoff"], v["class"], v, page.extras).items()}
    extra = {c.path for c in page.extras}
    for key, value in wanted.items():
        if key in ("model", "tab"):
            continue
        try:
            if key in extra and key not in urlstate.KINDS:  # a family's declared field
                v[fields.PREFIX + key] = fields.checked(spec, key, value)
                continue
            v[key] = _check_url_value(key, value, spec)
        except (BackendError, ValueError) as e:
            errors.append(f"{key}: {e.message if isinstance(e, BackendError) else e}")
    for key in page.C:  # every control: the link's value or the model's default
        if key != "model" and key in v:
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
    return out


def wire_load(app: gr.Blocks, page: Page) -> None:
    """Opening the page: the model list, and the settings in the URL (rendered)."""
    backend = page.backend

    def load_action(v: dict[str, Any], d: dict[Any, Any], request: gr.Request) -> dict[str, Any]:
        names = backend.models()
        current = v.get("model") if v.get("model") in names else (names[0] if names else None)
        out: dict[str, Any] = {}
        if names != page.models or current != v.get("model"):
            out["set:model"] = gr.update(choices=names, value=current)
        query = dict(request.query_params) if request is not None else {}
        wanted, errors = urlstate.decode(query, fields.url_kinds(page.extras))
        ready = f"Ready: {len(names)} model{'s' if len(names) != 1 else ''} from {backend.label}."
        if not wanted:  # the first visit: the default image at once, not an empty panel
            out["loaded"] = True
            try:
                return {**out, **page.shown("seed", v), "status": ready}
            except (BackendError, ValueError) as e:
                return {**out, "status": f"{ready} ⚠ {_message(e)}"}
        v["model"] = current
        out.update(linked(page, wanted, errors, v, names))
        if errors:
            gr.Warning("Some settings in the link were refused: " + "; ".join(errors), title="Link")
        try:
            out.update(page.shown(out["tab"], v))
            out.update(attention.arrived(page, wanted, v))  # a query pixel in the link: its map, drawn
            out["status"] = "Opened from the link" + (f" ({len(errors)} settings refused)" if errors else "") + "."
        except (BackendError, ValueError) as e:
            out["status"] = f"⚠ {_message(e)}"
            gr.Warning(_message(e), title="Not rendered")
        return out

    def load_page(d: dict[Any, Any], request: gr.Request) -> dict[Any, Any]:
        return page.page(load_action)(d, request)

    dep = app.load(
        load_page,
        inputs=page.inputs,
        outputs=page.outputs,
        show_progress="minimal",
        show_progress_on=page.progress_on,
        api_visibility="private",
    )
    # The link's tab again, once its tab button is shown: selected in the same update that un-hides it (a tab the
    # first model lacks, e.g. Projection on a BigGAN-first page), the browser may still show the Seed tab. Only
    # then: a tab the user clicks just after the load must not be undone.
    spec0 = page.spec0
    hidden_at_build = {
        tab
        for tab, shown in (
            ("mix", spec0.has("style_mix")),
            ("interp", spec0.has("interpolate")),
            ("project", spec0.projection),
            ("vq", spec0.region_resampling),
        )
        if not shown
    }
    labels = {key: page.tab_items[key].label for key in sorted(hidden_at_build)}
    dep.then(
        lambda t: gr.Tabs(selected=t) if t in hidden_at_build else gr.skip(),
        page.tab_state,
        page.tabs,
        js=f"(t) => gsShowTab(t, {json.dumps(labels)})",  # and in the page, once the tab's button is shown
        queue=False,
        api_visibility="private",
    )
    page.then_strips(dep)
