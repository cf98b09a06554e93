"""Request pieces and row planning shared by the class-conditional latent families (BigGAN, SAGAN).

Fields (on top of ``seeds``, ``class`` and the output fields):
- ``classes``: a list of classes (ids or names) instead of ``class``: one image per class x seed, laid out class by
  row (rows = classes, columns = seeds), the figure of the BigGAN paper.
- ``interpolate``: ``{"to_seed": S, "to_class": K, "steps": N}`` with either or both targets: frames from each seed
  (and the request's class) to ``to_seed`` (z is lerped, which keeps a truncated z inside its bound) and/or to
  ``to_class`` (the class vector is lerped, which lerps the shared class embedding: class interpolation).
Without ``class`` (and ``classes``) each image's class comes from its seed: ``seed % number of classes`` (see
``ganserve.sampling.resolve_class``), recorded in its params as ``class`` like a given one, so a run of seeds shows
every class in turn. Interpolation frames keep their start seed's class unless ``to_class`` is given.
Rows carry a class *vector* per image (one-hot, or a mixture for class interpolation), so requests with different
classes and interpolations render in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ganserve import fields
from ganserve.latents import steps
from ganserve.requests import MAX_SEED, ClassField, LatentRequest, Strict
from ganserve.sampling import class_names, resolve_class

# In a sampler's describe(): this family takes an omitted class from each seed, so front ends may offer "no class".
CLASS_FROM_SEED: dict[str, str] = {"class_from_seed": "seed % number of classes"}


class ClassInterpolate(Strict):
    """Frames from each seed to ``to_seed`` (z lerped) and/or from the request's class to ``to_class`` (class
    embedding lerped); give at least one of the two."""

    to_seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    to_class: fields.ToClass = None
    steps: int = Field(default=8, ge=2, le=256)
    space: Literal["z"] = "z"

    @model_validator(mode="after")
    def _a_target(self) -> ClassInterpolate:
        if self.to_seed is None and self.to_class is None:
            raise ValueError("give to_seed, to_class or both")
        return self


class ConditionalRequest(LatentRequest, ClassField):
    """Seeds, one ``class`` or a list of ``classes``, and seed/class interpolation."""

    classes: fields.Classes = None
    interpolate: fields.Interpolation[ClassInterpolate] = None

    @model_validator(mode="after")
    def _classes(self) -> ConditionalRequest:
        if self.classes is not None and self.class_ is not None:
            raise ValueError("give either class or classes, not both")
        if self.classes is not None and self.interpolate is not None:
            raise ValueError("classes and interpolate cannot be combined in one request")
        return self

    def image_count(self) -> int:
        return super().image_count() * (len(self.classes) if self.classes else 1)

    def default_cols(self) -> int:
        return len(self.seeds) if self.classes else super().default_cols()


def one_hot(k: int, c_dim: int) -> torch.Tensor:
    v = torch.zeros(c_dim)
    v[k] = 1.0
    return v


def plan_class_rows(
    model: nn.Module, req: ConditionalRequest, latent: Callable[[int], torch.Tensor], base: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
    """(z rows [n, z_dim], class-vector rows [n, c_dim], per-image params) for a request, in output order.

    ``latent(seed)`` is the family's z for a seed (BigGAN: psi * TN(-2, 2)); ``base`` the params every image shares.
    """
    c_dim = len(class_names(model))
    zs: list[torch.Tensor] = []
    cvs: list[torch.Tensor] = []
    params: list[dict[str, Any]] = []
    if req.classes is not None:
        ids = [resolve_class(model, k, f"classes[{i}]") for i, k in enumerate(req.classes)]
        seed_z = {s: latent(s) for s in req.seeds}
        for k in ids:  # class by row
            for s in req.seeds:
                zs.append(seed_z[s])
                cvs.append(one_hot(k, c_dim))
                params.append({**base, "class": k, "seeds": [s]})
        return torch.stack(zs), torch.stack(cvs), params

    # No class: each seed brings its own (resolve_class's seed % number of classes), recorded like a given one.
    def class_of(seed: int) -> int:
        return resolve_class(model, req.class_, seed=seed)

    if req.interpolate is None:
        for s in req.seeds:
            cls = class_of(s)
            zs.append(latent(s))
            cvs.append(one_hot(cls, c_dim))
            params.append({**base, "class": cls, "seeds": [s]})
        return torch.stack(zs), torch.stack(cvs), params
    ip = req.interpolate
    interp: dict[str, Any] = {"steps": ip.steps, "space": ip.space}
    z_to = cv_to = None
    if ip.to_seed is not None:
        z_to = latent(ip.to_seed)
        interp["to_seed"] = ip.to_seed
    if ip.to_class is not None:
        to_cls = resolve_class(model, ip.to_class, "interpolate.to_class")
        cv_to = one_hot(to_cls, c_dim)
        interp["to_class"] = to_cls
    for s in req.seeds:
        cls = class_of(s)  # the start seed's class: frames towards to_seed keep it unless to_class is given
        z0, start = latent(s), one_hot(cls, c_dim)
        for k, t in enumerate(steps(ip.steps)):
            zs.append(z0.lerp(z_to, t) if z_to is not None else z0)
            cvs.append(start.lerp(cv_to, t) if cv_to is not None else start)
            params.append({**base, "class": cls, "seeds": [s], "interpolate": interp, "frame": k, "t": round(t, 6)})
    return torch.stack(zs), torch.stack(cvs), params


__all__ = ["CLASS_FROM_SEED", "ClassInterpolate", "ConditionalRequest", "one_hot", "plan_class_rows"]
