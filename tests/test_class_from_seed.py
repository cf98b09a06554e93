"""Class-conditional families without a class: each image's class is its seed % the number of classes, recorded in
its params, the same on every front end (Python, the TorchServe handler's service, the UI backend, the CLI), and
what ``ganserve serve``'s printed try-line sends works for every bundled model."""

from __future__ import annotations

import contextlib
import io
import json
import re
import types

import numpy as np
import pytest

import ganserve
from ganserve.loading import available_models, bundled_dir
from ganserve.requests import RequestError
from ganserve.sampling import class_names, encode_result, plan, resolve_class, sample
from tests.family_fixtures import CLASSES, make_tiny_biggan, make_tiny_sagan, save_tiny


@pytest.fixture(scope="module", params=["biggan", "sagan"])
def G(request, tmp_path_factory):
    make = make_tiny_biggan if request.param == "biggan" else make_tiny_sagan
    return ganserve.load(save_tiny(tmp_path_factory.mktemp("cls"), f"tiny-{request.param}", make()))


def test_resolve_class_takes_the_seed_only_when_no_class_is_given(G):
    n = len(CLASSES)
    assert [resolve_class(G, None, seed=s) for s in range(2 * n + 1)] == [s % n for s in range(2 * n + 1)]
    assert resolve_class(G, "square", seed=0) == CLASSES.index("square")  # a given class wins over the seed
    with pytest.raises(RequestError) as e:
        resolve_class(G, None)  # no seed to take it from: still required
    assert e.value.field == "class"


def test_omitted_class_comes_from_the_seed_and_is_recorded(G):
    n = len(CLASSES)
    seeds = list(range(7, 7 + 2 * n))
    r = sample(G, seeds=seeds)
    assert [p["class"] for p in r.params] == [s % n for s in seeds]
    assert {p["class"] for p in r.params} == set(range(n))  # a run of seeds shows every class
    for img, prm in zip(r.images, r.params):
        # the recorded params, sent back as a request, give the same pixels: the class is a class like any other
        again = sample(G, {k: v for k, v in prm.items() if k != "model"})
        assert again.params == [prm] and np.array_equal(again.images[0], img)
    # the z does not depend on the class rule: seed s with its own class equals an explicit request
    assert np.array_equal(sample(G, seeds=[5]).images, sample(G, seeds=[5], **{"class": 5 % n}).images)


def test_interpolation_without_a_class_keeps_each_start_seeds_class(G):
    n = len(CLASSES)
    r = sample(G, seeds=[1, 2], interpolate={"to_seed": 9, "steps": 3})
    assert [p["class"] for p in r.params] == [1 % n] * 3 + [2 % n] * 3
    want = sample(G, seeds=[1, 2], interpolate={"to_seed": 9, "steps": 3}, **{"class": 0})
    assert not np.array_equal(r.images[3:], want.images[3:])  # seed 2 did not borrow class 0
    to = sample(G, seeds=[4], interpolate={"to_class": 0, "steps": 3})
    assert np.array_equal(to.images[0], sample(G, seeds=[4]).images[0])
    assert np.array_equal(to.images[-1], sample(G, seeds=[4], **{"class": 0}).images[0])


def test_same_class_rule_through_the_ui_backend(G, tmp_path):
    from ganserve.ui.backend import LocalBackend

    path = save_tiny(tmp_path, G.name, G)
    pictures = LocalBackend({G.name: path}).generate(G.name, {"seeds": [3, 4, 5]})
    want = sample(G, seeds=[3, 4, 5])
    assert [p.params for p in pictures] == want.params
    assert np.array_equal(np.stack([p.array() for p in pictures]), want.images)


BUNDLED = {p.stem: p for p in sorted(bundled_dir().glob("*.safetensors")) if p.stem in available_models()}


def _try_body() -> dict:
    """The JSON body of the curl line ``ganserve serve`` prints when it is ready."""
    from ganserve.commands.serve import _print_ready

    cfg = types.SimpleNamespace(inference_url="http://x", management_url="http://x", metrics_url="http://x", auth=False)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        _print_ready(types.SimpleNamespace(config=cfg), "m")
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("try: curl")]
    assert len(lines) == 1, buf.getvalue()
    return json.loads(re.search(r"-d '([^']*)'", lines[0]).group(1))


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_the_printed_try_line_works_for_every_bundled_model(name):
    """The body as bytes through the serving core the TorchServe handler wraps: a 200 with the grid of the seeds."""
    from PIL import Image

    from ganserve.serving.service import SampleService

    body = _try_body()
    model = ganserve.load(BUNDLED[name])
    (r,) = SampleService(model).handle_batch([json.dumps(body).encode()])
    assert r.status == 200, r.body[:300]
    want = sample(model, body)
    assert len(want.images) == len(body["seeds"])
    got = np.asarray(Image.open(io.BytesIO(r.body)))
    assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(encode_result(want).body))))  # the seeds' grid
    if class_names(model):
        n = len(class_names(model))
        assert [prm["class"] for prm in want.params] == [s % n for s in body["seeds"]]


def test_ui_offers_from_the_seed_only_where_the_family_takes_it(G, tmp_path, tiny_cond_path):
    from ganserve.ui.backend import LocalBackend
    from ganserve.ui.controls import ControlSpec

    path = save_tiny(tmp_path, G.name, G)
    backend = LocalBackend({G.name: path, "tiny-cond": tiny_cond_path})
    assert ControlSpec.from_info(backend.describe(G.name)).class_from_seed
    # conditional StyleGAN2 still needs its class: no such choice there, and no class is still refused by name
    assert not ControlSpec.from_info(backend.describe("tiny-cond")).class_from_seed
    with pytest.raises(RequestError) as e:
        plan(ganserve.load(tiny_cond_path), seeds=[1])
    assert e.value.field == "class"
