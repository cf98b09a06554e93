"""ProGAN as a ganserve family: its request fields and its sampler (z rows -> generator).

ProGAN has no mapping network, so no W space and nothing to truncate, mix or add noise to (the paper has no
truncation trick): a request takes seeds, an optional class, and interpolation, which is a slerp in Z (the only
latent space). Style fields (truncation_psi, truncation_cutoff, noise_mode, style_mix ...) are refused with a
RequestError naming the field, as any field a family does not use.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import field_validator
from torch import nn

from ganserve import fields
from ganserve.families import Family, Part, Sampler
from ganserve.latents import normal_from_seed, slerp, steps
from ganserve.requests import ClassField, Interpolate, LatentRequest
from ganserve.sampling import Plan, model_device, model_name, resolve_class
from ganserve.surface import LatentModel


class ZInterpolate(Interpolate):
    """Interpolation for generators without a W space: slerp in Z."""

    space: Literal["z"] = "z"

    @field_validator("space", mode="before")
    @classmethod
    def _only_z(cls, v: Any) -> Any:
        if v != "z":
            raise ValueError("this family has no W space (no mapping network): interpolate in 'z'")
        return v


class ProGANRequest(LatentRequest, ClassField):
    interpolate: fields.Interpolation[ZInterpolate] = None


def grown_to(model: nn.Module) -> dict[str, Any]:
    """How far a progressive model had grown when it was saved (a shipped one: the final resolution, alpha 1)."""
    resolution, alpha = model.progress
    return {"resolution": int(resolution), "alpha": round(float(alpha), 6)}


class ProGANSampler(Sampler):
    """z (and class) rows -> the generator, at the resolution the model has grown to."""

    surface = LatentModel

    def plan(self, model: nn.Module, req: ProGANRequest) -> Plan:
        z_dim = model.config.z_dim
        cls = resolve_class(model, req.class_)
        base: dict[str, Any] = {"model": model_name(model)}
        if cls is not None:
            base["class"] = cls
        zs: list[torch.Tensor] = []
        params: list[dict[str, Any]] = []
        if req.interpolate:
            ip = req.interpolate
            z_to = normal_from_seed(ip.to_seed, z_dim)
            interp = {"to_seed": ip.to_seed, "steps": ip.steps, "space": ip.space}
            for s in req.seeds:
                z0 = normal_from_seed(s, z_dim)
                for k, t in enumerate(steps(ip.steps)):
                    zs.append(slerp(z0, z_to, t))
                    params.append({**base, "seeds": [s], "interpolate": interp, "frame": k, "t": round(t, 6)})
        else:
            zs = [normal_from_seed(s, z_dim) for s in req.seeds]
            params = [{**base, "seeds": [s]} for s in req.seeds]
        rows = {"z": torch.stack(zs)}
        if cls is not None:
            rows["c"] = torch.full([len(zs)], cls, dtype=torch.int64)
        return Plan(req, rows, params)

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        device = model_device(model)
        c = rows["c"].to(device) if "c" in rows else None
        return model(rows["z"].to(device), c)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {"latent": "z", "grown_to": grown_to(model)}


FAMILY = Family(
    name="progan",
    generator=Part("ganserve.models.progan:ProGANConfig", "ganserve.models.progan:ProGANGenerator"),
    discriminator="ganserve.models.progan:ProGANDiscriminator",
    request=ProGANRequest,
    sampler=ProGANSampler(),
    exporter="ganserve.export.progan",
    training="ganserve.train.progan:ProGANTraining",
    description="ProGAN (Karras et al. 2018): progressive growing, pixel norm, equalized lr, minibatch stddev, WGAN-GP",
)
