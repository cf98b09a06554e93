"""SAGAN as a ganserve family: class-conditional requests, and the attention map of a query pixel as an image.

``attention: {"query": [y, x]}`` (image pixel coordinates, 0 <= y, x < resolution) returns, for every image of the
request, the generator's self-attention weights of that pixel over the (2x max-pooled) key positions, divided by their
maximum and upsampled to the image size: a grey-scale picture, white where the pixel attends most. The sample itself
is not returned (ask again without ``attention``). z = N(0, I) from the seed (numpy's RandomState, as every family);
classes, class lists and class/seed interpolation are ``ganserve.families.conditional``'s.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from ganserve.families import Family, Part, Sampler
from ganserve.families.conditional import CLASS_FROM_SEED, ConditionalRequest, plan_class_rows
from ganserve.front_end import FrontEnd, pixel
from ganserve.latents import normal_from_seed
from ganserve.requests import RequestError, Strict
from ganserve.sampling import Plan, model_device, model_name
from ganserve.surface import ConditionalModel


class AttentionQuery(Strict):
    """The attention map of one query pixel [y, x] (image coordinates) instead of the image."""

    query: list[int] = Field(min_length=2, max_length=2)


class SAGANRequest(ConditionalRequest):
    # The declaration every front end reads: ganserve sample --attention Y,X (ganserve.front_end).
    attention: Annotated[
        AttentionQuery | None,
        FrontEnd(metavar="Y,X", label="Self-attention",
                 help="the self-attention map of pixel [Y, X] instead of the image", group="attention",
                 widget="image", parse=pixel, example="4,5"),
    ] = None  # fmt: skip


class SAGANSampler(Sampler):
    """rows: z [n, z_dim], class_vector [n, c_dim], attention_query [n, 2] (-1: the image) -> G(z, c, query)."""

    surface = ConditionalModel

    def plan(self, model: nn.Module, req: SAGANRequest) -> Plan:
        cfg = model.config
        base: dict[str, Any] = {"model": model_name(model)}
        query = [-1, -1]
        if req.attention is not None:
            if cfg.attention_resolution is None:
                raise RequestError("attention", "this model has no self-attention block")
            y, x = req.attention.query
            if not (0 <= y < cfg.resolution and 0 <= x < cfg.resolution):
                raise RequestError("attention.query", f"[{y}, {x}] is outside the {cfg.resolution}x{cfg.resolution} "
                                                      f"image (0-based [y, x])")  # fmt: skip
            query = [y, x]
            base["attention"] = {"query": query}
        z, cv, params = plan_class_rows(model, req, lambda s: normal_from_seed(s, cfg.z_dim), base)
        rows = {"z": z, "class_vector": cv, "attention_query": torch.tensor([query] * len(params), dtype=torch.long)}
        return Plan(req, rows, params)

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        device = model_device(model)
        return model(rows["z"].to(device), rows["class_vector"].to(device), rows["attention_query"].to(device))

    def describe(self, model: nn.Module) -> dict[str, Any]:
        cfg = model.config
        return {"z_dim": cfg.z_dim, "attention_resolution": cfg.attention_resolution, **CLASS_FROM_SEED}


FAMILY = Family(
    name="sagan",
    generator=Part("ganserve.models.sagan:SAGANConfig", "ganserve.models.sagan:SAGANGenerator"),
    discriminator="ganserve.models.sagan:SAGANDiscriminator",
    request=SAGANRequest,
    sampler=SAGANSampler(),
    exporter="ganserve.export.sagan",
    training="ganserve.train.sagan:SAGANTraining",
    description="SAGAN (Zhang et al. 2019): self-attention, spectral norm in G and D, conditional BN, projection D, "
    "hinge loss with TTUR",
)
