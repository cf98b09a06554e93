"""Semantic directions (SeFa, PCA in W) and the ``edits`` request field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganserve
from ganserve import directions
from ganserve.requests import RequestError
from ganserve.sampling import plan, sample


def test_sefa_finds_the_direction_the_weights_amplify():
    # Two layers whose rows all lean on w's first axis: that axis is the top eigenvector of A^T A.
    torch.manual_seed(0)
    w1 = torch.randn(8, 5) * 0.1
    w1[:, 0] += 3.0
    w2 = torch.randn(4, 5) * 0.1
    w2[:, 0] -= 2.0
    vectors, values = directions.sefa([w1, w2], count=5)
    assert vectors.shape == (5, 5) and torch.all(values[:-1] >= values[1:])
    assert abs(float(vectors[0, 0])) > 0.99
    assert torch.allclose(vectors @ vectors.T, torch.eye(5), atol=1e-5)  # orthonormal


def test_pca_recovers_the_axis_of_most_variance():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5000, 4, generator=gen) * torch.tensor([0.1, 0.1, 3.0, 0.1])
    vectors, variances = directions.pca(x, count=2)
    assert abs(float(vectors[0, 2])) > 0.99 and 8.0 < float(variances[0]) < 10.0


@pytest.fixture()
def model(tiny_path, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    G = ganserve.load(tiny_path)
    G.checkpoint_path = str(tmp_path / "readonly" / "tiny.safetensors")  # a folder that does not exist
    return G


@pytest.mark.parametrize("method", ["sefa", "pca"])
def test_edits_move_w_along_the_direction_by_its_std(model, method):
    d = directions.get(model, method)
    assert d.vectors.shape == (directions.DEFAULT_COUNT, model.config.w_dim) and torch.all(d.stds > 0)
    base = plan(model, seeds=[3]).rows["ws"]
    moved = plan(model, seeds=[3], edits=[{"direction": 2, "amount": 1.5, "method": method}]).rows["ws"]
    assert torch.allclose(moved - base, (1.5 * d.stds[2] * d.vectors[2]).expand_as(base), atol=1e-5)
    coarse = plan(model, seeds=[3], edits=[{"direction": 2, "amount": 1.5, "method": method,
                                            "layers": "coarse"}]).rows["ws"]  # fmt: skip
    assert torch.equal(coarse[:, 4:], base[:, 4:]) and not torch.equal(coarse[:, :4], base[:, :4])


def test_amount_zero_is_the_unedited_image_and_edits_are_recorded(model):
    plain = sample(model, seeds=[1, 2])
    zero = sample(model, seeds=[1, 2], edits=[{"direction": 0, "amount": 0}])
    assert np.array_equal(zero.images, plain.images)
    edited = sample(model, seeds=[1, 2], edits=[{"direction": 0, "amount": 3, "layers": [0, 2]}])
    assert not np.array_equal(edited.images, plain.images)
    assert edited.params[0]["edits"] == [{"direction": 0, "amount": 3.0, "layers": "0-2", "method": "sefa"}]
    # the edit is a pure function of the request: batch size and neighbours do not matter
    alone = sample(model, seeds=[2], edits=[{"direction": 0, "amount": 3, "layers": [0, 2]}], batch_size=1)
    assert np.array_equal(alone.images[0], edited.images[1])


@pytest.mark.parametrize(
    "edit, field",
    [
        ({"direction": 999, "amount": 1}, "edits[0].direction"),
        ({"direction": 0, "amount": 99}, "edits[0].amount"),
        ({"direction": 0, "amount": 1, "layers": [0, 50]}, "edits[0].layers"),
        ({"direction": 0, "amount": 1, "method": "ica"}, "edits[0].method"),
    ],
)
def test_bad_edits_name_the_field(model, edit, field):
    with pytest.raises(RequestError) as e:
        plan(model, seeds=[1], edits=[edit])
    assert e.value.field == field


def test_directions_are_cached_on_disk_and_a_damaged_cache_is_recomputed(model, tiny_path, monkeypatch):
    first = directions.get(model, "sefa")
    path = directions.cache_path(model, "sefa")
    assert path.is_file() and "tiny.sefa-" in path.name
    again = ganserve.load(tiny_path)
    again.checkpoint_path = model.checkpoint_path
    monkeypatch.setattr(directions, "compute", lambda *a: pytest.fail("recomputed despite the cache"))
    assert torch.equal(directions.get(again, "sefa").vectors, first.vectors)
    monkeypatch.undo()
    path.write_bytes(b"garbage")
    third = ganserve.load(tiny_path)
    third.checkpoint_path = model.checkpoint_path
    assert torch.equal(directions.get(third, "sefa").vectors, first.vectors)


def test_directions_are_described(model):
    from ganserve.sampling import describe

    described = describe(model)["directions"]
    names = described.pop("names")
    assert described == {"methods": ["sefa", "pca"], "count": directions.DEFAULT_COUNT}
    assert names == {m: directions.get(model, m).names for m in directions.METHODS}  # tests/test_direction_names.py


def test_cli_edits(tiny_models_dir, tmp_path, monkeypatch, capsys):
    """``ganserve sample --edit`` through the CLI's main in this process (tests/test_cli.py runs the entry point)."""
    from ganserve.cli import main

    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(tiny_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    out = tmp_path / "e.npy"
    code = main(["sample", "--model", "tiny", "--seeds", "1,2", "--edit", "0:2:0-3", "--edit", "1:-1", "--edit-method",
                 "pca", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    G = ganserve.load(tiny_models_dir / "tiny.safetensors")
    want = sample(G, seeds=[1, 2], edits=[{"direction": 0, "amount": 2, "layers": "0-3", "method": "pca"},
                                          {"direction": 1, "amount": -1, "method": "pca"}]).images  # fmt: skip
    assert np.array_equal(np.load(out), want)
    capsys.readouterr()
    try:
        returncode = main(["sample", "--model", "tiny", "--edit", "x", "--out", str(tmp_path / "b.png")])
    except SystemExit as e:  # argparse's own errors
        returncode = e.code
    assert returncode == 2 and "--edit 'x': expected K:AMOUNT" in capsys.readouterr().err
