"""TorchServe's config.properties, written from a dataclass. Safe defaults: loopback only, token authorisation on,
the model-registration API off, Prometheus metrics."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServerConfig:
    model_store: Path
    host: str = "127.0.0.1"
    inference_port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    auth: bool = True
    workers: int = 1
    models: str = "all"  # what to load at start: "all" or "a.mar,b.mar"
    response_timeout_s: int = 120
    max_request_mb: int = 2
    jvm_heap_mb: int = 512

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.inference_port}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}"

    def properties(self) -> dict[str, str]:
        size = str(self.max_request_mb * 1024 * 1024)
        return {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_address": self.host,
            "grpc_management_address": self.host,
            "grpc_inference_port": str(self.grpc_inference_port),
            "grpc_management_port": str(self.grpc_management_port),
            "model_store": str(Path(self.model_store).resolve()),
            "load_models": self.models,
            "default_workers_per_model": str(self.workers),
            "default_response_timeout": str(self.response_timeout_s),
            "metrics_mode": "prometheus",
            "model_metrics_auto_detect": "true",
            "enable_model_api": "false",  # no registering models (from URLs or otherwise) over HTTP
            "disable_token_authorization": "false" if self.auth else "true",
            "install_py_dep_per_model": "false",
            "enable_envvars_config": "false",
            "max_request_size": size,
            "max_response_size": str(64 * 1024 * 1024),
            "vmargs": f"-Xmx{self.jvm_heap_mb}m -XX:+UseSerialGC",
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path
