"""The one registry of GAN families, and what a family is.

A family is one ``Family`` object, defined in ``ganserve/families/<name>.py`` beside nothing else: where its model
code lives (config, generator, discriminator, or several named parts), its request model, its sampler (request ->
rows -> pixels), and, by module path, its exporter and training step. Code outside a family module never branches on
a family's name. A family registers in one of three ways, one line each:

- inside ganserve: a line in ``BUILTIN`` below;
- from another package: an entry point in the ``ganserve.families`` group of that package's metadata
  (``[project.entry-points."ganserve.families"]`` ``mygan = "mypkg.family"``: name = family name, value = the module
  defining ``FAMILY``), found the way ``ganserve.backends`` finds backends, without ganserve importing the package
  until a model of that family is asked for;
- in-process: ``register_family(module_path_or_Family)`` (tests, notebooks).

Modules load lazily, so using one family never imports another, and nothing here imports the model code until a
model is built.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ganserve.requests import BaseRequest


# name -> module defining ``FAMILY``: the registration line of each built-in family.
BUILTIN: dict[str, str] = {
    "stylegan2": "ganserve.families.stylegan2",
    "biggan": "ganserve.families.biggan",
    "sagan": "ganserve.families.sagan",
    "progan": "ganserve.families.progan",
    "stylegan": "ganserve.families.stylegan",
    "vqgan": "ganserve.families.vqgan",
    "vit_vqgan": "ganserve.families.vit_vqgan",
}
# The families ganserve is designed for: a checkpoint of one that has not landed yet is refused with "not available in
# this version" rather than "unknown family".
DESIGNED = ("progan", "stylegan", "stylegan2", "sagan", "biggan", "vqgan", "vit_vqgan")

ENTRY_POINT_GROUP = "ganserve.families"

_LOADED: dict[str, Family] = {}
# sys.path -> the group's entry points: one scan of every installed distribution costs ~30 ms, and the CLI asks for
# the names several times while building its flags. A new sys.path (a plugin folder added) scans again.
_SCANNED: tuple[tuple[str, ...], dict[str, metadata.EntryPoint]] | None = None
_WARNED: set[str] = set()  # plugins already reported as not loading


class FamilyError(KeyError):
    """A family that cannot be had: unknown, not in this version, or a plugin's entry point that does not load.
    A KeyError, as ``get_family`` has always raised; the message is ``args[0]``."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _attr(path: str) -> Any:
    """'package.module:Name' (or 'package.module' for the module itself) -> the object."""
    module, _, name = path.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, name) if name else obj


@dataclass(frozen=True)
class Part:
    """One named component of a model: its config dataclass and module class ('module:Name' paths)."""

    config: str
    module: str

    def build(self, config: dict[str, Any] | Any) -> nn.Module:
        cfg = config if not isinstance(config, dict) else _attr(self.config)(**config)
        return _attr(self.module)(cfg)

    def make_config(self, config: dict[str, Any]) -> Any:
        return _attr(self.config)(**config)


class Sampler:
    """How a family turns a validated request into pixels; subclass one per family.

    ``plan`` checks the request against the loaded model and returns a ``Plan`` whose ``rows`` are tensors with one
    row per output image (opaque to the core: latents, classes, noise, code maps ...). The core concatenates the rows
    of any number of plans, cuts them into chunks and calls ``render`` on each chunk, so requests batch together and
    a row's pixels never depend on its neighbours. ``render`` may loop (autoregressive priors do).
    """

    def plan(self, model: nn.Module, request: BaseRequest) -> Any:  # -> ganserve.sampling.Plan
        raise NotImplementedError

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        """rows (each [n, ...]) -> images [n, C, H, W] in [-1, 1]."""
        raise NotImplementedError

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """Family-specific facts for the UI and the server's model description (merged over the core's)."""
        return {}

    def check(self, model: nn.Module, request: BaseRequest) -> None:
        """Validate a request that runs as a job (``request.job_steps()`` > 0) against the model without doing its
        long work, so a server refuses it at once (RequestError) instead of failing the job later."""

    def prepare(self, model: nn.Module) -> None:
        """Work done once when a server loads the model, so that no request waits for it (e.g. edit directions)."""


@dataclass(frozen=True)
class Family:
    """Everything ganserve needs to know about one GAN family."""

    name: str
    generator: Part  # the sampling model, or with ``parts`` the whole that ``assemble`` makes from them
    request: type[BaseRequest]
    sampler: Sampler
    discriminator: str | None = None  # 'module:Class', built from the generator's config (training only)
    parts: dict[str, Part] = field(default_factory=dict)  # named components stored side by side in one checkpoint
    exporter: str | None = None  # module that registers the family's exporter (ganserve.export.<family>)
    training: str | None = None  # 'module:Class' of the family's training step (ganserve.train.<family>)
    description: str = ""

    # ---- building ------------------------------------------------------------------------------------------------
    def make_config(self, config: dict[str, Any]) -> Any:
        return self.generator.make_config(config)

    def make_generator(self, config: Any) -> nn.Module:
        return self.generator.build(config)

    def make_discriminator(self, config: Any) -> nn.Module:
        if self.discriminator is None:
            raise ValueError(f"family {self.name} has no discriminator")
        return _attr(self.discriminator)(config)

    def assemble(self, parts: dict[str, nn.Module]) -> nn.Module:
        """The sampling model from its loaded parts (multi-part families)."""
        return _attr(self.generator.module).from_parts(parts)

    def training_class(self) -> type:
        if self.training is None:
            raise ValueError(f"family {self.name} cannot be trained by ganserve")
        return _attr(self.training)


def register_family(module_or_family: str | Family) -> Family:
    """Register a family: a module path defining ``FAMILY`` (lazily imported), or a ``Family`` object."""
    if isinstance(module_or_family, str):
        fam = importlib.import_module(module_or_family).FAMILY
    else:
        fam = module_or_family
    _LOADED[fam.name] = fam
    return fam


def _entry_points() -> dict[str, metadata.EntryPoint]:
    global _SCANNED
    key = tuple(sys.path)
    if _SCANNED is None or _SCANNED[0] != key:
        _SCANNED = (key, {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    return _SCANNED[1]


def _from_entry_point(ep: metadata.EntryPoint) -> Family:
    """The ``Family`` an entry point names (a module defining ``FAMILY``, or ``module:OBJECT``), checked."""
    dist = getattr(ep, "dist", None)
    where = f"family '{ep.name}' (entry point {ep.name} = {ep.value!r} in {ENTRY_POINT_GROUP}" + (
        f" of {dist.metadata['Name']} {dist.version})" if dist is not None else ")"
    )
    try:
        obj = ep.load()
    except Exception as e:  # a plugin's import error must say which plugin, not surface as a bare traceback
        raise FamilyError(f"{where}: cannot import it: {type(e).__name__}: {e}") from e
    fam = getattr(obj, "FAMILY", None) if isinstance(obj, types.ModuleType) else obj
    if not isinstance(fam, Family):
        raise FamilyError(f"{where}: {ep.value} must define FAMILY = Family(...), found {type(fam).__name__}")
    if fam.name != ep.name:  # checkpoints name the family: the entry point's name must be the one they say
        raise FamilyError(f"{where}: its Family is named '{fam.name}', not '{ep.name}'")
    return fam


def family_names() -> list[str]:
    """Every registered family: built-in, declared by an installed package's entry point, or added with
    ``register_family``. Lists names only; no family module is imported."""
    return sorted({*BUILTIN, *_entry_points(), *_LOADED})


def loadable_families() -> list[Family]:
    """Every registered family that loads, for front ends that list them all (the CLI's flags, ``ganserve train``'s
    commands): a plugin that does not load is left out with a RuntimeWarning naming its entry point, so one broken
    package never takes the others down."""
    out = []
    for name in family_names():
        try:
            out.append(get_family(name))
        except FamilyError as e:
            if str(e) not in _WARNED:  # once per process, however many front ends list the families
                _WARNED.add(str(e))
                warnings.warn(f"{e} (left out)", RuntimeWarning, stacklevel=2)
    return out


def get_family(name: str) -> Family:
    """The family ``name``; in-process registrations first, then ``BUILTIN``, then entry points (so an installed
    plugin cannot replace a built-in family). Raises ``FamilyError`` (a KeyError) saying why it cannot."""
    if name in _LOADED:
        return _LOADED[name]
    if name in BUILTIN:
        return register_family(BUILTIN[name])
    ep = _entry_points().get(name)
    if ep is not None:
        return register_family(_from_entry_point(ep))
    if name in DESIGNED:
        raise FamilyError(f"family '{name}' is not available in this version of ganserve (available: "
                          f"{', '.join(family_names())})")  # fmt: skip
    raise FamilyError(f"unknown family '{name}' (known: {', '.join(sorted({*family_names(), *DESIGNED}))})")


def family_of(model: Any) -> Family:
    return get_family(model.family)
