"""The sampling core: request -> rows -> generator -> uint8 images -> encoded response, for every family.

Every front end (CLI, HTTP handler, Gradio UI, ``ganserve.sample``) goes through here, so one request gives the same
pixels everywhere. A request is first *planned* by its family's sampler (validated against the model, one row of
inputs per output image), then any number of plans are *rendered* together in fixed-size chunks: that is what lets a
server batch several requests into one generator call. Rows come from per-seed generators and are rendered with
batch-invariant kernels, so an image never depends on batch size, order or neighbours.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ganserve.families import family_of
from ganserve.images import CONTENT_TYPES, b64, encode_image, encode_npy, make_grid, to_uint8
from ganserve.models.layers import batch_invariant, batch_one_is_invariant
from ganserve.precision import precision_scope, recorded_precision
from ganserve.requests import DEFAULT_MAX_IMAGES, BaseRequest, RequestError, validate_request

DEFAULT_BATCH_SIZE = 16


@dataclass
class Plan:
    """A validated request turned into generator inputs: one row per output image.

    ``rows`` maps input names to tensors whose first axis is the row; what they mean is the family's business.
    """

    request: BaseRequest
    rows: dict[str, torch.Tensor]
    params: list[dict[str, Any]]  # per image: the settings that made it

    def __len__(self) -> int:
        return len(self.params)


@dataclass
class SampleResult:
    images: np.ndarray  # uint8 [N, H, W, C]
    params: list[dict[str, Any]]
    request: BaseRequest
    model: str = ""
    model_version: str = ""
    seconds: float = 0.0

    @property
    def seeds(self) -> list[int | str]:
        """Each image's seed, or the id of the latent it was made from (``w`` requests)."""
        return [p["seeds"][0] if "seeds" in p else p.get("w", "") for p in self.params]


@dataclass
class Encoded:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------------
# Model information shared by the families


def model_name(model: nn.Module) -> str:
    return getattr(model, "name", "") or model.family


def model_version(model: nn.Module) -> str:
    info = getattr(model, "checkpoint_info", None) or {}
    return info.get("content_hash", "sha256:unsaved").split(":", 1)[1][:12]


def class_names(model: nn.Module) -> list[str]:
    """A class-conditional model's class names (its config's ``c_dim`` and ``class_names``); [] if unconditional."""
    cfg = model.config
    c_dim = int(getattr(cfg, "c_dim", 0) or 0)
    names = list(getattr(cfg, "class_names", None) or [])
    return names if names else [str(i) for i in range(c_dim)]


def resolve_class(
    model: nn.Module, value: int | str | None, field_name: str = "class", *, seed: int | None = None
) -> int | None:
    """A request's class (id or case-insensitive name) -> its id; None for unconditional models.

    A class-conditional model given no class takes it from ``seed`` when there is one: ``seed % number of classes``.
    That depends on the seed alone (not on the z drawn from it), so seeds k, k+1, ... show every class in turn and the
    same seed gives the same class on every front end; without a seed the class is required.
    """
    names = class_names(model)
    if not names:
        if value is not None:
            raise RequestError(field_name, "this model is unconditional: remove the class field")
        return None
    if value is None:
        if seed is not None:
            return seed % len(names)
        raise RequestError(field_name, f"this model is class-conditional: give a class (0-{len(names) - 1} or a name)")
    if isinstance(value, str):
        lowered = [n.lower() for n in names]
        if value.lower() in lowered:
            return lowered.index(value.lower())
        if value.isascii() and value.isdigit() and int(value) < len(names):
            return int(value)
        raise RequestError(field_name, f"unknown class '{value[:64]}'; classes: {', '.join(names)}")
    if not 0 <= value < len(names):
        raise RequestError(field_name, f"class {value} is out of range [0, {len(names) - 1}]")
    return value


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def describe(model: nn.Module, **limits: Any) -> dict[str, Any]:
    """What a client (the UI, ``GET /models/NAME?customized=true``) needs to know to build requests for ``model``."""
    fam = family_of(model)
    cfg = model.config
    return {
        "name": model_name(model),
        "family": fam.name,
        "version": model_version(model),
        "resolution": int(cfg.resolution),
        "img_channels": int(cfg.img_channels),
        "classes": class_names(model),
        **limits,
        "dataset": (getattr(model, "checkpoint_info", None) or {}).get("dataset"),
        "precision": recorded_precision(model),
        # graph backends: the format, the graphs' dtype and (onnx) the execution providers that run them
        **({"runtime": model.runtime_info} if getattr(model, "runtime_info", None) else {}),
        **fam.sampler.describe(model),
        "request_schema": fam.request.model_json_schema(by_alias=True),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Plan and render


@torch.no_grad()
def plan(model: nn.Module, request: Any = None, *, max_images: int = DEFAULT_MAX_IMAGES, **fields: Any) -> Plan:
    """Validate ``request`` (a dict, a request model, or keyword fields) against ``model`` and compute its rows."""
    if request is None:
        request = fields
    elif fields:
        raise TypeError("give either a request or keyword fields, not both")
    fam = family_of(model)
    req = validate_request(fam.request, request, fam.name)
    n = req.image_count()
    if n > max_images:
        raise RequestError("seeds", f"{n} images requested; the limit is {max_images} per request")
    with batch_invariant():
        p = fam.sampler.plan(model, req)
    bad = [k for k, t in p.rows.items() if t.shape[0] != len(p)]
    if bad:  # a family bug, not a bad request
        raise RuntimeError(f"{fam.name} sampler planned rows {bad} whose length differs from {len(p)} images")
    precision = recorded_precision(model)
    if precision != "fp32":  # the image records how it was made
        for params in p.params:
            params["precision"] = precision
    return p


@torch.no_grad()
def render(model: nn.Module, plans: list[Plan], batch_size: int = DEFAULT_BATCH_SIZE) -> list[np.ndarray]:
    """Render every plan's rows in chunks of ``batch_size`` through the family's sampler; uint8 [n, H, W, C] per plan.

    Where a batch of one would get other kernels than a larger batch a chunk of one row is padded to two, so an
    image never depends on the batch size: eager models off the CPU or below fp32 (cuDNN / PyTorch's dispatch pick by
    batch size) and graphs whose format says so (torch.export programs in the same cases). Eager fp32 on the CPU
    (``layers.conv2d`` fixes the kernels), pt2 programs there (they hold those layers as ops) and onnxruntime graphs
    (measured row-invariant at batch 1) run it as is.
    """
    if not plans:
        return []
    sampler = family_of(model).sampler
    device = model_device(model)
    keys = list(plans[0].rows)
    rows = {k: torch.cat([p.rows[k] for p in plans]) for k in keys}
    total = sum(len(p) for p in plans)
    graph = getattr(model, "export_format", None)
    eager_pads = graph is None and not batch_one_is_invariant(device, getattr(model, "precision", "fp32"))
    pad_one = eager_pads or bool(getattr(model, "pad_batch_one", False))  # a graph format declares it
    batch_size = max(batch_size, 2 if pad_one else 1)
    chunks = []
    for start in range(0, total, batch_size):
        chunk = {k: t[start : start + batch_size] for k, t in rows.items()}
        n = min(batch_size, total - start)
        if n == 1 and pad_one:
            chunk = {k: t.repeat(2, *[1] * (t.ndim - 1)) for k, t in chunk.items()}
        with batch_invariant(), precision_scope(model, device):
            img = sampler.render(model, chunk)
        chunks.append(to_uint8(img[:n]))
    images = np.concatenate(chunks)
    out, start = [], 0
    for p in plans:
        out.append(images[start : start + len(p)])
        start += len(p)
    return out


def sample(
    model: nn.Module,
    request: Any = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_images: int = DEFAULT_MAX_IMAGES,
    **fields: Any,
) -> SampleResult:
    """Validate, plan and render one request: ``sample(G, seeds="0-7", truncation_psi=0.7)``."""
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
        cols = req.grid_cols or req.default_cols()
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


__all__ = ["Encoded", "Plan", "SampleResult", "describe", "encode_result", "plan", "render", "sample"]
