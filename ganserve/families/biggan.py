"""BigGAN as a ganserve family: its request fields and its sampler (seeds -> truncated z, class vectors -> pixels).

Truncation follows pytorch-pretrained-BigGAN: ``truncation_psi`` in (0, 1] draws z = psi * TN(-2, 2), the truncated
normal made by resampling every component outside [-2, 2] from the seed's own stream
(``ganserve.latents.truncated_normal_from_seed``), and the batch norms read their standing statistics at psi. z, the
class vector and the truncation are per-row tensors, so requests with different classes, interpolations and
truncations render in one generator call. Classes, class lists (class-by-row grids) and class/seed interpolation are
``ganserve.families.conditional``'s.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ganserve import fields
from ganserve.families import Family, Part, Sampler
from ganserve.families.conditional import CLASS_FROM_SEED, ConditionalRequest, plan_class_rows
from ganserve.latents import truncated_normal_from_seed
from ganserve.sampling import Plan, model_device, model_name
from ganserve.surface import ConditionalModel

TRUNCATION_THRESHOLD = 2.0


class BigGANRequest(ConditionalRequest):
    """BigGAN: ``truncation_psi`` in (0, 1] scales a TN(-2, 2) latent and picks the standing statistics."""

    truncation_psi: fields.TruncationPsi = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)


def biggan_latent(seed: int, z_dim: int, psi: float) -> torch.Tensor:
    """z = psi * TN(-2, 2) for a seed: deterministic, |z| <= 2 psi in every component."""
    return psi * truncated_normal_from_seed(seed, z_dim, TRUNCATION_THRESHOLD)


class BigGANSampler(Sampler):
    """rows: z [n, z_dim], class_vector [n, c_dim], truncation [n] -> G(z, class_vector, truncation)."""

    surface = ConditionalModel

    def plan(self, model: nn.Module, req: BigGANRequest) -> Plan:
        psi, z_dim = req.truncation_psi, model.config.z_dim
        base = {"model": model_name(model), "truncation_psi": psi}
        z, cv, params = plan_class_rows(model, req, lambda s: biggan_latent(s, z_dim, psi), base)
        return Plan(req, {"z": z, "class_vector": cv, "truncation": torch.full([len(params)], float(psi))}, params)

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        device = model_device(model)
        return model(rows["z"].to(device), rows["class_vector"].to(device), rows["truncation"].to(device))

    def describe(self, model: nn.Module) -> dict[str, Any]:
        cfg = model.config
        return {"z_dim": cfg.z_dim, "truncation": {"threshold": TRUNCATION_THRESHOLD, "n_stats": cfg.n_stats,
                                                   "latent": "z = truncation_psi * TN(-2, 2)"},
                "deep": bool(cfg.deep), **CLASS_FROM_SEED}  # fmt: skip


FAMILY = Family(
    name="biggan",
    generator=Part("ganserve.models.biggan:BigGANConfig", "ganserve.models.biggan:BigGANGenerator"),
    discriminator="ganserve.models.biggan:BigGANDiscriminator",
    request=BigGANRequest,
    sampler=BigGANSampler(),
    exporter="ganserve.export.biggan",
    training="ganserve.train.biggan:BigGANTraining",
    description="BigGAN (Brock et al. 2019): shared class embedding, hierarchical z, conditional BN with standing "
    "statistics, self-attention, spectral norm, projection D",
)
