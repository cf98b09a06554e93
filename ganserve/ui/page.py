"""The page's shared plumbing: the settings every event reads, the outputs it may write, and how events are wired.

A panel (``ganserve.ui.panels``) builds its components inside the page's layout and registers them here: settings
under their ``urlstate`` key (``C``), the components a model switch updates (``M``), the outputs its renders write
(``OUT``) and its tab's renderer. Once every panel is built, ``finish`` makes the hidden state and freezes the page's
inputs and outputs; then the panels wire their events with ``on``. A page event never fails: a refusal is a warning
toast and the status line, and the last good pictures stay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ganserve.ui.actions import Explorer
from ganserve.ui.backend import Backend, BackendError
from ganserve.ui.controls import ControlSpec
from ganserve.ui.fields import FieldControl
from ganserve.ui.model_controls import COMMON_KEYS, url_for
from ganserve.ui.widgets import _merged, _message, log

Renderer = Callable[[dict[str, Any]], dict[str, Any]]
Action = Callable[..., dict[str, Any]]


class Page:
    """One explorer page over ``backend`` (built for its first model; the load event sets up the linked one)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.ex = Explorer(backend)
        self.models = backend.models()
        self.first = self.models[0] if self.models else None
        self.info0 = self.ex.info(self.first) if self.first else None
        self.spec0 = ControlSpec.from_info(self.info0) if self.info0 else ControlSpec(frozenset())
        self.last_w = max(self.spec0.num_ws - 1, 1)  # a model without ws still needs valid sliders
        self.C: dict[str, Any] = {}  # the settings, keyed as urlstate.KEYS (+ "field:<path>" for generic fields)
        self.M: dict[str, Any] = {}  # what a model switch updates, keyed as model_controls._model_updates
        self.OUT: dict[str, Any] = {}  # other outputs of page events, by name
        self.named_inputs: dict[str, Any] = {}  # read by the actions beside the settings (uploads, the region box)
        self.other_inputs: list[Any] = []  # read by events but not by the actions (the galleries' params ...)
        self.renderers: dict[str, Renderer] = {}  # tab -> its render: updates keyed as OUT
        self.tab_outputs: dict[str, list[Any]] = {}  # tab -> components still empty until its first render
        self.tab_items: dict[str, Any] = {}
        self.progress_on: list[Any] = []
        self.extras: list[FieldControl] = []
        self.strips: list[Any] = []

    # ---- building ----------------------------------------------------------------------------------------------
    def finish(self, tabs: Any) -> None:
        """The hidden state and the page's inputs and outputs (call after every panel is built)."""
        self.tabs = tabs
        self.tab_state = gr.State("seed")
        self.panel_open, self.strips_key = gr.State(False), gr.State(None)
        self.shown_model = gr.State(self.first)  # the model the controls were last set up for
        # The load event has set the page up. A hidden control, not a State: an event sends the page's values as they
        # were when it fired, and a State is read when it runs (a tab's select at mount would see True).
        self.loaded = gr.Checkbox(False, visible=False)
        self.url_box = gr.Textbox("", visible=False)
        self.OUT.update(
            url=self.url_box,
            tabs=tabs,
            tab=self.tab_state,
            shown_model=self.shown_model,
            loaded=self.loaded,
            panel_open=self.panel_open,
        )
        self.components = {
            **{f"set:{k}": c for k, c in self.C.items()},
            **{f"model:{k}": c for k, c in self.M.items()},
            **self.OUT,
        }
        self.outputs = list(dict.fromkeys(self.components.values()))
        self.inputs = {
            *self.C.values(),
            *self.named_inputs.values(),
            *self.other_inputs,
            *self.strips,
            self.tab_state,
            self.panel_open,
            self.strips_key,
            self.shown_model,
            self.loaded,
        }
        # A page event: every setting in, any component out, one render at a time, the latest wins.
        self.event = dict(
            inputs=self.inputs,
            outputs=self.outputs,
            trigger_mode="always_last",
            concurrency_id="page",
            concurrency_limit=1,
            show_progress="minimal",
            show_progress_on=self.progress_on,
            api_visibility="private",
        )
        self.url_box.change(None, self.url_box, None, js="(q) => gsSetUrl(q)", api_visibility="private")

    @property
    def status(self) -> Any:
        return self.OUT["status"]

    # ---- values and renders ------------------------------------------------------------------------------------
    def values(self, d: dict[Any, Any]) -> dict[str, Any]:
        """An event's input values -> the settings keyed as urlstate.KEYS, the tab shown and the named inputs."""
        v = {k: d.get(c) for k, c in self.C.items()}
        v.update({k: d.get(c) for k, c in self.named_inputs.items()}, tab=d.get(self.tab_state) or "seed")
        return v

    def shown(self, tab: str, v: dict[str, Any]) -> dict[str, Any]:
        """Render ``tab`` with the settings ``v``: updates keyed as OUT (the URL follows a successful render).
        Projection and VQ run on their own buttons only (minutes, or an upload to choose)."""
        render = self.renderers.get(tab)
        out = render(v) if render else {}
        return {**out, "url": url_for(self.ex, {**v, "tab": tab})}

    # ---- events ------------------------------------------------------------------------------------------------
    def page(self, action: Action) -> Callable[..., dict[Any, Any]]:
        """A page event: never fails; a problem is a warning toast and the status line (no error badges, nothing
        dimmed: the last good pictures stay)."""

        def run(d: dict[Any, Any], *extra: Any) -> dict[Any, Any]:
            try:
                out = action(self.values(d), d, *extra)
            except Exception as e:
                if not isinstance(e, (BackendError, ValueError)):
                    log.exception("unexpected error in %s", getattr(action, "__name__", "page event"))
                msg = _message(e)
                gr.Warning(msg, title="Not rendered")
                return {self.status: f"⚠ {msg}"}
            return _merged(out, self.components) if out else gr.skip()

        run.__name__ = getattr(action, "__name__", "page_event")
        return run

    def page_select(self, action: Action) -> Callable[..., dict[Any, Any]]:
        """``page`` for a select event (Gradio passes the event data by the annotation)."""
        inner = self.page(action)

        def run(d: dict[Any, Any], evt: gr.SelectData) -> dict[Any, Any]:
            return inner(d, evt)

        run.__name__ = inner.__name__
        return run

    def then_strips(self, dep: Any) -> Any:
        """After a page event, the direction strips (when the panel is open and their source or settings changed),
        one render at a time, the latest wins."""
        return dep.then(
            self.strips_event,
            inputs=self.inputs,
            outputs=[*self.strips, self.strips_key],
            trigger_mode="always_last",
            concurrency_id="strips",
            concurrency_limit=1,
            show_progress="hidden",
            api_visibility="private",
        )

    def on(self, triggers: list[Any], action: Action, **kwargs: Any) -> Any:
        """Wire a page event, then the direction strips."""
        return self.then_strips(gr.on(triggers, self.page(action), **{**self.event, **kwargs}))

    def render_tab(self, tab: str | None) -> Action:
        """An action rendering ``tab`` (None: the tab shown)."""

        def action(v: dict[str, Any], _d: Any) -> dict[str, Any]:
            t = tab or v["tab"]
            return {**self.shown(t, v), **({"tab": t} if tab else {})}

        action.__name__ = f"render_{tab or 'current'}"
        return action

    def arrive(self, tab: str) -> Action:
        """A tab opened for the first time shows its default at once."""

        def action(v: dict[str, Any], d: dict[Any, Any]) -> dict[str, Any]:
            if not d.get(self.loaded):  # the tabs' own select as the page mounts: the load event renders
                return {}
            if any(d.get(c) for c in self.tab_outputs[tab]):
                return {"tab": tab}
            return {**self.shown(tab, v), "tab": tab}

        action.__name__ = f"arrive_{tab}"
        return action

    # ---- direction strips --------------------------------------------------------------------------------------
    @staticmethod
    def strip_settings(v: dict[str, Any]) -> tuple:
        keys = ("model", "w", "seed", *COMMON_KEYS, "edit_method", "edit_layers", "edit_first", "edit_last")
        return tuple(str(v.get(k)) for k in keys) + tuple(str(v[k]) for k in sorted(v) if k.startswith("field:"))

    def strips_event(self, d: dict[Any, Any], force: bool = False) -> dict[Any, Any]:
        v = self.values(d)
        key = self.strip_settings(v)
        if not d.get(self.panel_open) or (key == d.get(self.strips_key) and not force):
            return gr.skip()
        try:
            spec = self.ex.spec(v["model"])
            if not spec.edits:
                return gr.skip()
            r = self.ex.strips(v)
        except Exception as e:  # the render beside it reports what is wrong with the settings
            log.debug("strips not made: %s", e)
            return gr.skip()
        out: dict[Any, Any] = {self.strips_key: key}
        method = v.get("edit_method")
        for k, path in enumerate(r["strips"]):
            label = spec.direction_label(method, k)
            out[self.strips[k]] = gr.update(value=path, alt_text=f"{label}, at −3 … +3 stds: {r['status']}")
        return out
