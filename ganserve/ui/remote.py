"""The explorer's client for a ganserve TorchServe server: the inference and management HTTP APIs, token auth.

Models: ``GET {management}/models``; a model's controls: ``GET {management}/models/{name}?customized=true`` (the
handler's description, with the request schema); images: ``POST {inference}/predictions/{name}`` with the request
as JSON and ``format: json``, answered with ``encode_result``'s body. A 400 carries {"error", "field", "message"}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganserve.ui.backend import BackendError, ModelInfo, Picture, decode_body

DEFAULT_INFERENCE = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT = "http://127.0.0.1:8081"


def read_key(key_file: str | Path, api: str) -> str | None:
    """The ``api`` ("inference" / "management") token from TorchServe's key_file.json, or None when it has none.

    TorchServe writes {"management": {"key": ..., "expiration time": ...}, "inference": {...}, "API": {...}};
    a plain {"management": "KEY"} is accepted too (``ganserve.serving.client.read_keys``).
    """
    from ganserve.serving.client import KeyFileError, read_keys

    try:
        return read_keys(key_file).get(api)
    except KeyFileError as e:
        raise BackendError(str(e)) from None


class HTTPBackend:
    """Images from a running ganserve server (``ganserve serve``)."""

    def __init__(
        self,
        inference_url: str = DEFAULT_INFERENCE,
        management_url: str = DEFAULT_MANAGEMENT,
        key_file: str | Path | None = None,
        timeout: float = 120.0,
    ) -> None:
        from ganserve.serving.client import Client

        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.key_file = Path(key_file) if key_file else None
        self.timeout = timeout
        self.label = f"server {self.inference_url}"
        # The serving client does the transport: keys re-read from the key file when it changes or a key is
        # refused, and a 503 / 507 (queue full, worker died) retried once, which is safe as requests are pure.
        self._client = Client(self.inference_url, self.management_url, key_file=self.key_file, timeout=timeout)

    def _call(self, method: str, url: str, api: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        import requests

        from ganserve.serving.client import KeyFileError

        try:
            resp = self._client.request(method, url, api, **kwargs)
        except KeyFileError as e:
            raise BackendError(str(e)) from None
        except requests.ConnectionError:
            base = self.inference_url if api == "inference" else self.management_url
            raise BackendError(f"cannot reach the server at {base}: is `ganserve serve` running?") from None
        except requests.Timeout:
            raise BackendError(f"the server did not answer within {self.timeout:g} s") from None
        if resp.status_code in ok:
            return resp
        raise _error(resp)

    def models(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            params = {"limit": 100, **({"next_page_token": token} if token else {})}
            data = self._call("GET", f"{self.management_url}/models", "management", params=params).json()
            names.extend(m["modelName"] for m in data.get("models", []))
            token = data.get("nextPageToken")
            if not token:
                return names

    def describe(self, name: str) -> ModelInfo:
        url = f"{self.management_url}/models/{name}"
        data = self._call("GET", url, "management", params={"customized": "true"}).json()
        entries = data if isinstance(data, list) else [data]
        if not entries:
            raise BackendError(f"the server has no description of model '{name}'", "model")
        entry = next((e for e in entries if e.get("isDefaultVersion")), entries[0])
        desc = entry.get("customizedMetadata") or {}
        if isinstance(desc, str):
            try:
                desc = json.loads(desc)
            except ValueError:
                desc = {}
        info = ModelInfo.from_description(name, desc if isinstance(desc, dict) else {})
        info.version = info.version or str(entry.get("modelVersion") or "")
        return info

    def generate(self, name: str, request: dict[str, Any]) -> list[Picture]:
        resp = self._call(
            "POST", f"{self.inference_url}/predictions/{name}", "inference", json={**request, "format": "json"}
        )
        return decode_body(resp.content, resp.headers.get("Content-Type", ""))

    def generate_many(self, name: str, requests: list[dict[str, Any]]) -> list[list[Picture]]:
        """Several requests in parallel (TorchServe batches them across its workers)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, max(len(requests), 1))) as pool:
            return list(pool.map(lambda r: self.generate(name, r), requests))

    def project(self, name: str, request: dict[str, Any], progress: Any = None) -> Picture:
        """A ``project`` request runs as a job on the server: submit (202 + id), poll with progress, take the answer
        it stored (the same pixels and parameters as a plain request)."""
        import time

        url = f"{self.inference_url}/predictions/{name}"
        submitted = self._call("POST", url, "inference", ok=(202,), json={**request, "format": "json"})
        job = submitted.json()["job"]
        while True:
            resp = self._call("POST", url, "inference", ok=(200, 202), json={"job": job})
            if resp.status_code != 202:
                break
            step = resp.json().get("progress") or {}
            if progress is not None and step.get("steps"):
                progress(int(step["step"]), int(step["steps"]))
            time.sleep(0.25)
        (pic,) = decode_body(resp.content, resp.headers.get("Content-Type", ""))
        return pic


def _error(resp: Any) -> BackendError:
    """A readable error from a non-200 answer: ganserve's {"field", "message"}, TorchServe's {"code", "message"}."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    from ganserve.serving.client import token_refused, worth_retrying

    if resp.status_code in (401, 403) or token_refused(resp):
        return BackendError(
            f"the server refused the request ({resp.status_code}, token authorisation): check the key file "
            "(`ganserve serve` prints its path; --key-file)"
        )
    if worth_retrying(resp):  # still so after the client's retry
        what = "its queue for this model is full" if resp.status_code == 503 else "the worker serving it stopped"
        return BackendError(f"the server is busy ({resp.status_code}: {what}); try again in a moment")
    if isinstance(data, dict) and "message" in data:
        if resp.status_code == 400 and "field" in data:
            return BackendError(str(data["message"]), str(data.get("field") or ""))
        return BackendError(f"server error {resp.status_code}: {data['message']}")
    text = (resp.text or "").strip().splitlines()
    return BackendError(f"server error {resp.status_code}: {text[0][:200] if text else resp.reason}")
