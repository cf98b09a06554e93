"""The page's built-in controls take their labels (and info texts) from the declaration: for every family, every
control a panel presents for one of its fields is labelled with that family's declared ``FrontEnd.label``."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from ganserve.families import loadable_families
from ganserve.front_end import FrontEnd, RequestField, request_fields
from ganserve.ui import fields
from ganserve.ui.app import build_app
from ganserve.ui.backend import LocalBackend
from ganserve.ui.panels import attention, directions, sidebar

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def components(tiny_models_dir):
    app = build_app(LocalBackend({"tiny": tiny_models_dir / "tiny.safetensors"}))
    return {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}


def test_every_control_label_is_its_fields_declared_label(components):
    declared = {**sidebar.DECLARED, **directions.DECLARED}
    checked = set()
    for fam in loadable_families():
        by_path = {f.path: f for f in request_fields(fam.request)}
        for elem_id, path in declared.items():
            if path not in by_path:
                continue
            f = by_path[path]
            assert f.hint.label, f"{fam.name}: {path} declares no label"
            assert components[elem_id].label == f.label, f"{fam.name}: #{elem_id} is not labelled {f.label!r}"
            assert f.help in (components[elem_id].info or ""), f"{fam.name}: #{elem_id} lacks the declared help"
            checked.add((fam.name, path))
        if "attention" in by_path:  # the panel of a declared field is titled with its label
            assert components["attention-panel"].label == by_path["attention"].label == "Self-attention"
            checked.add((fam.name, "attention"))
    families = {name for name, _ in checked}
    assert {"stylegan2", "biggan", "vqgan", "sagan"} <= families
    assert ("vqgan", "top_k") in checked and ("stylegan2", "edits.method") in checked


def test_label_of_reads_the_declaration_and_falls_back_to_the_name():
    assert fields.label_of("truncation_psi") == "Truncation ψ"
    assert fields.label_of("no_such_field") == "No such field"
    info = type("Info", (), {"description": None})()
    assert RequestField("glow_amount", info, FrontEnd()).label == "Glow amount"
    assert RequestField("glow_amount", info, FrontEnd(label="Glow")).label == "Glow"
    assert attention.FIELDS == ("attention",)
