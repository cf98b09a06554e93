"""A valid ``ganserve sample`` command line for any request field, read off the field's declaration.

Used by the field conformance tests (tests/test_cli_fields.py, tests/test_field_conformance.py): a field's flag (or
the option that sets it) with its declared ``FrontEnd.example`` (or a file for a file field), after the flags of the
fields it requires.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ganserve.front_end import RequestField


def example_files(tmp_path: Path, w: np.ndarray | None = None, image_size: int = 16) -> dict[str, Path]:
    """The files file fields take: a PNG (``base64``) and a latent .npy (``base64-or-text``)."""
    png, npy = tmp_path / "in.png", tmp_path / "w.npy"
    Image.fromarray(np.full((image_size, image_size, 3), 100, np.uint8)).save(png)
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 4), np.float32) if w is None else w)
    npy.write_bytes(buf.getvalue())
    return {"base64": png, "base64-or-text": npy}


def example(f: RequestField, files: dict[str, Path]) -> str:
    """The value a conformance run gives the field's flag: its declared example, or a file."""
    if f.hint.file:
        return str(files[f.hint.file])
    if f.hint.example is not None:
        return f.hint.example
    raise AssertionError(f"{f.path}: declare a FrontEnd(example=...) so the conformance test can parse it")


def is_switch(f: RequestField) -> bool:
    return f.info.annotation is bool and not f.hint.via and not f.hint.parse


def example_argv(fields: dict[str, RequestField], path: str, files: dict[str, Path]) -> list[str]:
    """Flags setting ``path`` (and, before it, the fields it requires)."""
    f = fields[path]
    flag = f.hint.via or f.flag
    argv = [flag] if is_switch(f) else [flag, example(f, files)]
    for need in f.hint.requires:
        argv = example_argv(fields, need, files) + argv
    return argv


def required_paths(fields: dict[str, RequestField], path: str) -> set[str]:
    """``path`` and every field it requires, transitively."""
    out = {path}
    for need in fields[path].hint.requires:
        out |= required_paths(fields, need)
    return out


def is_set(model: Any, path: str) -> bool:
    """Whether the validated request holds the field as given (not its default)."""
    *parents, name = path.split(".")
    for p in parents:
        model = getattr(model, p)
        model = model[0] if isinstance(model, list) else model
    attr = next(n for n, i in type(model).model_fields.items() if (i.alias or n) == name)
    return attr in model.model_fields_set
