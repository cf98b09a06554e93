"""The sampling core: request -> latents -> generator -> uint8 images -> encoded response.

Every front end (CLI, TorchServe handler, Gradio UI, ``G.sample``) goes through here, so one request gives the same
pixels everywhere. Latents and noise come from per-seed generators and every generator call uses the same
(activation-scaling) modulated-conv formulation, so an image never depends on batch size, order or neighbours.
A request is first *planned* (validated against the model, latents computed), then any number of plans are
*rendered* together in fixed-size chunks: that is what lets a server batch several requests into one call.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ganserve.images import CONTENT_TYPES, b64, encode_image, encode_npy, make_grid, to_uint8
from ganserve.models.layers import batch_invariant
from ganserve.requests import (
    DEFAULT_MAX_IMAGES,
    LAYER_GROUPS,
    RequestError,
    SampleRequest,
    StyleGAN2Request,
    StyleGANRequest,
    parse_request,
)

DEFAULT_BATCH_SIZE = 16
# Index ranges of the named style-mixing groups, in the StyleGAN papers' numbering: coarse = 4^2-8^2,
# middle = 16^2-32^2, fine = 64^2 and up. Clipped to the model's number of ws.
_LAYER_GROUP_RANGES = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}


@dataclass
class Plan:
    """A validated request turned into synthesis inputs: one row per output image."""

    request: SampleRequest
    ws: torch.Tensor  # [n, num_ws, w_dim]
    noise: list[torch.Tensor]  # per noise input: [n, 1, H, W]
    params: list[dict[str, Any]]  # per image: the settings that made it


@dataclass
class SampleResult:
    images: np.ndarray  # uint8 [N, H, W, C]
    params: list[dict[str, Any]]
    request: SampleRequest
    model: str = ""
    model_version: str = ""
    seconds: float = 0.0

    @property
    def seeds(self) -> list[int]:
        return [p["seeds"][0] for p in self.params]


@dataclass
class Encoded:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Model information


def model_family(model: nn.Module) -> str:
    return model.family


def model_name(model: nn.Module) -> str:
    return getattr(model, "name", "") or model.family


def model_version(model: nn.Module) -> str:
    info = getattr(model, "checkpoint_info", None) or {}
    return info.get("content_hash", "sha256:unsaved").split(":", 1)[1][:12]


def class_names(model: nn.Module) -> list[str]:
    cfg = model.config
    return list(cfg.class_names) if cfg.class_names else [str(i) for i in range(cfg.c_dim)]


def layer_range(layers: list[int] | str, num_ws: int, field_name: str) -> tuple[int, int]:
    if isinstance(layers, str):
        lo, hi = _LAYER_GROUP_RANGES[layers]
        hi = num_ws if hi is None else min(hi, num_ws)
        if lo >= hi:
            raise RequestError(field_name, f"'{layers}' holds no layers in a model with {num_ws} ws")
        return lo, hi
    lo, hi = layers
    if hi > num_ws:
        raise RequestError(field_name, f"layer range [{lo}, {hi}) exceeds the model's {num_ws} ws")
    return lo, hi


def resolve_class(model: nn.Module, value: int | str | None) -> int | None:
    c_dim = model.config.c_dim
    if not c_dim:
        if value is not None:
            raise RequestError("class", "this model is unconditional: remove the class field")
        return None
    if value is None:
        raise RequestError("class", f"this model is class-conditional: give a class (0-{c_dim - 1} or a name)")
    names = class_names(model)
    if isinstance(value, str):
        lowered = [n.lower() for n in names]
        if value.lower() in lowered:
            return lowered.index(value.lower())
        if value.isdigit() and int(value) < c_dim:
            return int(value)
        raise RequestError("class", f"unknown class '{value}'; classes: {', '.join(names)}")
    if not 0 <= value < c_dim:
        raise RequestError("class", f"class {value} is out of range [0, {c_dim - 1}]")
    return value


# ---------------------------------------------------------------------------------------------------------------------
# Latents


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two latent vectors (angle taken between their directions)."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1, 1))
    if float(omega) < 1e-6:
        return a.lerp(b, t)
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def seed_noise(model: nn.Module, seed: int) -> list[torch.Tensor]:
    """Per-layer noise for noise_mode='random', drawn from a generator seeded with the image's seed."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn([1, 1, h, w], generator=gen) for h, w in model.synthesis.noise_shapes()]


def _const_noise(model: nn.Module, mode: str) -> list[torch.Tensor]:
    layers = [m for m in model.synthesis.modules() if hasattr(m, "noise_const")]
    if mode == "const":
        return [layer.noise_const.detach().cpu().reshape(1, 1, *layer.noise_const.shape) for layer in layers]
    return [torch.zeros(1, 1, *layer.noise_const.shape) for layer in layers]


@torch.no_grad()
def plan(model: nn.Module, request: Any = None, *, max_images: int = DEFAULT_MAX_IMAGES, **fields: Any) -> Plan:
    """Validate ``request`` (a dict, a request model, or keyword fields) against ``model`` and compute its latents."""
    if request is None:
        request = fields
    elif fields:
        raise TypeError("give either a request or keyword fields, not both")
    req = parse_request(model_family(model), request)
    n = req.image_count()
    if n > max_images:
        raise RequestError("seeds", f"{n} images requested; the limit is {max_images} per request")
    planner = _PLANNERS.get(req.__class__)
    if planner is None:
        raise RequestError("", f"sampling for the {model_family(model)} family is not available in this version")
    with batch_invariant():
        return planner(model, req)


def _plan_styled(model: nn.Module, req: Any) -> Plan:
    num_ws = model.num_ws
    if req.truncation_cutoff is not None and req.truncation_cutoff > num_ws:
        raise RequestError("truncation_cutoff", f"{req.truncation_cutoff} exceeds the model's {num_ws} ws")
    cls = resolve_class(model, req.class_)
    device = next(model.parameters()).device
    mix_range = layer_range(req.style_mix.layers, num_ws, "style_mix.layers") if req.style_mix else None

    base = {"model": model_name(model), "truncation_psi": req.truncation_psi, "noise_mode": req.noise_mode}
    if req.truncation_cutoff is not None:
        base["truncation_cutoff"] = req.truncation_cutoff
    if cls is not None:
        base["class"] = cls

    def mapping(zs: list[torch.Tensor]) -> torch.Tensor:
        z = torch.stack(zs).to(device)
        c = torch.full([len(zs)], cls, device=device) if cls is not None else None
        return model.mapping(z, c, req.truncation_psi, req.truncation_cutoff).cpu()

    ws_rows: list[torch.Tensor] = []
    noise_seeds: list[int] = []
    params: list[dict[str, Any]] = []
    seeds = req.seeds
    ws_seeds = mapping([model.latent_from_seed(s) for s in seeds])
    if req.style_mix:
        mix_seeds = req.style_mix.seeds
        ws_mix = mapping([model.latent_from_seed(s) for s in mix_seeds])
        lo, hi = mix_range
        for i, s in enumerate(seeds):  # rows: seeds, columns: mixing seeds (StyleGAN2-ADA's figure)
            for j, m in enumerate(mix_seeds):
                w = ws_seeds[i].clone()
                w[lo:hi] = ws_mix[j, lo:hi]
                ws_rows.append(w)
                noise_seeds.append(s)
                layers = req.style_mix.layers
                params.append({**base, "seeds": [s], "style_mix": {"seeds": [m], "layers": layers}})
    elif req.interpolate:
        ip = req.interpolate
        z_to = model.latent_from_seed(ip.to_seed)
        ts = [k / (ip.steps - 1) for k in range(ip.steps)]
        w_to = mapping([z_to])[0]
        for i, s in enumerate(seeds):
            if ip.space == "z":
                z0 = model.latent_from_seed(s)
                ws_rows.extend(mapping([slerp(z0, z_to, t) for t in ts]))
            else:
                ws_rows.extend(ws_seeds[i].lerp(w_to, t) for t in ts)
            for k, t in enumerate(ts):
                noise_seeds.append(s)
                interp = {"to_seed": ip.to_seed, "steps": ip.steps, "space": ip.space}
                params.append({**base, "seeds": [s], "interpolate": interp, "frame": k, "t": round(t, 6)})
    else:
        ws_rows.extend(ws_seeds)
        noise_seeds.extend(seeds)
        params.extend({**base, "seeds": [s]} for s in seeds)

    ws = torch.stack(ws_rows)
    if req.noise_mode == "random":
        per_image = [seed_noise(model, s) for s in noise_seeds]
        noise = [torch.cat([p[k] for p in per_image]) for k in range(len(per_image[0]))]
    else:
        noise = [t.expand(len(ws_rows), -1, -1, -1) for t in _const_noise(model, req.noise_mode)]
    return Plan(req, ws, noise, params)


# A planner per request model: a family plugs in by adding its own (the style-based ones share one).
_PLANNERS = {StyleGAN2Request: _plan_styled, StyleGANRequest: _plan_styled}


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


@torch.no_grad()
def render(model: nn.Module, plans: list[Plan], batch_size: int = DEFAULT_BATCH_SIZE) -> list[np.ndarray]:
    """Run the synthesis network over every plan's rows in chunks of ``batch_size``; uint8 [n, H, W, C] per plan.

    Noise always goes in explicitly (const and none become tensors), so rows from requests with different noise
    modes share one generator call and each row's pixels stay what they would be alone.
    """
    if not plans:
        return []
    device = next(model.parameters()).device
    ws = torch.cat([p.ws for p in plans])
    noise = [torch.cat([p.noise[k] for p in plans]) for k in range(len(plans[0].noise))]
    chunks = []
    batch_size = max(batch_size, 2)
    for start in range(0, ws.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        ws_chunk, noise_chunk = ws[sl], [t[sl] for t in noise]
        n = ws_chunk.shape[0]
        if n == 1:  # convolution kernels differ for a batch of one: pad to two rows
            ws_chunk, noise_chunk = ws_chunk.repeat(2, 1, 1), [t.repeat(2, 1, 1, 1) for t in noise_chunk]
        with batch_invariant():
            img = model.synthesis(
                ws_chunk.to(device), noise_mode="random", noise=[t.to(device) for t in noise_chunk], fused=False
            )
        chunks.append(to_uint8(img[:n]))
    images = np.concatenate(chunks)
    out, start = [], 0
    for p in plans:
        out.append(images[start : start + p.ws.shape[0]])
        start += p.ws.shape[0]
    return out


def sample(
    model: nn.Module,
    request: Any = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_images: int = DEFAULT_MAX_IMAGES,
    **fields: Any,
) -> SampleResult:
    """Validate, plan and render one request."""
    t0 = time.perf_counter()
    p = plan(model, request, max_images=max_images, **fields)
    (images,) = render(model, [p], batch_size)
    return SampleResult(images, p.params, p.request, model_name(model), model_version(model), time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------------------
# Encoding


def encode_result(result: SampleResult, fmt: str | None = None, grid: bool | None = None) -> Encoded:
    """The response body for a result, as the request asked (``fmt`` / ``grid`` override it).

    One image, or a grid: that image's bytes. Several images in png/jpeg without a grid, or format json: a JSON
    object with one base64 entry per image. npy: one array [N, H, W, C] (or the grid [H, W, C]).
    """
    req = result.request
    fmt = fmt or req.format
    grid = req.grid if grid is None else grid
    headers = {
        "X-Ganserve-Model": result.model,
        "X-Ganserve-Model-Version": result.model_version,
        "X-Ganserve-Seeds": ",".join(str(s) for s in result.seeds),
        "X-Ganserve-Images": str(len(result.images)),
    }
    images = result.images
    if grid and len(images) > 1:
        cols = req.grid_cols or _default_cols(result)
        grid_img = make_grid(images, cols)
        if fmt == "json":
            png = b64(encode_image(grid_img, "png"))
            body = {"model": result.model, "model_version": result.model_version, "seeds": result.seeds,
                    "grid": {"png": png, "cols": cols}, "params": result.params}  # fmt: skip
            return Encoded(json.dumps(body).encode(), CONTENT_TYPES["json"], headers)
        meta = {"grid": result.params} if fmt == "png" else None
        return Encoded(encode_image(grid_img, fmt, meta), CONTENT_TYPES[fmt], headers)
    if fmt == "npy":
        return Encoded(encode_npy(images if len(images) > 1 else images[0]), CONTENT_TYPES["npy"], headers)
    if len(images) == 1 and fmt != "json":
        return Encoded(encode_image(images[0], fmt, result.params[0]), CONTENT_TYPES[fmt], headers)
    item_fmt = "png" if fmt == "json" else fmt
    body = {
        "model": result.model,
        "model_version": result.model_version,
        "seeds": result.seeds,
        "images": [
            {item_fmt: b64(encode_image(img, item_fmt, prm if item_fmt == "png" else None)), "params": prm}
            for img, prm in zip(images, result.params)
        ],
    }
    return Encoded(json.dumps(body).encode(), CONTENT_TYPES["json"], headers)


def _default_cols(result: SampleResult) -> int:
    req = result.request
    if getattr(req, "style_mix", None):
        return len(req.style_mix.seeds)
    if getattr(req, "interpolate", None):
        return req.interpolate.steps
    return math.ceil(math.sqrt(len(result.images)))


__all__ = ["LAYER_GROUPS", "Encoded", "Plan", "SampleResult", "encode_result", "plan", "render", "sample"]
