"""A family added from outside the package, through the steps README's "Adding a family" lists.

A tiny but real family package (an MLP -> conv generator at 8x8, z from the seed, its own request model with a
``brightness`` field carrying a CLI hint) is written into a temporary folder with a ``*.dist-info`` whose
entry_points.txt declares it in the ``ganserve.families`` group, exactly what ``pip install`` of a package with
``[project.entry-points."ganserve.families"]`` leaves in site-packages. ganserve never imports it by name: the
checkpoint, ``ganserve.load``, the serving core and the CLI (whose flags come from the registered families) find it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ganserve
from ganserve import families
from ganserve.sampling import encode_result
from ganserve.serving.service import SampleService
from tests.conftest import ganserve_cmd

PKG = "ganplugin_toyglow"  # a name nothing else on sys.path uses
FAMILY_NAME = "toyglow"

MODEL_PY = '''
"""The toy model: config dataclass + generator (models never import the sampling core)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.models.config import ModelConfig


@dataclass
class ToyConfig(ModelConfig):
    resolution: int = 8
    img_channels: int = 3
    z_dim: int = 16
    channels: int = 8

    def __post_init__(self) -> None:
        self.check_ranges({"resolution": (8, 8), "img_channels": (1, 4), "z_dim": (1, 512), "channels": (1, 64)})


class ToyGenerator(nn.Module):
    family = "toyglow"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.mlp = nn.Sequential(nn.Linear(config.z_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, c * 16))
        self.conv = nn.Conv2d(c, config.img_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.mlp(z).view(-1, self.config.channels, 4, 4)
        return torch.tanh(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))
'''

FAMILY_PY = '''
"""The toy family: request model, sampler and the Family object."""
from typing import Annotated

import torch

from ganserve.families import Family, Part, Sampler
from ganserve.front_end import FrontEnd
from ganserve.latents import normal_from_seed
from ganserve.requests import BaseRequest, finite_float
from ganserve.sampling import Plan, model_device, model_name
from ganserve.surface import LatentModel


class ToyRequest(BaseRequest):
    brightness: Annotated[
        float, FrontEnd(metavar="B", help="added to every pixel, in [-1, 1]", widget="slider", example="0.25")
    ] = finite_float(-1.0, 1.0, 0.0)


class ToySampler(Sampler):
    surface = LatentModel

    def plan(self, model, req):
        z = torch.stack([normal_from_seed(s, model.config.z_dim) for s in req.seeds])
        rows = {"z": z, "brightness": torch.full([len(req.seeds)], float(req.brightness))}
        params = [{"model": model_name(model), "seeds": [s], "brightness": req.brightness} for s in req.seeds]
        return Plan(req, rows, params)

    def render(self, model, rows):
        device = model_device(model)
        return (model(rows["z"].to(device)) + rows["brightness"].to(device).view(-1, 1, 1, 1)).clamp(-1, 1)

    def describe(self, model):
        return {"latent": "z", "z_dim": model.config.z_dim}


FAMILY = Family(
    name="toyglow",
    generator=Part("ganplugin_toyglow.model:ToyConfig", "ganplugin_toyglow.model:ToyGenerator"),
    request=ToyRequest,
    sampler=ToySampler(),
    description="a toy family from outside ganserve",
)
'''


def _write_dist(root: Path, name: str, entry_points: str, files: dict[str, str]) -> None:
    """A distribution as pip leaves it in site-packages: its modules and a dist-info with METADATA + entry points."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@contextlib.contextmanager
def on_path(root: Path, *registered: str) -> Iterator[None]:
    """``root`` on sys.path for the block; afterwards the path, the imported modules, the registrations and
    importlib's caches are as they were."""
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".") or m.startswith("ganplugin_")]:
            del sys.modules[mod]
        for name in registered:
            families._LOADED.pop(name, None)
        importlib.invalidate_caches()


@pytest.fixture()
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "site"
    _write_dist(
        root,
        PKG,
        f"[ganserve.families]\n{FAMILY_NAME} = {PKG}.family\n",
        {f"{PKG}/__init__.py": "", f"{PKG}/model.py": MODEL_PY, f"{PKG}/family.py": FAMILY_PY},
    )
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with on_path(root, FAMILY_NAME):
        yield root
    assert FAMILY_NAME not in families.family_names()  # gone with its folder


def _checkpoint(tmp_path: Path) -> Path:
    from ganplugin_toyglow.model import ToyConfig, ToyGenerator

    torch.manual_seed(0)
    path = tmp_path / "toy.safetensors"
    ganserve.save_generator(path, ToyGenerator(ToyConfig()), dataset="none")
    return path


def test_listed_from_its_entry_point_and_imported_only_when_asked_for(plugin):
    assert FAMILY_NAME in families.family_names()
    assert f"{PKG}.family" not in sys.modules  # listing names imports nothing
    fam = families.get_family(FAMILY_NAME)
    assert fam is sys.modules[f"{PKG}.family"].FAMILY
    assert families.get_family(FAMILY_NAME) is fam


def test_python_serving_core_and_cli_give_the_same_pixels(plugin, tmp_path):
    path = _checkpoint(tmp_path)
    model = ganserve.load(path)
    assert model.family == FAMILY_NAME and type(model).__module__ == f"{PKG}.model"

    result = model.sample(seeds="0-3", brightness=0.5)
    images = result.images
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    assert [p["brightness"] for p in result.params] == [0.5] * 4
    plain = model.sample(seeds="0-3").images
    assert images.astype(int).mean() > plain.astype(int).mean() + 20  # the field reaches the pixels
    assert len({img.tobytes() for img in images}) == 4  # seeds differ
    assert np.array_equal(model.sample(seeds="0-3", brightness=0.5, batch_size=1).images, images)

    service = SampleService(model)
    ok, unknown, out_of_range = service.handle_batch(
        [
            {"seeds": [0, 1, 2, 3], "brightness": 0.5, "format": "npy"},
            {"seeds": [0], "glow": 1.0},
            {"seeds": [0], "brightness": 3.0},
        ]
    )
    assert ok.status == 200
    assert np.array_equal(np.load(io.BytesIO(ok.body)), images)
    assert unknown.status == 400 and b'"field": "glow"' in unknown.body and b"toyglow" in unknown.body
    assert out_of_range.status == 400 and b'"field": "brightness"' in out_of_range.body

    run_dir = tmp_path / "run"  # not the plugin's folder: PYTHONPATH is what finds it
    run_dir.mkdir()
    out = run_dir / "x.png"
    env = {**os.environ, "GANSERVE_CHECKPOINTS": str(tmp_path / "none")}
    cmd = ganserve_cmd("sample", "--model", str(path), "--seeds", "0-3", "--brightness", "0.5", "--out", str(out))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=run_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    cli_pixels = np.asarray(Image.open(out).convert("RGB"))
    grid = encode_result(model.sample(seeds="0-3", brightness=0.5, format="png", grid=True)).body
    assert np.array_equal(cli_pixels, np.asarray(Image.open(io.BytesIO(grid)).convert("RGB")))
    assert np.array_equal(cli_pixels[:8, :8], images[0]) and np.array_equal(cli_pixels[8:, 8:], images[3])

    bad = subprocess.run([*cmd[:-2], "--out", str(run_dir / "y.png"), "--brightness", "3"], capture_output=True,
                         text=True, timeout=300, cwd=run_dir, env=env)  # fmt: skip
    assert bad.returncode == 2 and "--brightness" in bad.stderr and "Traceback" not in bad.stderr


def test_its_flag_is_in_sample_help(plugin):
    from ganserve.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["sample"].format_help()
    assert "--brightness B" in help_text and "added to every pixel" in help_text and "[toyglow]" in help_text


@pytest.mark.parametrize(
    "entry, module, fragment",
    [
        ("brokengan = ganplugin_broken.family", "import not_a_module_anywhere\n", "cannot import it: ModuleNotFound"),
        ("brokengan = ganplugin_broken.family", "FAMILY = 3\n", "must define FAMILY = Family(...), found int"),
        ("brokengan = ganplugin_broken.family", f"from {PKG}.family import FAMILY\n", "is named 'toyglow'"),
    ],
)
def test_a_broken_plugin_is_named_and_leaves_the_others_working(plugin, tmp_path, entry, module, fragment):
    root = tmp_path / "broken"
    _write_dist(root, "ganplugin_broken", f"[ganserve.families]\n{entry}\n",
                {"ganplugin_broken/__init__.py": "", "ganplugin_broken/family.py": module})  # fmt: skip
    from ganserve import cli_fields

    with on_path(root, "brokengan"):
        assert "brokengan" in families.family_names()
        with pytest.raises(families.FamilyError, match="brokengan") as err:
            families.get_family("brokengan")
        assert fragment in str(err.value) and "ganplugin_broken 0.1" in str(err.value)
        with pytest.warns(RuntimeWarning, match="brokengan"):
            paths = {cf.path for cf in cli_fields.collect()}
        assert {"brightness", "truncation_psi"} <= paths  # the good plugin's and the built-ins' flags stay
        with pytest.raises(families.FamilyError, match="brokengan"):  # asked for by name: its own error
            cli_fields.collect(["brokengan"])
    assert "brokengan" not in families.family_names()


def test_the_cli_works_beside_a_broken_plugin(plugin, tmp_path, monkeypatch):
    """A package whose family does not import costs a warning naming it, not the CLI: the toy family still samples."""
    root = tmp_path / "broken"
    files = {"ganplugin_broken/__init__.py": "", "ganplugin_broken/family.py": "import not_a_module_anywhere\n"}
    _write_dist(root, "ganplugin_broken", "[ganserve.families]\nbrokengan = ganplugin_broken.family\n", files)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ["PYTHONPATH"]]))
    path = _checkpoint(tmp_path)
    out = tmp_path / "x.npy"
    cmd = ganserve_cmd("sample", "--model", str(path), "--seeds", "2", "--brightness", "-0.25", "--out", str(out))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "brokengan" in proc.stderr and "ganplugin_broken 0.1" in proc.stderr and "Traceback" not in proc.stderr
    model = ganserve.load(path)
    assert np.array_equal(np.load(out), model.sample(seeds=[2], brightness=-0.25).images)


def test_a_plugin_cannot_replace_a_built_in_family(tmp_path):
    root = tmp_path / "shadow"
    files = {"ganplugin_shadow/__init__.py": "", "ganplugin_shadow/family.py": "raise RuntimeError('imported')\n"}
    _write_dist(root, "ganplugin_shadow", "[ganserve.families]\nprogan = ganplugin_shadow.family\n", files)
    with on_path(root):
        assert families.get_family("progan").request.__module__ == "ganserve.families.progan"
        assert "ganplugin_shadow.family" not in sys.modules
