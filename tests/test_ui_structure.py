"""The UI stays in small pieces (issue 23): no function in ganserve/ui over 150 lines, and build_app composes the
panels rather than holding them."""

from __future__ import annotations

import ast
from pathlib import Path

import ganserve.ui

UI = Path(ganserve.ui.__file__).parent
MAX_LINES = 150


def function_lengths() -> dict[str, int]:
    out = {}
    for path in sorted(UI.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{path.relative_to(UI)}:{node.name}"] = node.end_lineno - node.lineno + 1
    return out


def test_no_function_over_150_lines():
    lengths = function_lengths()
    assert lengths, "no functions found"
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_build_app_is_short():
    assert function_lengths()["app.py:build_app"] <= 60


def test_every_child_of_the_tabs_is_a_tab(tiny_models_dir):
    """Anything else under gr.Tabs (a State made beside a tab) shifts the tab buttons' names in the browser."""
    import gradio as gr

    from ganserve.ui.app import build_app
    from ganserve.ui.backend import LocalBackend

    app = build_app(LocalBackend({"tiny": tiny_models_dir / "tiny.safetensors"}))
    (tabs,) = [b for b in app.blocks.values() if isinstance(b, gr.Tabs)]
    assert [type(c).__name__ for c in tabs.children] == ["Tab"] * 7
