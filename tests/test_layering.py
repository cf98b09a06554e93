"""The layers, read from the source with ast (no import runs): who may import whom.

- ganserve.kernels (kernels/) imports neither the models nor the benchmarks: the GPU check that needs both lives in
  ganserve.benchmarks.gpu_check;
- ganserve.export (export/) imports no benchmarks: the reference benches live in ganserve.benchmarks;
- the models import only models and kernels ("models never import the core");
- the core (ganserve's top-level modules, families/, models/) imports no export, serving, UI, commands, benchmarks or
  handlers package, nor TorchServe, Gradio or argparse: they plug into the core, not the other way round.

Every import counts, at module level or inside a function, and ``importlib.import_module("...")`` with a literal.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {"ganserve": "ganserve", "kernels": "ganserve.kernels", "export": "ganserve.export"}
# ganserve's top-level modules that are front ends, not core: the CLI's parser and its generated field flags
FRONT_ENDS = {"cli.py", "cli_fields.py"}


def _module_name(path: Path) -> tuple[str, str]:
    """(the module's dotted name, its package's) for a source file under ROOT."""
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:-1]]
    package = ".".join(parts)
    return (package if path.stem == "__init__" else f"{package}.{path.stem}"), package


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (``from a import b`` counts ``a`` and ``a.b``)."""
    _, package = _module_name(path)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            out.add(node.args[0].value)
    return out


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = [(p, name) for p in files for name in sorted(imported(p)) if _under(name, forbidden)]
    return [f"{p.relative_to(ROOT)} imports {name}" for p, name in found]


def _py(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


CORE = [p for p in sorted((ROOT / "ganserve").glob("*.py")) if p.name not in FRONT_ENDS] + _py("ganserve/families")
CORE += _py("ganserve/models")

# what plugs into the core: the core must not import it
OUTER = ("ganserve.export", "ganserve.serving", "ganserve.ui", "ganserve.commands", "ganserve.benchmarks",
         "ganserve.handlers", "ganserve.cli", "ganserve.cli_fields", "ts", "gradio", "argparse")  # fmt: skip

RULES = {
    "kernels: no models, no benchmarks": (_py("kernels"), ("ganserve.models", "ganserve.benchmarks")),
    "export: no benchmarks": (_py("export"), ("ganserve.benchmarks",)),
    "core: no export, serving, ui, front ends": (CORE, OUTER),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_layer_rule(rule):
    files, forbidden = RULES[rule]
    assert files, f"{rule}: no source files found"
    assert violations(files, forbidden) == []


def test_models_import_only_models_and_kernels():
    allowed = ("ganserve.models", "ganserve.kernels")
    found = [(p, n) for p in _py("ganserve/models") for n in sorted(imported(p)) if _under(n, ("ganserve",))]
    assert [f"{p.relative_to(ROOT)} imports {n}" for p, n in found if n != "ganserve" and not _under(n, allowed)] == []


def test_the_scan_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The scanner itself: absolute, from-imports of a package's submodule, relative, in-function, import_module."""
    pkg = tmp_path / "kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(
        "import ganserve.benchmarks.kernels\n"
        "from ganserve import models\n"
        "from ..benchmarks import timing\n"
        "def f():\n    import importlib\n    importlib.import_module('ganserve.models.layers')\n"
    )
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = imported(pkg / "bad.py")
    assert {"ganserve.benchmarks.kernels", "ganserve.models", "ganserve.benchmarks.timing",
            "ganserve.models.layers"} <= found  # fmt: skip
    assert len(violations([pkg / "bad.py"], ("ganserve.models", "ganserve.benchmarks"))) >= 4
