"""What a family's training step is: its options, its optimisers and losses, its extra state, its EMA finishing.

The loop (``ganserve.train.loop``) owns what every family shares: the data, the per-step seeding, the generator EMA,
resumable state, snapshots and exports. A family's ``TrainingStep`` subclass (named by ``Family.training``) owns the
rest: it builds its optimisers over G and D, runs one optimisation step (any number of D steps per G step, lazy
regularisers ...), lists the tensors it needs to resume bit-exactly (optimiser moments, running means such as
StyleGAN2's pl_mean), and may finish the EMA generator before it is sampled or exported (BigGAN's standing
statistics). Its options are a dataclass (``Options``) whose fields become ``ganserve train FAMILY --flag`` options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn


class Batch(NamedTuple):
    real: torch.Tensor  # float [N, C, R, R] in [-1, 1]
    c_real: torch.Tensor | None  # int64 [N] labels of the real images (conditional runs)
    c_fake: torch.Tensor | None  # int64 [N] classes to generate, drawn from the label distribution


def option(default: Any, help: str = "", flag: str | None = None) -> Any:
    """A family option: a dataclass field that ``ganserve train FAMILY`` offers as ``--flag`` (default: the field
    name with dashes). Tuples are given on the command line as comma-separated numbers."""
    kw: dict[str, Any] = {"metadata": {"help": help, "flag": flag}}
    if isinstance(default, (list, dict)):
        kw["default_factory"] = lambda: type(default)(default)
    else:
        kw["default"] = default
    return field(**kw)


@dataclass
class StepOptions:
    """Base of a family's options dataclass. ``check`` sees the run's common settings (batch size ...)."""

    def check(self, batch_size: int, resolution: int, conditional: bool) -> None:
        pass


def option_flags(options_cls: type[StepOptions]) -> list[tuple[str, dataclasses.Field]]:
    """(--flag, field) for every option of a family, in declaration order."""
    out = []
    for f in dataclasses.fields(options_cls):
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        out.append((flag, f))
    return out


def make_options(options_cls: type[StepOptions], values: dict[str, Any]) -> StepOptions:
    """The options dataclass from a dict; unknown names are refused with the valid ones listed."""
    names = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; this family takes {sorted(names)}")
    opts = options_cls(**values)
    for f in dataclasses.fields(opts):  # JSON gives lists; keep tuples tuples so asdict round-trips equal
        if isinstance(f.default, tuple) and isinstance(getattr(opts, f.name), list):
            setattr(opts, f.name, tuple(getattr(opts, f.name)))
    return opts


# ---------------------------------------------------------------------------------------------------------------------
# Optimiser state as flat tensors (safetensors holds tensors only)


def optim_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{idx}.{k}"] = torch.as_tensor(v)
    return out


def load_optim(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            idx, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[key] = t
    sd["state"] = state
    opt.load_state_dict(sd)


class TrainingStep:
    """Base class of a family's training step; subclass and name it in the family's ``training``."""

    Options: ClassVar[type[StepOptions]] = StepOptions
    # Optimisers, by the prefix their state is saved under ("opt_G" -> tensors "opt_G.<param>.<key>").
    optimizer_names: ClassVar[tuple[str, ...]] = ("opt_G", "opt_D")

    def __init__(self, G: nn.Module, D: nn.Module, options: StepOptions, *, batch_size: int, resolution: int) -> None:
        self.G, self.D, self.options = G, D, options
        self.batch_size, self.resolution = batch_size, resolution

    # ---- what the loop calls -------------------------------------------------------------------------------------
    def train(self, step: int, batches: Callable[[], Batch]) -> dict[str, float]:
        """One optimisation step. ``batches()`` draws a fresh batch from the step's seeded generator (call it once
        per D step); the global torch RNG is seeded per step by the loop. Returns losses to log."""
        raise NotImplementedError

    def default_ema_kimg(self, batch_size: int) -> float:
        """Half-life of the generator EMA in thousands of images when the run does not set one (StyleGAN2-ADA's)."""
        return batch_size * 10 / 32

    @torch.no_grad()
    def finalize(self, G_ema: nn.Module) -> None:
        """Make the EMA generator ready to sample or export (called before every grid and export)."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors beyond the optimisers that resuming needs (running means ...)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    # ---- state ---------------------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.optimizer_names:
            out.update(optim_tensors(name, getattr(self, name)))
        return {**out, **self.extra_state()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name in self.optimizer_names:
            load_optim(name, getattr(self, name), tensors)
        self.load_extra_state(tensors)


def sample_z(n: int, z_dim: int) -> torch.Tensor:
    """Training latents from the global RNG (seeded per step by the loop): the global batch's draw, this rank's
    share (``ganserve.train.distributed``; one process: exactly ``torch.randn(n, z_dim)``)."""
    from ganserve.train.distributed import global_randn

    return global_randn(n, z_dim)


__all__ = [
    "Batch",
    "StepOptions",
    "TrainingStep",
    "load_optim",
    "make_options",
    "optim_tensors",
    "option",
    "option_flags",
    "sample_z",
]  # fmt: skip
