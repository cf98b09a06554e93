"""Each field carries its front-end hint (issue 23 item 1): shared fields are declared once in ganserve.fields.

One field name has one hint (the same object) in every family, every field of a built-in family declares one, a
family narrows a shared type's bounds without losing its hint, and no field holds two bounds of one kind (the trap
an assigned ``Field(le=...)`` over a type's own ``le`` sets).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from ganserve import cli_fields, families, fields
from ganserve.families import BUILTIN, get_family
from ganserve.front_end import FrontEnd, hint_of, request_fields
from ganserve.requests import Strict


def _all_fields():
    for name in families.family_names():
        for f in request_fields(get_family(name).request):
            yield name, f


def test_one_field_name_has_one_hint_object_in_every_family():
    by_path = defaultdict(dict)
    for family, f in _all_fields():
        by_path[f.path][family] = f.hint
    shared = {p: hints for p, hints in by_path.items() if len(hints) > 1}
    assert {"seeds", "class", "classes", "interpolate", "truncation_psi", "temperature"} <= set(shared)
    for path, hints in shared.items():
        first = next(iter(hints.values()))
        assert all(h is first for h in hints.values()), f"{path}: families declare different hints: {hints}"


@pytest.mark.parametrize("family", sorted(BUILTIN))
def test_every_field_of_a_builtin_family_declares_its_hint(family):
    """The hints live on the fields (no table keyed by name): a built-in field without one is a forgotten hint."""
    for f in request_fields(get_family(family).request):
        assert hint_of(f.info) is f.hint, f"{family}.{f.path}: no FrontEnd on the field"


def test_no_field_holds_two_bounds_of_one_kind():
    for family, f in _all_fields():
        kinds = [type(m).__name__ for m in f.info.metadata if not isinstance(m, FrontEnd)]
        assert len(kinds) == len(set(kinds)), f"{family}.{f.path}: two bounds of one kind {f.info.metadata}"


def test_biggan_and_stylegan_psi_ranges_differ_under_one_hint():
    style = get_family("stylegan2").request.model_json_schema()["properties"]["truncation_psi"]
    big = get_family("biggan").request.model_json_schema()["properties"]["truncation_psi"]
    assert (style["minimum"], style["maximum"]) == (-1.0, 2.0)
    assert (big["exclusiveMinimum"], big["maximum"]) == (0.0, 1.0) and "minimum" not in big
    hints = {name: hint_of(get_family(name).request.model_fields["truncation_psi"]) for name in ("stylegan2", "biggan")}
    assert hints["stylegan2"] is hints["biggan"] and hints["biggan"].flag == "--psi"


def test_narrow_replaces_a_bound_and_keeps_the_hint():
    class Narrowed(Strict):
        temperature: fields.narrow(fields.Temperature, le=2.0) = 1.0

    class Assigned(Strict):  # what narrow() is for: pydantic keeps both maxima, and the schema shows the type's
        temperature: fields.Temperature = Field(default=1.0, le=2.0)

    info = Narrowed.model_fields["temperature"]
    assert hint_of(info) is hint_of(get_family("vqgan").request.model_fields["temperature"])
    prop = Narrowed.model_json_schema()["properties"]["temperature"]
    assert (prop["minimum"], prop["maximum"]) == (0.01, 2.0)
    assert Narrowed(temperature=2.0).temperature == 2.0
    for bad in (2.5, 0.0, float("nan")):
        with pytest.raises(ValidationError):
            Narrowed(temperature=bad)
    maxima = [m for m in Assigned.model_fields["temperature"].metadata if type(m).__name__ == "Le"]
    assert len(maxima) == 2 and Assigned.model_json_schema()["properties"]["temperature"]["maximum"] == 10.0
    with pytest.raises(TypeError, match="Annotated"):
        fields.narrow(float, le=1.0)

    class FewClasses(Strict):  # the bounds not named stay (min_length), the field's description too
        classes: fields.narrow(fields.Classes, max_length=4) = None
        class_: fields.narrow(fields.ClassId, description="a class") = Field(default=None, alias="class")

    items = next(m for m in FewClasses.model_json_schema()["properties"]["classes"]["anyOf"] if m["type"] == "array")
    assert (items["minItems"], items["maxItems"]) == (1, 4)
    assert FewClasses.model_fields["class_"].description == "a class"


def test_a_family_reusing_a_shared_type_joins_its_flag(monkeypatch):
    """A new family's field of a shared type needs nothing else: the existing flag, help and group, listed for it."""
    base = get_family("progan")

    class WarmRequest(base.request):
        temperature: fields.Temperature = 1.0
        glow: Annotated[float, FrontEnd(metavar="G", help="how much it glows", group="style")] = 0.0

    monkeypatch.setitem(families._LOADED, "warmgan", dataclasses.replace(base, name="warmgan", request=WarmRequest))
    by_path = {cf.path: cf for cf in cli_fields.collect()}
    assert {"vqgan", "vit_vqgan", "warmgan"} <= set(by_path["temperature"].families)
    assert by_path["temperature"].field.hint.metavar == "T" and by_path["glow"].families == ["warmgan"]
    assert WarmRequest.model_json_schema()["properties"]["temperature"]["maximum"] == 10.0
