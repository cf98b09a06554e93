"""A small HTTP client for a ganserve TorchServe: predictions, the model list, model descriptions."""

from __future__ import annotations

import json
from typing import Any

import requests


class Client:
    def __init__(
        self,
        inference_url: str,
        management_url: str | None = None,
        *,
        inference_key: str | None = None,
        management_key: str | None = None,
        timeout: float = 120,
    ) -> None:
        self.inference_url, self.management_url = inference_url.rstrip("/"), (management_url or "").rstrip("/")
        self.inference_key, self.management_key, self.timeout = inference_key, management_key, timeout
        self.session = requests.Session()

    @staticmethod
    def _auth(key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def predict_raw(self, model: str, body: Any, *, key: str | None = ..., **kw: Any) -> requests.Response:
        """POST the body (a dict is sent as JSON; bytes / str as they are) and return the raw response."""
        headers = self._auth(self.inference_key if key is ... else key)
        if isinstance(body, (bytes, str)):
            headers["Content-Type"] = "application/json"
            return self.session.post(
                f"{self.inference_url}/predictions/{model}", data=body, headers=headers, timeout=self.timeout, **kw
            )
        return self.session.post(
            f"{self.inference_url}/predictions/{model}", json=body, headers=headers, timeout=self.timeout, **kw
        )

    def predict(self, model: str, body: Any) -> requests.Response:
        r = self.predict_raw(model, body)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text}")
        return r

    def _management(self, path: str) -> Any:
        r = self.session.get(f"{self.management_url}{path}", headers=self._auth(self.management_key), timeout=30)
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

    def workers_ready(self, model: str) -> bool:
        try:
            info = self._management(f"/models/{model}")
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
