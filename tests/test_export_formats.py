"""Export formats registered one way: a ``GraphFormat`` found through the ``ganserve.backends`` entry points.

A format from outside the package (a module defining ``FORMAT`` and a dist-info whose entry_points.txt names it, what
``pip install`` of a package with ``[project.entry-points."ganserve.backends"]`` leaves in site-packages) is listed by
the registry and by ``ganserve export --help``, exports through ``ganserve export --format``, runs through
``make_runner``, and is a backend for the core, which never imports it by name.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ganserve
from ganserve import backends
from ganserve.cli import main
from ganserve.export import ExportError, GraphFormat, export_formats, get_format, graph_formats, make_runner
from ganserve.export import formats as formats_mod
from ganserve.export.bundle import MANIFEST, load_exported, read_manifest
from ganserve.sampling import sample

PKG = "ganplugin_toyformat"
NAME = "toyep"

# The plugin's format: torch.export under its own suffix and runner class, recording each call so the test can tell
# that ganserve went through the plugin's functions and not a built-in format's.
FORMAT_PY = """
import torch

from ganserve.export.formats import GraphFormat

CALLS = []


class ToyRunner:
    def __init__(self, path, device, dtype):
        CALLS.append(("runner", str(path)))
        self.module = torch.export.load(str(path)).module()
        self.dtype = getattr(torch, dtype)

    @torch.no_grad()
    def __call__(self, *tensors):
        args = [t.to(self.dtype) if t.is_floating_point() else t for t in tensors]
        return self.module(*args).to(torch.float32)


def export_graph(spec, path, *, opset=None, fp16=False):
    CALLS.append(("export", spec.name))
    module = spec.export_module(fp16)
    inputs = spec.export_inputs(spec.make_inputs(2, torch.Generator().manual_seed(0)), fp16)
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=spec.dynamic_shapes(), strict=False)
    torch.export.save(program, str(path))


def make_runner(path, device="cpu", dtype="float32", **options):
    return ToyRunner(path, device, dtype)


FORMAT = GraphFormat(name="toyep", suffix=".toyep", export_graph=export_graph, make_runner=make_runner,
                     description="a toy format from outside ganserve", pad_batch_one=True)
"""

# A backend of the same group that is not an export format (a plain loader): a backend, but no --format.
LOADER_PY = """
import ganserve


def load(checkpoint, device="cpu", **options):
    return ganserve.load(checkpoint, device=device)
"""


def _write_dist(root: Path, entry_points: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    info = root / f"{PKG}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PKG}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@contextlib.contextmanager
def on_path(root: Path) -> Iterator[None]:
    """``root`` on sys.path for the block; afterwards the path, modules, backends and importlib caches as before."""
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
            del sys.modules[mod]
        for name in (NAME, "toyloader", "broken"):
            backends.BACKENDS.pop(name, None)
        formats_mod._WARNED.clear()
        importlib.invalidate_caches()


@pytest.fixture()
def plugin(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    entry_points = f"[ganserve.backends]\n{NAME} = {PKG}.fmt:FORMAT\ntoyloader = {PKG}.loader:load\n"
    _write_dist(root, entry_points, {f"{PKG}/__init__.py": "", f"{PKG}/fmt.py": FORMAT_PY,
                                     f"{PKG}/loader.py": LOADER_PY})  # fmt: skip
    with on_path(root):
        yield root
    assert NAME not in graph_formats()  # gone with its folder


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(out.getvalue().split())


def test_built_in_formats_are_declarations():
    formats = graph_formats()
    assert {"onnx", "pt2"} <= set(formats)
    assert all(isinstance(f, GraphFormat) and f.name == n for n, f in formats.items())
    assert formats["onnx"].suffix == ".onnx" and formats["pt2"].suffix == ".pt2"
    assert export_formats()[-1] == "mar" and "mar" not in formats  # the archive wraps a format, it is not one
    # the core's backends are the same objects: one declaration serves export and --backend
    assert {"onnx", "pt2"} <= set(backends.backend_names())


def test_plugin_format_is_listed_by_the_registry_and_the_help(plugin):
    assert NAME in graph_formats() and NAME in export_formats()
    assert graph_formats()[NAME].description == "a toy format from outside ganserve"
    assert "toyloader" not in graph_formats()  # a plain backend loader is not an export format
    assert "toyloader" in backends.backend_names()
    text = _help("export")
    assert "toyep: a toy format from outside ganserve" in text
    assert "what the archive runs: eager | onnx | pt2 | toyep" in text
    assert "generator backend: eager | onnx | pt2 | toyep | toyloader" in _help("serve")


def test_plugin_format_exports_runs_and_serves_as_a_backend(plugin, tiny_path, tmp_path):
    from ganplugin_toyformat import fmt

    out = tmp_path / "tiny-toyep"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", "--model", str(tiny_path), "--format", NAME, "--out", str(out)]) == 0
    assert ("export", "mapping") in fmt.CALLS and ("export", "synthesis") in fmt.CALLS
    assert read_manifest(out)["format"] == NAME
    assert sorted(p.name for p in out.glob("*.toyep")) == ["mapping.toyep", "synthesis.toyep"]

    assert isinstance(make_runner(NAME, out / "synthesis.toyep"), fmt.ToyRunner)

    model = backends.load_backend(NAME, out)  # the core finds it by its entry point alone
    assert model.export_format == NAME and model.pad_batch_one
    req = {"seeds": "0-4", "truncation_psi": 0.7}
    a, b = sample(ganserve.load(tiny_path), req).images.astype(int), sample(model, req).images.astype(int)
    assert np.abs(a - b).max() <= 1


def test_a_broken_plugin_is_named_and_leaves_the_others(tmp_path):
    root = tmp_path / "site"
    entry_points = f"[ganserve.backends]\nbroken = {PKG}.nothere:FORMAT\nrenamed = {PKG}.fmt:FORMAT\n"
    _write_dist(root, entry_points, {f"{PKG}/__init__.py": "", f"{PKG}/fmt.py": FORMAT_PY})
    with on_path(root), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = graph_formats()
    assert {"onnx", "pt2"} <= set(names) and "broken" not in names and "renamed" not in names
    messages = " ".join(str(w.message) for w in caught)
    assert "export format 'broken'" in messages and "nothere" in messages
    assert "its GraphFormat is named 'toyep'" in messages  # the entry point's name and the format's must agree


def test_unknown_formats_are_named():
    with pytest.raises(ExportError, match=r"unknown graph format 'gif' \(graph formats: .*onnx.*pt2"):
        get_format("gif")
    with pytest.raises(ExportError, match="unknown graph format 'mar'"):
        make_runner("mar", "x.mar")


def test_unknown_format_flag_is_one_line(tiny_path, tmp_path, capsys):
    assert main(["export", "--model", str(tiny_path), "--format", "gif", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--format: unknown format 'gif'" in err and "onnx, pt2, mar" in err


def test_an_export_of_a_format_no_longer_installed_is_named(tmp_path):
    manifest = {"manifest_version": 1, "format": "gone", "family": "stylegan2", "graphs": {"g": {"file": "g.gone"}}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"a .gone. export and no such format is installed \(graph formats: onnx"):
        load_exported(tmp_path)


def test_serve_refuses_an_unknown_backend_by_name(tiny_path, capsys):
    assert main(["serve", "--backend", "tflite", "--models", str(tiny_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ganserve serve: --backend: unknown backend 'tflite' (backends: eager, onnx, pt2)"


def test_register_format_in_process():
    fake = GraphFormat(name="inproc", suffix=".x", export_graph=lambda *a, **k: None, make_runner=lambda *a, **k: 7,
                       description="100% in-process")  # fmt: skip
    try:
        assert formats_mod.register_format(fake) is fake
        assert graph_formats()["inproc"] is fake and make_runner("inproc", "a.x") == 7
        assert "inproc: 100% in-process" in _help("export")  # a % in a description does not break --help
    finally:
        formats_mod._REGISTERED.pop("inproc", None)
    with pytest.raises(TypeError, match="takes a GraphFormat"):
        formats_mod.register_format("onnx")  # type: ignore[arg-type]
