"""No function over ~150 lines outside kernels/ (and ganserve/ui/, being rebuilt from the declaration: issue 23).

A function that long holds several jobs; read with ast, so nested functions count inside the one that holds them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 150
SOURCES = ["ganserve", "export", "handlers"]
EXEMPT = [ROOT / "ganserve" / "ui"]  # TODO(issue 23 item 6): build_app is split per field group there


def long_functions(files: list[Path], root: Path = ROOT, limit: int = LIMIT) -> list[str]:
    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_no_function_over_the_limit():
    files = [p for d in SOURCES for p in sorted((ROOT / d).rglob("*.py")) if not any(e in p.parents for e in EXEMPT)]
    assert len(files) > 50
    assert long_functions(files) == []


def test_the_scan_counts_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions([tmp_path / "m.py"], tmp_path) == [f"m.py:5 long ({LIMIT + 1} lines)"]
