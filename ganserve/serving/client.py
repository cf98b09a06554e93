"""A small HTTP client for a ganserve TorchServe: predictions, the model list, model descriptions.

Keys come from arguments or from TorchServe's key_file.json, which is re-read whenever it changes and after a key
is refused (TorchServe rewrites it when keys are regenerated through its token API). A 503 (queue full) or
TorchServe's "Worker died." (507, sometimes 500) is retried once after a short wait: requests are pure, so the same
body gives the same pixels whichever worker answers it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import requests

RETRY_STATUSES = (503, 507)
MAX_RETRY_WAIT_S = 5.0


class KeyFileError(RuntimeError):
    pass


def read_keys(key_file: str | os.PathLike) -> dict[str, str]:
    """{"inference": ..., "management": ..., "API": ...} from TorchServe's key file.

    TorchServe writes {"management": {"key": ..., "expiration time": ...}, "inference": {...}, "API": {...}};
    a plain {"management": "KEY"} is accepted too. TorchServe truncates and rewrites the file in place, so a read
    that lands mid-write is tried again a few times.
    """
    path = Path(key_file)
    for attempt in range(5):
        try:
            data = json.loads(path.read_text())
            break
        except FileNotFoundError:
            raise KeyFileError(f"key file {path} not found (`ganserve serve` prints its path)") from None
        except ValueError as e:
            if attempt == 4:
                raise KeyFileError(f"cannot read key file {path}: {e}") from None
            time.sleep(0.05)
        except OSError as e:
            raise KeyFileError(f"cannot read key file {path}: {e}") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"cannot read key file {path}: not a JSON object")
    keys = {}
    for api, entry in data.items():
        if isinstance(entry, dict):
            entry = entry.get("key")
        if entry:
            keys[api] = str(entry)
    return keys


def token_refused(resp: requests.Response) -> bool:
    """TorchServe 0.12 answers a missing, wrong or expired key with 400 {"type": "InvalidKeyException", ...}."""
    if resp.status_code not in (400, 401, 403):
        return False
    try:
        data = resp.json()
    except ValueError:
        return resp.status_code in (401, 403)
    return isinstance(data, dict) and (
        "InvalidKey" in str(data.get("type", "")) or "Token Authorization failed" in str(data.get("message", ""))
    )


def worth_retrying(resp: requests.Response) -> bool:
    """503 (the frontend's queue is full) and TorchServe's "Worker died." (507, or 500 when the frontend has not yet
    seen the worker's exit code): the request never ran to an answer, and sending it again is safe."""
    if resp.status_code in RETRY_STATUSES:
        return True
    if resp.status_code != 500:
        return False
    try:
        data = resp.json()
    except ValueError:
        return False
    return isinstance(data, dict) and str(data.get("message", "")).strip() == "Worker died."


def retry_wait(resp: requests.Response, default: float) -> float:
    """Seconds to wait before retrying: the server's Retry-After (seconds) when it sends one, capped."""
    try:
        return min(MAX_RETRY_WAIT_S, max(0.0, float(resp.headers.get("Retry-After", default))))
    except ValueError:
        return default


class Client:
    def __init__(
        self,
        inference_url: str,
        management_url: str | None = None,
        *,
        inference_key: str | None = None,
        management_key: str | None = None,
        key_file: str | os.PathLike | None = None,
        timeout: float = 120,
        retries: int = 1,
        retry_wait_s: float = 0.5,
    ) -> None:
        self.inference_url, self.management_url = inference_url.rstrip("/"), (management_url or "").rstrip("/")
        self._explicit = {"inference": inference_key, "management": management_key}
        self.key_file = Path(key_file) if key_file else None
        self.timeout, self.retries, self.retry_wait_s = timeout, retries, retry_wait_s
        self.session = requests.Session()
        self._file_keys: dict[str, str] = {}
        self._file_stamp: tuple[int, int] | None = None

    # ---- keys ----------------------------------------------------------------------------------------------------
    def _reload_keys(self, force: bool = False) -> None:
        if self.key_file is None:
            return
        try:
            st = self.key_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if force or stamp != self._file_stamp or not self._file_keys:
            self._file_keys = read_keys(self.key_file)
            self._file_stamp = stamp

    def key(self, api: str) -> str | None:
        """The key for "inference" or "management": given explicitly, else from the key file."""
        if self._explicit.get(api):
            return self._explicit[api]
        self._reload_keys()
        return self._file_keys.get(api)

    @property
    def inference_key(self) -> str | None:
        return self.key("inference")

    @property
    def management_key(self) -> str | None:
        return self.key("management")

    @staticmethod
    def _auth(key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    # ---- transport -----------------------------------------------------------------------------------------------
    def request(self, method: str, url: str, api: str, *, key: Any = ..., **kw: Any) -> requests.Response:
        """One call with the retries described above. ``key=None`` sends no key; a given key is never reloaded."""
        kw.setdefault("timeout", self.timeout)
        extra_headers = kw.pop("headers", {})
        reloadable = key is ... and self.key_file is not None and not self._explicit.get(api)
        attempt, reloaded = 0, False
        while True:
            headers = {**self._auth(self.key(api) if key is ... else key), **extra_headers}
            resp = self.session.request(method, url, headers=headers, **kw)
            if reloadable and not reloaded and token_refused(resp):
                self._reload_keys(force=True)  # the keys may have been regenerated since the last read
                reloaded = True
                continue
            if attempt < self.retries and worth_retrying(resp):
                attempt += 1
                time.sleep(retry_wait(resp, self.retry_wait_s))
                continue
            return resp

    def predict_raw(self, model: str, body: Any, *, key: Any = ..., **kw: Any) -> requests.Response:
        """POST the body (a dict is sent as JSON; bytes / str as they are) and return the raw response."""
        url = f"{self.inference_url}/predictions/{model}"
        if isinstance(body, (bytes, str)):
            headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
            return self.request("POST", url, "inference", key=key, data=body, headers=headers, **kw)
        return self.request("POST", url, "inference", key=key, json=body, **kw)

    def predict(self, model: str, body: Any) -> requests.Response:
        r = self.predict_raw(model, body)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text}")
        return r

    def ping(self) -> requests.Response:
        return self.request("GET", f"{self.inference_url}/ping", "inference", timeout=30)

    def _management(self, path: str) -> Any:
        r = self.request("GET", f"{self.management_url}{path}", "management", timeout=30)
        r.raise_for_status()
        return r.json()

    def models(self) -> list[str]:
        names, token = [], None
        while True:
            page = self._management("/models" + (f"?next_page_token={token}" if token else ""))
            names += [m["modelName"] for m in page.get("models", [])]
            token = page.get("nextPageToken")
            if not token:
                return names

    def model_info(self, model: str) -> list[dict[str, Any]]:
        return self._management(f"/models/{model}")

    def workers_ready(self, model: str) -> bool:
        try:
            info = self.model_info(model)
        except requests.HTTPError:
            return False
        workers = info[0].get("workers", []) if info else []
        return bool(workers) and all(w.get("status") == "READY" for w in workers)

    def describe(self, model: str) -> dict[str, Any]:
        """The handler's description: family, classes, num_ws, request schema ..."""
        info = self._management(f"/models/{model}?customized=true")
        raw = info[0].get("customizedMetadata", "{}")
        return json.loads(raw) if isinstance(raw, str) else raw

    def metrics(self, metrics_url: str) -> str:
        return self.session.get(f"{metrics_url.rstrip('/')}/metrics", timeout=30).text
