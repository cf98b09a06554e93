"""Which GAN families ganserve knows, and how to build a generator from a checkpoint's config.

Each family names its config dataclass and generator class; modules are imported lazily so loading one family never
imports another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from torch import nn

# Every family the request schema and checkpoint format are designed for. Those without an entry in FAMILIES are
# planned: their checkpoints are refused with a clear message until their module lands.
ALL_FAMILIES = ("progan", "stylegan", "stylegan2", "sagan", "biggan", "vqgan", "vit_vqgan")


@dataclass(frozen=True)
class Family:
    name: str
    module: str
    config: str
    generator: str
    discriminator: str | None = None

    def _attr(self, name: str) -> Any:
        return getattr(importlib.import_module(self.module), name)

    def make_config(self, config: dict[str, Any]) -> Any:
        return self._attr(self.config)(**config)

    def make_generator(self, config: Any) -> nn.Module:
        return self._attr(self.generator)(config)

    def make_discriminator(self, config: Any) -> nn.Module:
        if self.discriminator is None:
            raise ValueError(f"family {self.name} has no discriminator")
        return self._attr(self.discriminator)(config)


FAMILIES: dict[str, Family] = {
    "stylegan2": Family(
        "stylegan2", "ganserve.models.stylegan2", "StyleGAN2Config", "StyleGAN2Generator", "StyleGAN2Discriminator"
    ),
}


def get_family(name: str) -> Family:
    if name in FAMILIES:
        return FAMILIES[name]
    if name in ALL_FAMILIES:
        raise KeyError(f"family '{name}' is not available in this version of ganserve (available: {sorted(FAMILIES)})")
    raise KeyError(f"unknown family '{name}' (known: {', '.join(ALL_FAMILIES)})")
