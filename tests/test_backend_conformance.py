"""Backend conformance: every request kind of every bundled family, on eager, onnx and pt2, within one uint8 level.

The request kinds are enumerated from each family's request model (a kind runs where the model takes its fields),
so a family gains these checks by registering. Each backend's model must implement the family's declared sampling
surface (``ganserve.surface``); what an export cannot serve is refused with a RequestError naming the field.
Exports are made once per session (the slow part) into a temporary folder and reused by every test here.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import ganserve
from ganserve import latents_store
from ganserve.backends import BACKENDS, load_backend
from ganserve.export import read_manifest
from ganserve.families import get_family
from ganserve.images import encode_image
from ganserve.latents import normal_from_seed
from ganserve.loading import available_models, bundled_dir, read_metadata
from ganserve.requests import RequestError, validate_request
from ganserve.sampling import class_names, plan, sample
from ganserve.surface import VQModel, missing, surface_of
from tests.conftest import warm_export_cache
from tests.family_fixtures import with_class

pytest.importorskip("onnxruntime")

BUNDLED = {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if p.stem in available_models()}
FAMILY_OF = {name: read_metadata(path)["family"] for name, path in BUNDLED.items()}
BACKENDS_UNDER_TEST = ("onnx", "pt2")


# ---- request kinds --------------------------------------------------------------------------------------------------


def _w_b64(model: nn.Module) -> str:
    """Two ws [2, num_ws, w_dim] from the eager mapping (seeds 11, 12), as a base64 .npy."""
    z = torch.stack([normal_from_seed(s, model.config.z_dim) for s in (11, 12)])
    with torch.no_grad():
        ws = model.mapping(z, None).numpy()
    return base64.b64encode(latents_store.to_npy(ws)).decode()


def _image_b64(model: nn.Module) -> str:
    """A picture the model made itself (seed 3), as a base64 PNG: what ``image`` requests send."""
    return base64.b64encode(encode_image(sample(model, with_class(model, {"seeds": [3]})).images[0], "png")).decode()


# name -> the body's fields (a kind runs for a family whose request model validates this static part) and a function
# completing it from the eager model (None: nothing to add).
KINDS: dict[str, tuple[dict[str, Any], Callable[[nn.Module], dict[str, Any]] | None]] = {
    "seeds": ({"seeds": [1, 2]}, None),
    "truncation": ({"seeds": [1, 2], "truncation_psi": 0.6}, None),
    "truncation-cutoff": ({"seeds": [1, 2], "truncation_psi": 0.5, "truncation_cutoff": 2}, None),
    "noise-random": ({"seeds": [1, 2], "noise_mode": "random"}, None),
    "noise-none": ({"seeds": [1, 2], "noise_mode": "none"}, None),
    "style-mix": ({"seeds": [1, 2], "style_mix": {"seeds": [5, 6], "layers": "coarse"}}, None),
    "interpolate-w": ({"seeds": [1], "interpolate": {"to_seed": 7, "steps": 3, "space": "w"}}, None),
    "interpolate-z": ({"seeds": [1], "interpolate": {"to_seed": 7, "steps": 3, "space": "z"}}, None),
    "interpolate-class": ({"seeds": [1], "interpolate": {"to_seed": 7, "to_class": 2, "steps": 3}}, None),
    "w": ({"w": base64.b64encode(latents_store.to_npy(np.zeros([1, 4], np.float32))).decode()},
          lambda m: {"w": _w_b64(m), "truncation_psi": 0.7, "truncation_cutoff": 2}),
    "edits-sefa": ({"seeds": [1, 2], "edits": [{"direction": 0, "amount": 3.0, "method": "sefa"}]}, None),
    "edits-pca": ({"seeds": [1, 2], "edits": [{"direction": 1, "amount": -2.0, "method": "pca", "layers": "coarse"}]},
                  None),
    "class": ({"seeds": [1, 2], "class": 2}, None),
    "classes": ({"seeds": [1], "classes": [0, 2]}, None),
    "attention": ({"seeds": [1, 2], "attention": {"query": [8, 8]}}, None),
    "vq-filters": ({"seeds": [1, 2], "temperature": 0.8, "top_k": 50, "top_p": 0.9}, None),
    "vq-image": ({"image": "x"}, lambda m: {"image": _image_b64(m)}),  # a reconstruction: one image
    "vq-image-keep": ({"seeds": [1, 2], "image": "x", "keep": {"half": "top"}}, lambda m: {"image": _image_b64(m)}),
}  # fmt: skip


CLASS_KINDS = ("class", "classes", "interpolate-class")  # an unconditional model of the family refuses these


def kinds_of(family: str) -> list[str]:
    """The kinds a family's request model takes (its own validation decides, not a list per family)."""
    out = []
    for kind, (body, _) in KINDS.items():
        try:
            validate_request(get_family(family).request, body, family)
        except RequestError:
            continue
        out.append(kind)
    return out


def request_for(model: nn.Module, kind: str) -> dict[str, Any]:
    body, complete = KINDS[kind]
    body = {**body, **(complete(model) if complete else {})}
    return with_class(model, body)


CASES = [(name, kind) for name in sorted(BUNDLED) for kind in kinds_of(FAMILY_OF[name])]


# ---- models, exported once per session ---------------------------------------------------------------------------


class Models:
    """Eager models and their exports, each made once per session (exporting is the slow part)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.eager: dict[str, nn.Module] = {}
        self.backends: dict[tuple[str, str], nn.Module] = {}
        self.results: dict[tuple[str, str], Any] = {}

    def eager_model(self, name: str) -> nn.Module:
        if name not in self.eager:
            self.eager[name] = ganserve.load(BUNDLED[name])
        return self.eager[name]

    def eager_result(self, name: str, kind: str, req: dict[str, Any]) -> Any:
        """The eager model's answer to a kind, computed once for both backends."""
        if (name, kind) not in self.results:
            self.results[name, kind] = sample(self.eager_model(name), req)
        return self.results[name, kind]

    def folder(self, name: str, fmt: str) -> Path:
        """The session's cached export (tests/conftest.py: one export cache for the whole run)."""
        from ganserve.export.cache import cached_export

        return cached_export(fmt, BUNDLED[name])

    def backend(self, name: str, fmt: str) -> nn.Module:
        """The model as the ``fmt`` backend loads it from its export (``ganserve.backends.load_backend``)."""
        if (name, fmt) not in self.backends:
            self.backends[name, fmt] = load_backend(fmt, self.folder(name, fmt))
        return self.backends[name, fmt]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Iterator[Models]:
    """Direction and latent caches in a temporary folder too, for the whole session."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("conformance")
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    mp.setenv("GANSERVE_LATENTS", str(root / "latents"))
    # every export these tests load, made up front two at a time (the VQ families' first: the longest)
    warm_export_cache(sorted(((fmt, BUNDLED[n]) for n in BUNDLED for fmt in BACKENDS_UNDER_TEST),
                             key=lambda pair: "vq" not in FAMILY_OF[pair[1].stem]))  # fmt: skip
    yield Models(root)
    mp.undo()


# ---- the surface ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", BACKENDS_UNDER_TEST)
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_backend_implements_the_declared_surface(name, fmt, models):
    eager, backend = models.eager_model(name), models.backend(name, fmt)
    protocol = surface_of(eager.family)
    assert missing(eager) == [] and isinstance(eager, protocol)
    assert missing(backend) == [] and isinstance(backend, protocol)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_graph_inputs_are_the_planned_rows(name, models):
    """A family that renders in one graph call exports that graph with its plan's rows as inputs, in row order."""
    eager = models.eager_model(name)
    if surface_of(eager.family) is VQModel:
        pytest.skip("the VQ families sample in a host loop over the prior step graph")
    rows = list(plan(eager, request_for(eager, "seeds")).rows)
    graphs = read_manifest(models.folder(name, "onnx"))["graphs"]
    assert rows in [g["inputs"] for g in graphs.values()], (rows, graphs)


# ---- every request kind, every backend ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", BACKENDS_UNDER_TEST)
@pytest.mark.parametrize(("name", "kind"), CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_request_kind_gives_eager_pixels(name, kind, fmt, models):
    eager, backend = models.eager_model(name), models.backend(name, fmt)
    req = request_for(eager, kind)
    if kind in CLASS_KINDS and not class_names(eager):  # refused alike by every backend, naming the field
        with pytest.raises(RequestError) as refused:
            sample(eager, req)
        with pytest.raises(RequestError) as e:
            sample(backend, req)
        assert e.value.field == refused.value.field and "class" in e.value.field
        return
    want, got = models.eager_result(name, kind, req), sample(backend, req)
    assert got.images.shape == want.images.shape and len(want.images) >= 1
    diff = np.abs(got.images.astype(int) - want.images.astype(int)).max()
    assert diff <= 1, f"{name} {kind} on {fmt}: max difference {diff} uint8 levels"
    assert got.params == want.params


def test_every_family_has_its_kinds():
    """The enumeration is not vacuous: each family runs the kinds its request model is known to take."""
    expect = {"stylegan2": {"w", "edits-sefa", "edits-pca", "style-mix", "noise-none", "interpolate-w"},
              "progan": {"seeds", "interpolate-z"}, "sagan": {"attention", "classes", "interpolate-class"},
              "biggan": {"truncation", "classes"}, "vqgan": {"vq-filters", "vq-image-keep"}}  # fmt: skip
    for family, kinds in expect.items():
        assert kinds <= set(kinds_of(family)), (family, set(kinds_of(family)))
    assert "w" not in kinds_of("progan") and "vq-filters" not in kinds_of("stylegan2")


# ---- what a backend cannot serve ---------------------------------------------------------------------------------


def test_export_without_directions_refuses_edits_naming_the_field(models, tmp_path):
    """An export made before directions shipped (none in its constants) answers an edit with a RequestError."""
    name = next(n for n in sorted(BUNDLED) if FAMILY_OF[n] == "stylegan2")
    old = tmp_path / "old-export"
    shutil.copytree(models.folder(name, "onnx"), old)
    consts = load_file(str(old / "constants.safetensors"))
    save_file({k: v for k, v in consts.items() if not k.startswith("directions.")}, str(old / "constants.safetensors"))
    backend = load_backend("onnx", old)
    assert backend.shipped_directions == {}
    eager = models.eager_model(name)
    req = request_for(eager, "seeds")
    assert np.array_equal(sample(backend, req).images, sample(models.backend(name, "onnx"), req).images)
    with pytest.raises(RequestError) as e:
        sample(backend, request_for(eager, "edits-sefa"))
    assert e.value.field == "edits[0].method" and "re-export" in str(e.value)


def test_load_backend_refuses_a_model_missing_part_of_the_surface(models, monkeypatch):
    """A backend whose mapping has no ``truncate`` is refused at load, naming the member, not at a w request."""
    eager = models.eager_model(next(n for n in sorted(BUNDLED) if FAMILY_OF[n] == "stylegan2"))

    class NoTruncate(nn.Module):
        def __init__(self, mapping: nn.Module) -> None:
            super().__init__()
            self.inner, self.w_avg = mapping, mapping.w_avg

        def forward(self, *args: Any) -> torch.Tensor:
            return self.inner(*args)

    class Broken(nn.Module):
        family, config, name, checkpoint_info, num_ws = "stylegan2", eager.config, "broken", {}, eager.num_ws

        def __init__(self) -> None:
            super().__init__()
            self.mapping, self.synthesis = NoTruncate(eager.mapping), eager.synthesis

    monkeypatch.setitem(BACKENDS, "broken", lambda checkpoint, device="cpu", **_: Broken())
    assert missing(Broken()) == ["mapping.truncate"]
    with pytest.raises(TypeError, match=r"broken backend's stylegan2 model lacks mapping\.truncate"):
        load_backend("broken", "unused")


PROJECTING = [n for n in sorted(BUNDLED) if "project" in get_family(FAMILY_OF[n]).request.model_fields]


@pytest.mark.parametrize("fmt", BACKENDS_UNDER_TEST)
@pytest.mark.parametrize("name", PROJECTING)
def test_projection_is_refused_by_graph_backends_naming_the_field(name, fmt, models):
    """Projection differentiates through the generator: eager serves it; exported graphs (forward only) refuse it."""
    eager = models.eager_model(name)
    req = {"project": _image_b64(eager), "project_steps": 2}
    assert len(sample(eager, req).images) == 1
    with pytest.raises(RequestError) as e:
        sample(models.backend(name, fmt), req)
    assert e.value.field == "project" and "eager backend" in e.value.message
