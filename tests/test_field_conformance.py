"""Every field of every family, from every front end (issue 23 item 3), enumerated from the request models.

tests/test_conformance.py checks each bundled model's plain request (seeds, class) through every front end; this
file checks each *field*. For every registered family, a tiny random model of it, and every field its request model
declares (``ganserve.front_end.request_fields``, nested ones included):

- CLI: the field's flag with its declared example (``FrontEnd.example``) parses into that field (the request
  ``ganserve sample`` builds sets it);
- Python: ``model.sample(**keywords)`` answers that request (``class_`` for ``class``);
- HTTP JSON: the serving core (``SampleService``, in-process, no TorchServe) answers the same JSON body with the same
  bytes as ``encode_result`` of the Python answer, or takes it as a job (202, projection);
- UI: the model's ``ControlSpec`` (what the UI builds its panels from) offers the field, or the field has a
  documented route (``UI_ROUTES``); any other field must get the UI's generic control from its hint
  (``ganserve.ui.fields.from_schema``: a top-level field with a scalar widget).

A new field of an existing family needs nothing here; a new family needs a tiny model in ``TINY``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import ganserve
from ganserve.cli import build_parser
from ganserve.commands import sample as sample_cmd
from ganserve.families import family_names, get_family
from ganserve.front_end import RequestField, request_fields
from ganserve.requests import validate_request
from ganserve.sampling import encode_result
from ganserve.serving.service import SampleService
from ganserve.ui.backend import LocalBackend
from ganserve.ui.controls import ControlSpec
from tests.conftest import CLASSES, make_tiny_generator
from tests.family_fixtures import make_tiny_biggan, make_tiny_sagan, with_class
from tests.field_examples import example_argv, example_files, is_set, required_paths
from tests.vq_fixtures import make_tiny

SMALL_SEEDS = ["--seeds", "1"]  # instead of the CLI's 4x4 grid, where the request takes seeds

# How the UI reaches each field: a test on the model's ControlSpec, or where the UI takes care of it itself.
UI_OWN = "the UI sets it itself: it asks for format json and lays out and encodes its galleries as PNGs (docs/ui.md)"
UI_ROUTES: dict[str, Callable[[ControlSpec], bool] | str] = {
    "seeds": lambda s: s.has("seeds"),  # the Seed, Seed grid and Seed browser tabs
    "format": UI_OWN,
    "grid": UI_OWN,
    "grid_cols": UI_OWN,
    "class": lambda s: s.class_picker,
    "classes": lambda s: s.class_grid,
    "interpolate": lambda s: s.has("interpolate") and bool(s.interpolate_spaces),
    "interpolate.to_class": lambda s: s.class_interpolation,
    "truncation_psi": lambda s: "truncation_psi" in s.ranges,
    "truncation_cutoff": lambda s: s.has("truncation_cutoff") and s.num_ws > 0,
    "noise_mode": lambda s: len(s.choices.get("noise_mode", ())) == 3,
    "style_mix": lambda s: s.has("style_mix") and len(s.mix_presets) > 1,
    "style_mix.layers": lambda s: "custom" in s.mix_presets,
    "edits": lambda s: s.edits,
    "edits.method": lambda s: set(s.direction_methods) == {"sefa", "pca"},
    "w": lambda s: s.latent_source,
    "project": lambda s: s.projection,
    "project_steps": lambda s: "project_steps" in s.ranges,
    "temperature": lambda s: s.vq_sampling and "temperature" in s.ranges,
    "top_k": lambda s: s.vq_sampling and s.has("top_k"),
    "top_p": lambda s: s.vq_sampling and "top_p" in s.ranges,
    "image": lambda s: s.region_resampling,
    "keep": lambda s: s.region_resampling,
    "attention": lambda s: s.has("attention"),  # the attention panel (ganserve/ui/panels/attention.py)
}


def _progan() -> Any:
    from ganserve.models.progan import ProGANConfig, ProGANGenerator

    cfg = ProGANConfig(resolution=16, img_channels=1, z_dim=16, channel_base=128, channel_max=16, c_dim=3,
                       class_names=CLASSES)  # fmt: skip
    return ProGANGenerator(cfg).eval().requires_grad_(False)


# family -> a tiny class-conditional model of it (class-conditional so that every class field applies)
TINY: dict[str, Callable[[], Any]] = {
    "stylegan2": lambda: make_tiny_generator(1, c_dim=3, class_names=CLASSES),
    "stylegan": lambda: make_tiny_generator(1, family="stylegan", c_dim=3, class_names=CLASSES),
    "progan": _progan,
    "biggan": make_tiny_biggan,
    "sagan": make_tiny_sagan,
    "vqgan": lambda: make_tiny("vqgan"),
    "vit_vqgan": lambda: make_tiny("vit_vqgan"),
}


class TinyModels:
    """Each family's tiny checkpoint, loaded model and UI control spec, made on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models: dict[str, Any] = {}
        self.specs: dict[str, ControlSpec] = {}

    def path(self, family: str) -> Path:
        return self.root / f"tiny-{family}.safetensors"

    def model(self, family: str) -> Any:
        if family not in self.models:
            ganserve.save_generator(self.path(family), TINY[family](), dataset="random", training={"step": 0})
            self.models[family] = ganserve.load(self.path(family))
        return self.models[family]

    def spec(self, family: str) -> ControlSpec:
        """What the UI builds its controls from, through the UI's own backend."""
        if family not in self.specs:
            self.model(family)
            self.specs[family] = ControlSpec.from_info(LocalBackend({"m": self.path(family)}).describe("m"))
        return self.specs[family]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> TinyModels:
    """Directions, latents and jobs in a temporary folder for the module; one thread (tiny models gain nothing from
    more, and on a busy machine a second thread costs ~30x: 3.4 s against 0.1 s for a tiny VQ-GAN sample)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("field-conformance")
    mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
    mp.setenv("GANSERVE_LATENTS", str(root / "latents"))
    mp.setenv("GANSERVE_JOBS", str(root / "jobs"))
    yield TinyModels(root)
    mp.undo()
    torch.set_num_threads(threads)


def _sample_parser():
    return build_parser()._subparsers._group_actions[0].choices["sample"]


def _cli_request(model: Any, fields: dict[str, RequestField], path: str, tmp_path: Path) -> dict[str, Any]:
    """The request ``ganserve sample`` builds from the field's example flags (checked to set the field)."""
    w = np.zeros([model.num_ws, model.config.w_dim], np.float32) if "w" in fields else None
    files = example_files(tmp_path, w=w, image_size=model.config.resolution)
    argv = example_argv(fields, path, files)
    needs = required_paths(fields, path)
    seeds = fields["seeds"].hint
    if path != "seeds" and not needs & set(seeds.excludes):
        argv = SMALL_SEEDS + argv
    out = [] if fields[path].hint.via else ["--out", str(tmp_path / "x.npy")]
    req = sample_cmd.build_request(_sample_parser().parse_args(["--model", "x", *out, *argv]))
    family = model.family
    assert is_set(validate_request(get_family(family).request, req, family), path), (path, argv, req)
    return req


CASES = [(fam, f.path) for fam in family_names() for f in request_fields(get_family(fam).request)]


def test_every_registered_family_has_a_tiny_model():
    assert set(family_names()) <= set(TINY), f"add a tiny model for {set(family_names()) - set(TINY)}"
    assert len(CASES) >= 60  # the enumeration is not vacuous: every family's fields, nested ones included


@pytest.mark.parametrize(("family", "path"), CASES, ids=[f"{f}-{p}" for f, p in CASES])
def test_field_reaches_every_front_end(family, path, tiny_models, tmp_path):
    model = tiny_models.model(family)
    fields = {f.path: f for f in request_fields(get_family(family).request)}

    # CLI: the flag parses into the field.
    body = with_class(model, _cli_request(model, fields, path, tmp_path))
    if "project" in body:
        body.setdefault("project_steps", 2)  # a short projection for the Python call

    # HTTP JSON: the serving core takes the body as it comes over the wire.
    service = SampleService(model)
    (resp,) = service.handle_batch([json.dumps(body).encode()])
    if validate_request(get_family(family).request, body, family).job_steps():
        assert resp.status == 202, resp.body  # long work: a job (ganserve.jobs), polled by id
        job = json.loads(resp.body)["job"]
        assert service.handle_batch([{"job": job, "cancel": True}])[0].status in (200, 202)
        service.job_runner().stop()
    else:
        assert resp.status == 200, resp.body

    # Python: the same request as keywords; the same bytes as the server's.
    keywords = {("class_" if k == "class" else k): v for k, v in body.items()}
    result = model.sample(**keywords)
    assert len(result.images) >= 1
    if resp.status == 200:
        assert resp.body == encode_result(result).body

    # UI: a control for it, or its documented route.
    top = path.split(".")[0]
    route = UI_ROUTES.get(path)
    if route is None:  # a field no panel presents: the UI's generic control, made from its hint and schema
        generic = getattr(pytest.importorskip("ganserve.ui.fields"), "from_schema", None)
        schema = get_family(family).request.model_json_schema(by_alias=True)
        assert generic is not None and generic(fields[path], schema) is not None, (
            f"{family}.{path}: the UI has no control for it (give it a scalar widget, or a route in UI_ROUTES)"
        )
    elif callable(route):
        spec = tiny_models.spec(family)
        assert spec.has(top) and route(spec), f"{family}.{path}: the UI offers no control for it"


def test_the_cli_examples_are_not_the_defaults():
    """Each example differs from its field's default, so a field that is set holds the example's value."""
    for family in family_names():
        for f in request_fields(get_family(family).request):
            if f.hint.example is not None and not f.hint.via:
                assert f.hint.example != str(f.info.default), (family, f.path)


# ---- every field is in a request kind that runs on every backend -------------------------------------------------
# Fields no backend renders differently: the encoding (applied to the rendered uint8 images, one code for every
# backend), and projection (eager only; graph backends refuse it by name: test_backend_conformance.py).
BACKEND_FREE = {"format", "grid", "grid_cols", "project", "project_steps"}


def _sets(body: Any, path: str) -> bool:
    """Whether a request body gives ``path`` ("style_mix.layers": in the object, or in every item of a list)."""
    head, _, rest = path.partition(".")
    if not isinstance(body, dict) or head not in body:
        return False
    value = body[head]
    if not rest:
        return True
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(_sets(item, rest) for item in items)


@pytest.mark.parametrize("family", family_names())
def test_every_field_is_in_a_backend_request_kind(family):
    """tests/test_backend_conformance.py runs its request kinds on eager, onnx and pt2 (within one uint8 level); the
    kinds a family takes must between them give every field of its request model, so no field escapes that check."""
    backend = pytest.importorskip("tests.test_backend_conformance")
    bodies = [backend.KINDS[k][0] for k in backend.kinds_of(family)]
    for f in request_fields(get_family(family).request):
        if f.path not in BACKEND_FREE:
            assert any(_sets(b, f.path) for b in bodies), f"{family}.{f.path}: no request kind gives it (add one)"
