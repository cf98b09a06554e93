"""Small component factories and event plumbing shared by the page's panels and the API."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from ganserve.ui.backend import BackendError

log = logging.getLogger("ganserve.ui")
IMAGE_BUTTONS = ["download", "fullscreen"]  # no "share": it only works on Hugging Face Spaces


def _message(e: Exception) -> str:
    if isinstance(e, BackendError):
        return f"Invalid {e.field}: {e.message}" if e.field else e.message
    if isinstance(e, ValueError):
        return str(e)
    return f"Unexpected error ({type(e).__name__}): {e}"


def _readable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """API endpoints: failures become one readable line (gr.Error; AppError for gradio_client), never a trace."""

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


def _out_image(label: str, alt_text: str, elem_id: str) -> Any:
    """A rendered image: PNG by path, read-only, pixelated when enlarged."""
    return gr.Image(
        format="png",
        type="filepath",
        label=label,
        interactive=False,
        buttons=IMAGE_BUTTONS,
        alt_text=alt_text,
        elem_id=elem_id,
        elem_classes=["gs-int", "gs-out", "gs-pixelated"],
    )


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


def _selected_params(state: list[dict[str, Any]], evt: gr.SelectData) -> dict[str, Any] | None:
    return state[evt.index] if state and 0 <= evt.index < len(state) else None
