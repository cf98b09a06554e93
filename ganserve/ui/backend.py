"""What the explorer needs from a generator source, and the two sources: in-process models and a ganserve server.

Both return the same thing for the same request: PNG bytes with the image's parameters embedded (the body
``ganserve.sampling.encode_result`` produces for ``format: json``), so the UI code never knows which one it talks to.
"""

from __future__ import annotations

import base64
import io
import json
import threading
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

    @classmethod
    def from_description(cls, name: str, desc: dict[str, Any]) -> ModelInfo:
        """From a handler's model description (tolerant of absent keys: the schema falls back to this install's)."""
        from ganserve.requests import request_json_schema

        family = str(desc.get("family", "stylegan2"))
        schema = desc.get("request_schema") or desc.get("schema")
        if not isinstance(schema, dict):
            schema = request_json_schema(family)
        classes = desc.get("classes") or desc.get("class_names") or []
        return cls(
            name=str(desc.get("name") or desc.get("model") or name),
            family=family,
            resolution=int(desc.get("resolution") or 0),
            num_ws=int(desc.get("num_ws") or 0),
            classes=[str(c) for c in classes],
            schema=schema,
            version=str(desc.get("model_version") or desc.get("version") or ""),
        )


class Backend(Protocol):
    """A source of generated images: the local models (``--local``) or a ganserve TorchServe server."""

    label: str

    def models(self) -> list[str]: ...

    def describe(self, name: str) -> ModelInfo: ...

    def generate(self, name: str, request: dict[str, Any]) -> list[Picture]: ...


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
        # Gradio calls from worker threads: load each model once, and run one generation at a time (the core's
        # batch-invariant switch is process-wide state).
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
