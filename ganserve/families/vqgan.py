"""VQ-GAN as a ganserve family: a first stage (images <-> code grids) and a GPT prior over the codes, in one checkpoint
(parts ``first_stage`` and ``prior``). The request model and the sampler here serve ViT-VQGAN too.

A request plans into one row per image: the prior's start token (the class), the image's randomness (uniforms drawn
from a generator seeded with its seed alone, one per code position), its sampling filters (temperature, top-k,
top-p: per row, so requests with different settings share one prior step), and the codes it keeps (from ``image``:
all of them for a reconstruction, those in ``keep`` for partial re-sampling). Rendering runs the prior position by
position for the whole chunk with a KV cache, then decodes the code grids. Kept codes are copied, never sampled, so
they survive exactly; the rest are sampled in raster order.

Without ``class`` each image's class is its seed % the number of classes (``ganserve.sampling.resolve_class``),
recorded in its params. A reconstruction (``image`` without ``keep``) is one image per input image, made from the
image's codes alone: it takes no seeds, class or sampling filters (they would change nothing) and its params carry
no seed or class.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import model_validator
from torch import nn

from ganserve import fields
from ganserve.families import Family, Part, Sampler
from ganserve.families.conditional import CLASS_FROM_SEED
from ganserve.images import ImageDecodeError, decode_image, from_uint8
from ganserve.models.transformer import sample_codes, uniforms_for_seed
from ganserve.requests import BaseRequest, Keep, RequestError, VQSamplingFields
from ganserve.sampling import Plan, class_names, model_device, model_name, resolve_class
from ganserve.surface import VQModel

# Fields that choose what is sampled; a reconstruction samples nothing.
RECONSTRUCTION_REFUSES = ("seeds", "class_", "classes", "temperature", "top_k", "top_p")


class VQRequest(BaseRequest, VQSamplingFields):
    """Requests for the VQ families (VQ-GAN, ViT-VQGAN): seeds, class (or a list of classes: one image per class x
    seed, class by row), sampling filters, image and keep."""

    classes: fields.Classes = None

    @model_validator(mode="after")
    def _one_class_field(self) -> VQRequest:
        if self.classes is not None and self.class_ is not None:
            raise ValueError("give either class or classes, not both")
        return self

    @property
    def reconstruction(self) -> bool:
        """``image`` without ``keep``: every code is the image's own, so nothing is sampled and there is one image."""
        return self.image is not None and self.keep is None

    def image_count(self) -> int:
        if self.reconstruction:
            return 1
        return len(self.seeds) * (len(self.classes) if self.classes else 1)

    def default_cols(self) -> int:
        return len(self.seeds) if self.classes else super().default_cols()


def keep_mask(keep: Keep, height: int, width: int) -> torch.Tensor:
    """A request's ``keep`` -> bool [height, width] over the code grid (True: keep the source image's code).

    ``mask``: ``height`` rows of ``width`` booleans. ``box``: [top, left, bottom, right] in code units, bottom and right
    exclusive (a Python slice), inside the grid. ``half``: top / bottom / left / right half (the middle row or column
    of an odd grid goes with top / left)."""
    if keep.mask is not None:
        rows = keep.mask
        if len(rows) != height or any(len(r) != width for r in rows):
            got = f"{len(rows)} rows of {sorted({len(r) for r in rows}) or [0]}"
            raise RequestError("keep.mask", f"must be {height} rows of {width} booleans (the code grid), got {got}")
        return torch.tensor(rows, dtype=torch.bool)
    if keep.half is not None:
        h2, w2 = (height + 1) // 2, (width + 1) // 2
        top, left, bottom, right = {"top": (0, 0, h2, width), "bottom": (h2, 0, height, width),
                                    "left": (0, 0, height, w2), "right": (0, w2, height, width)}[keep.half]  # fmt: skip
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[top:bottom, left:right] = True
        return mask
    top, left, bottom, right = keep.box
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        msg = (f"[top, left, bottom, right] must satisfy 0 <= top < bottom <= {height} and 0 <= left < right <= "
               f"{width} (code units, end exclusive); got {keep.box}")  # fmt: skip
        raise RequestError("keep.box", msg)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


def source_codes(model: nn.Module, image: str) -> torch.Tensor:
    """A request's base64 image -> its code grid [h, w] (int64), or RequestError('image')."""
    cfg = model.config
    try:
        pixels = decode_image(image, size=int(cfg.resolution), channels=int(cfg.img_channels))
    except ImageDecodeError as e:
        raise RequestError("image", str(e)) from None
    x = from_uint8(pixels).to(model_device(model))
    x = torch.cat([x, x])  # a batch of two, as the core renders a single row (batch-size invariant kernels)
    return model.encode_codes(x)[0].long().cpu()


class VQSampler(Sampler):
    """Plan: per-row start token, uniforms, filters and kept codes. Render: KV-cached prior loop, then decode."""

    surface = VQModel

    def plan(self, model: nn.Module, req: VQRequest) -> Plan:
        if req.reconstruction:
            # Nothing is sampled, so the fields that choose samples would be ignored: refuse them by name instead.
            given = [f for f in RECONSTRUCTION_REFUSES if f in req.model_fields_set]
            if given:
                name = "class" if given[0] == "class_" else given[0]
                raise RequestError(name, f"a reconstruction (image without keep) samples nothing and uses no {name}: "
                                         "remove it, or give keep to re-sample part of the image")  # fmt: skip
            seeds: list[int] = [0]  # one row; its uniforms and start token are never read (every code is kept)
            per_row: list[int | None] = [0 if class_names(model) else None]
        elif req.classes is not None:
            ids = [resolve_class(model, k, f"classes[{i}]") for i, k in enumerate(req.classes)]
            seeds = [s for _ in ids for s in req.seeds]  # class by row, seeds along each row
            per_row = [c for c in ids for _ in req.seeds]
        else:  # one class, or each seed's own (resolve_class: seed % number of classes)
            seeds = list(req.seeds)
            per_row = [resolve_class(model, req.class_, seed=s) for s in seeds]
        h, w = model.code_shape
        length, num_codes = h * w, int(model.num_codes)
        n = len(seeds)
        base: dict[str, Any] = {"model": model_name(model)}
        keep_codes = torch.zeros(length, dtype=torch.long)
        keep = torch.zeros(length, dtype=torch.bool)
        if req.image is not None:
            codes = source_codes(model, req.image)
            keep_codes = codes.reshape(-1)
            if req.keep is not None:
                keep = keep_mask(req.keep, h, w).reshape(-1)
                base["keep"] = req.keep.model_dump(exclude_none=True)
                base["source_codes"] = codes.tolist()
            else:
                keep = torch.ones(length, dtype=torch.bool)
                base["reconstruction"] = True
                base["codes"] = codes.tolist()
        if not bool(keep.all()):
            base["temperature"] = req.temperature
            if req.top_k is not None:
                base["top_k"] = req.top_k
            if req.top_p is not None:
                base["top_p"] = req.top_p
        top_k = 0 if req.top_k is None or req.top_k >= num_codes else req.top_k
        conditional = per_row[0] is not None
        classes = torch.tensor([c if conditional else 0 for c in per_row], dtype=torch.long)
        start = model.start_tokens(classes if conditional else None, n).cpu()
        rows = {
            "start": start,
            "uniform": torch.stack([uniforms_for_seed(s, length) for s in seeds]),
            "temperature": torch.full([n], float(req.temperature)),
            "top_k": torch.full([n], top_k, dtype=torch.long),
            "top_p": torch.full([n], float(req.top_p if req.top_p is not None else 1.0)),
            "keep_codes": keep_codes.expand(n, -1).clone(),
            "keep_mask": keep.expand(n, -1).clone(),
        }
        if req.reconstruction:  # made from the image alone: no seed, no class
            params = [base]
        else:
            params = [{**base, **({"class": c} if c is not None else {}), "seeds": [s]} for c, s in zip(per_row, seeds)]
        return Plan(req, rows, params)

    def render(self, model: nn.Module, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        device = model_device(model)
        r = {k: v.to(device) for k, v in rows.items()}
        n = r["start"].shape[0]
        h, w = model.code_shape
        codes = sample_codes(model.step, model.empty_cache(n), r["start"], r["uniform"], r["temperature"],
                             r["top_k"], r["top_p"], int(model.num_codes), r["keep_codes"], r["keep_mask"],
                             prior=getattr(model, "prior", None))  # fmt: skip
        return model.decode_codes(codes.reshape(n, h, w)).clamp(-1, 1)

    def describe(self, model: nn.Module) -> dict[str, Any]:
        h, w = model.code_shape
        return {
            "code_shape": [h, w],
            "num_codes": int(model.num_codes),
            **(CLASS_FROM_SEED if class_names(model) else {}),
        }


FAMILY = Family(
    name="vqgan",
    generator=Part("ganserve.models.vqgan:VQGANConfig", "ganserve.models.vqgan:VQGAN"),
    parts={
        "first_stage": Part("ganserve.models.vqgan:VQGANFirstStageConfig", "ganserve.models.vqgan:VQGANFirstStage"),
        "prior": Part("ganserve.models.transformer:GPTPriorConfig", "ganserve.models.transformer:GPTPrior"),
    },
    discriminator="ganserve.models.vqgan:make_discriminator",
    request=VQRequest,
    sampler=VQSampler(),
    exporter="ganserve.export.vqgan",
    training="ganserve.train.vqgan:VQGANTraining",
    description="VQ-GAN (Esser et al. 2021): conv autoencoder, vector-quantised bottleneck, a GPT prior over its codes",
)
