"""StyleGAN (v1) as a ganserve family: StyleGAN2's request fields and sampler, unchanged.

Truncation (lerp from w_avg on the first ``truncation_cutoff`` ws), style mixing (inclusive layer ranges and the named
groups), noise modes and interpolation in W or Z mean exactly what they mean for StyleGAN2, because they are the same
code: the v1 generator offers the same surface (``mapping(z, c, psi, cutoff)``, ``synthesis(ws, noise_mode, noise)``,
``num_ws``, per-layer ``noise_const`` and ``noise_shapes()``, style affines), only its layers differ (AdaIN instead
of modulated convolutions, progressive toRGBs instead of skips).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ganserve.families import Family, Part
from ganserve.families.progan import grown_to
from ganserve.families.stylegan2 import StyleRequest, StyleSampler


class StyleGANRequest(StyleRequest):
    pass


class StyleGANSampler(StyleSampler):
    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "grown_to": grown_to(model)}


FAMILY = Family(
    name="stylegan",
    generator=Part("ganserve.models.stylegan:StyleGANConfig", "ganserve.models.stylegan:StyleGANGenerator"),
    discriminator="ganserve.models.stylegan:StyleGANDiscriminator",
    request=StyleGANRequest,
    sampler=StyleGANSampler(),
    exporter="ganserve.export.stylegan",
    training="ganserve.train.stylegan:StyleGANTraining",
    description="StyleGAN (Karras et al. 2019): mapping network, AdaIN styles, per-layer noise, progressive growing",
)
