"""What the explorer needs from a generator source, and the two sources: in-process models and a ganserve server.

Both return the same thing for the same request: PNG bytes with the image's parameters embedded (the body
``ganserve.sampling.encode_result`` produces for ``format: json``), so the UI code never knows which one it talks to.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ganserve.images import read_png_params


class BackendError(Exception):
    """A failure to show the user as one readable line; ``field`` names the request field when one is at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        self.message, self.field = message, field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass
class Picture:
    """One generated image: the PNG as it travels (parameters embedded) and those parameters."""

    png: bytes
    params: dict[str, Any]

    def array(self) -> np.ndarray:
        """uint8 [H, W, C] pixels (C = 1 for grayscale models), as the core returns them."""
        with Image.open(io.BytesIO(self.png)) as im:
            a = np.asarray(im)
        return a[:, :, None] if a.ndim == 2 else a


@dataclass
class ModelInfo:
    """What the UI builds its controls from; ``schema`` is the family's request JSON schema."""

    name: str
    family: str
    resolution: int = 0
    num_ws: int = 0
    classes: list[str] = field(default_factory=list)
    schema: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    layer_groups: dict[str, list[int]] = field(default_factory=dict)  # name -> inclusive [first, last] ws
    directions: dict[str, Any] = field(default_factory=dict)  # {"methods": [...], "count": N} when edits work
    class_from_seed: bool = False  # the family takes an omitted class from each seed (seed % number of classes)

    @classmethod
    def from_description(cls, name: str, desc: dict[str, Any]) -> ModelInfo:
        """From a handler's model description (tolerant of absent keys: the schema falls back to this install's)."""
        from ganserve.requests import request_json_schema

        family = str(desc.get("family", "stylegan2"))
        schema = desc.get("request_schema") or desc.get("schema")
        if not isinstance(schema, dict):
            schema = request_json_schema(family)
        classes = desc.get("classes") or desc.get("class_names") or []
        groups = desc.get("layer_groups") if isinstance(desc.get("layer_groups"), dict) else {}
        directions = desc.get("directions") if isinstance(desc.get("directions"), dict) else {}
        return cls(
            name=str(desc.get("name") or desc.get("model") or name),
            family=family,
            resolution=int(desc.get("resolution") or 0),
            num_ws=int(desc.get("num_ws") or 0),
            classes=[str(c) for c in classes],
            schema=schema,
            version=str(desc.get("model_version") or desc.get("version") or ""),
            layer_groups={str(k): [int(v[0]), int(v[1])] for k, v in groups.items() if len(v) == 2},
            directions=dict(directions),
            class_from_seed=bool(desc.get("class_from_seed")),
        )


class Backend(Protocol):
    """A source of generated images: the local models (``--local``) or a ganserve TorchServe server."""

    label: str

    def models(self) -> list[str]: ...

    def describe(self, name: str) -> ModelInfo: ...

    def generate(self, name: str, request: dict[str, Any]) -> list[Picture]: ...

    # Optional (``ganserve.ui.actions`` falls back when a backend lacks them):
    #   generate_many(name, requests) -> list[list[Picture]]: several requests at once (one batched render locally)
    #   project(name, request, progress) -> Picture: a ``project`` request, reporting (step, steps) when it can


def decode_body(body: bytes, content_type: str) -> list[Picture]:
    """A response body from ``encode_result`` -> pictures: a PNG (one image) or JSON {"images": [{png, params}]}."""
    if content_type.startswith("image/png") or body[:8] == b"\x89PNG\r\n\x1a\n":
        params = read_png_params(body) or {}
        return [Picture(body, params)]
    try:
        data = json.loads(body)
    except ValueError:
        raise BackendError(f"unexpected response ({content_type or 'no content type'}, {len(body)} bytes)") from None
    if not isinstance(data, dict) or "images" not in data:
        raise BackendError("unexpected JSON response: no 'images' list")
    return [Picture(base64.b64decode(item["png"]), dict(item.get("params") or {})) for item in data["images"]]


class LocalBackend:
    """Generation in this process: ``ganserve.load`` + the sampling core, models loaded on first use and kept."""

    label = "local"
    reports_progress = True  # project() calls its progress callback per step

    def __init__(
        self,
        models: dict[str, str | Path] | None = None,
        device: str = "cpu",
        max_images: int = 64,
        precision: str = "fp32",
    ):
        import ganserve

        self._paths = {k: Path(v) for k, v in (models if models is not None else ganserve.available_models()).items()}
        self._device, self._max_images, self._precision = device, max_images, precision
        self._loaded: dict[str, Any] = {}
        # Gradio calls from worker threads: load each model once, and run one generation at a time (renders share
        # the CPU threads; a projection, minutes long, runs beside them).
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()

    def models(self) -> list[str]:
        return list(self._paths)

    def model(self, name: str) -> Any:
        import ganserve

        if name not in self._paths:
            raise BackendError(f"unknown model '{name}'; available: {', '.join(self._paths) or 'none'}", "model")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = ganserve.load(self._paths[name], device=self._device, precision=self._precision)
            return self._loaded[name]

    def describe(self, name: str) -> ModelInfo:
        from ganserve.sampling import describe

        return ModelInfo.from_description(name, {**describe(self.model(name)), "name": name})

    def generate(self, name: str, request: dict[str, Any]) -> list[Picture]:
        from ganserve.requests import RequestError
        from ganserve.sampling import encode_result, sample

        G = self.model(name)
        try:
            with self._run_lock:
                result = sample(G, {**request, "format": "json"}, max_images=self._max_images)
        except RequestError as e:
            raise BackendError(e.message, e.field) from None
        enc = encode_result(result, "json", grid=False)  # the body a server sends: same decoding path
        return decode_body(enc.body, enc.content_type)

    def generate_many(self, name: str, requests: list[dict[str, Any]]) -> list[list[Picture]]:
        """Several requests rendered together (the core's batched render: the same pixels as one by one)."""
        from ganserve.requests import RequestError
        from ganserve.sampling import SampleResult, encode_result, model_name, model_version, plan, render

        G = self.model(name)
        try:
            with self._run_lock:
                plans = [plan(G, {**r, "format": "json"}, max_images=self._max_images) for r in requests]
                images = render(G, plans)
        except RequestError as e:
            raise BackendError(e.message, e.field) from None
        out = []
        for p, imgs in zip(plans, images):
            enc = encode_result(SampleResult(imgs, p.params, p.request, model_name(G), model_version(G)), "json",
                                grid=False)  # fmt: skip
            out.append(decode_body(enc.body, enc.content_type))
        return out

    def project(
        self, name: str, request: dict[str, Any], progress: Callable[[int, int], None] | None = None
    ) -> Picture:
        """A ``project`` request as the core answers it (same w, pixels and parameters), with progress per step.

        The core's request path has no progress hook, so the projection runs here through
        ``ganserve.projection.project`` (as the core does: batch-invariant kernels, seed 0), the w goes to the
        latent store, and the reconstruction is the ``w`` request the core would render for it.
        """
        from ganserve import latents_store
        from ganserve.images import ImageDecodeError, decode_image, encode_png
        from ganserve.models.layers import batch_invariant
        from ganserve.projection import project

        req = dict(request)
        image, steps = req.pop("project", None), int(req.pop("project_steps", 300))
        G = self.model(name)
        if not image:
            raise BackendError("upload an image to project", "project")
        try:
            target = decode_image(image, G.config.resolution, G.config.img_channels)
        except ImageDecodeError as e:
            raise BackendError(f"image {e}", "project") from None
        except (AttributeError, ValueError) as e:
            raise BackendError(str(e), "project") from None
        self.generate(name, {**req, "seeds": [0]})  # validates the other fields before minutes of optimisation
        try:
            with batch_invariant():  # thread-local: renders may go on meanwhile
                result = project(G, target, steps=steps, progress=(lambda k, _loss: progress(k, steps)) if progress
                                 else None)  # fmt: skip
        except ValueError as e:
            raise BackendError(str(e), "project") from None
        lid = latents_store.save(result.ws.numpy())
        (pic,) = self.generate(name, {**req, "w": lid})
        params = {**pic.params, "psnr": round(result.psnr, 3), "project_steps": steps}
        return Picture(encode_png(pic.array(), params), params)
