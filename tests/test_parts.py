"""Models made of parts: several named components (e.g. a first stage and a prior) in one checkpoint, each with its
own config in the metadata, built one by one by ``ganserve.load``; and a family registered from outside ganserve."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import ganserve
from ganserve.checkpoint import CheckpointError, read_metadata
from ganserve.families import Family, Part, Sampler, family_names, get_family, register_family
from ganserve.models.config import ModelConfig
from ganserve.requests import BaseRequest
from ganserve.sampling import Plan, sample


@dataclass
class StageConfig(ModelConfig):
    width: int = 4

    def __post_init__(self) -> None:
        self.check_ranges({"width": (1, 64)})


class Stage(nn.Module):
    def __init__(self, config: StageConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.width, config.width)


@dataclass
class PairConfig(ModelConfig):
    resolution: int = 4
    img_channels: int = 1


class Pair(nn.Module):
    """The whole: a first stage and a prior, as a VQ-GAN with its transformer would be."""

    family = "toy_pair"

    def __init__(self, first_stage: Stage, prior: Stage) -> None:
        super().__init__()
        self.config = PairConfig()
        self.first_stage, self.prior = first_stage, prior

    @classmethod
    def from_parts(cls, parts: dict[str, nn.Module]) -> Pair:
        return cls(parts["first_stage"], parts["prior"])

    def parts(self) -> dict[str, nn.Module]:
        return {"first_stage": self.first_stage, "prior": self.prior}


class PairSampler(Sampler):
    def plan(self, model, req):
        return Plan(req, {"seed": torch.tensor(req.seeds, dtype=torch.float32)}, [{"seeds": [s]} for s in req.seeds])

    def render(self, model, rows):
        w = model.first_stage.proj.weight.sum() + model.prior.proj.weight.sum()
        return torch.tanh(rows["seed"].reshape(-1, 1, 1, 1) * w).expand(-1, 1, 4, 4)


FAMILY = Family(
    name="toy_pair",
    generator=Part("tests.test_parts:PairConfig", "tests.test_parts:Pair"),
    parts={
        "first_stage": Part("tests.test_parts:StageConfig", "tests.test_parts:Stage"),
        "prior": Part("tests.test_parts:StageConfig", "tests.test_parts:Stage"),
    },
    request=BaseRequest,
    sampler=PairSampler(),
)


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_family(FAMILY)
    yield
    from ganserve import families

    families._LOADED.pop("toy_pair", None)


def make_pair() -> Pair:
    torch.manual_seed(0)
    return Pair(Stage(StageConfig(4)), Stage(StageConfig(6)))


def test_a_family_registered_from_outside_is_known():
    assert "toy_pair" in family_names() and get_family("toy_pair") is FAMILY


def test_parts_round_trip(tmp_path):
    model = make_pair()
    path = tmp_path / "pair.safetensors"
    ganserve.save_generator(path, model, dataset="none")
    meta = read_metadata(path)
    assert meta["parts"] == {"first_stage": {"config": {"width": 4}}, "prior": {"config": {"width": 6}}}
    assert "config" not in meta
    loaded = ganserve.load(path)
    assert isinstance(loaded, Pair) and loaded.prior.config.width == 6
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert sample(loaded, seeds=[1, 2]).images.shape == (2, 4, 4, 1)
    assert loaded.sample(seeds=[1]).params == [{"seeds": [1]}]


def _edit(path, edit) -> None:
    from safetensors.torch import load as st_load

    from ganserve.checkpoint import content_hash

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["ganserve"])
    edit(meta)
    meta["content_hash"] = content_hash(st_load(raw), meta)
    header["__metadata__"]["ganserve"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * ((8 - len(new) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m["parts"].pop("prior"), "have parts ['first_stage', 'prior']"),
        (lambda m: m["parts"]["prior"]["config"].update(width=5), "in part 'prior'"),
        (lambda m: m["parts"]["prior"]["config"].update(width=10**9), "invalid toy_pair config of part 'prior'"),
        (lambda m: m["parts"].update(prior=[]), "part 'prior' lacks a 'config' object"),
        (lambda m: m.update(parts={}), "non-empty object"),
        (lambda m: m.update(config={}) or m.pop("parts"), "checkpoints hold parts"),
    ],
)
def test_bad_parts_are_refused_naming_the_part(tmp_path, edit, fragment):
    path = tmp_path / "pair.safetensors"
    ganserve.save_generator(path, make_pair())
    _edit(path, edit)
    with pytest.raises(CheckpointError, match=r"pair\.safetensors") as e:
        ganserve.load(path)
    assert fragment in str(e.value)
