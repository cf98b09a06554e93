"""TorchServe's config.properties, written from a dataclass. Safe defaults: loopback only, token authorisation on with
keys that stay valid for the server's life, nothing registered from any URL or path (models or workflows), request
bodies handed to ganserve's handler as the bytes the client sent, Prometheus metrics on loopback."""

from __future__ import annotations

import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from ganserve.serving.bodies import MAX_BODY_BYTES

# TorchServe fetches whatever an API names (POST /models or /workflows ?url=http://... or file://...) when the URL
# matches one of ``allowed_urls`` (default: any file:// or http(s):// URL). The model API can be switched off, the
# workflow API cannot: with the management key, a workflow archive from a URL ran its handler in a new worker. A
# pattern that matches no string allows no URL at all; archives named by file name are looked up in the stores, which
# are private folders holding only what ganserve put there (the workflow store stays empty).
NO_URL_ALLOWED = "(?!)"

# TorchServe expires its keys 60 minutes after start unless told otherwise (token_expiration_min, minutes, a double)
# and nothing renews them: from then on every call gets 400. Ten years is "the server's life" and stays far from
# java.time.Instant's overflow. The key file still shows the date, and clients re-read it on every refusal.
KEY_LIFETIME_MIN = 10 * 365 * 24 * 60

# The body limit has one source, ganserve.serving.bodies.MAX_BODY_BYTES (1 MiB): the handler and ganserve's front
# (ganserve.serving.front) both refuse above it with the same JSON 413. TorchServe's own max_request_size stays above
# it, so its frontend, which answers an empty 413 before any handler runs, never sees a body the front let through;
# twice the limit leaves room for gRPC, which reaches TorchServe directly and meets the handler's JSON 413 first.
TORCHSERVE_MAX_REQUEST_BYTES = 2 * MAX_BODY_BYTES


# TorchServe's own log4j2.xml logs the frontend at DEBUG, twice into ts_log.log (a logger and the root both write it)
# and once more to the console: ~20 synchronous lines per request. This one keeps every file and what matters in
# them (warnings and errors, start-up, the access log, the workers' output with their tracebacks, metrics) and drops
# the per-request chatter of the worker threads.
def _rolling(name: str, folder: str, pattern: str) -> str:
    """A log4j2 file appender that rolls over at 100 MB and keeps 5 files, as TorchServe's own do."""
    path = f"${{env:{folder}:-logs}}/{name}"
    return (f'<RollingFile name="{name}" fileName="{path}.log" filePattern="{path}.%i.log.gz">'
            f'<PatternLayout pattern="{pattern}"/><Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>'
            '<DefaultRolloverStrategy max="5"/></RollingFile>')  # fmt: skip


_FULL, _SHORT = "%d{ISO8601} [%-5p] %t %c - %m%n", "%d{ISO8601} - %m%n"
LOG4J2_XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT"><PatternLayout pattern="{_FULL}"/></Console>
    {_rolling("access_log", "LOG_LOCATION", _SHORT)}
    {_rolling("model_log", "LOG_LOCATION", _FULL)}
    {_rolling("model_metrics", "METRICS_LOCATION", _SHORT)}
    {_rolling("ts_log", "LOG_LOCATION", _FULL)}
    {_rolling("ts_metrics", "METRICS_LOCATION", _SHORT)}
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="info" additivity="false"><AppenderRef ref="access_log"/></Logger>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="MODEL_LOG" level="info" additivity="false"><AppenderRef ref="model_log"/></Logger>
    <Logger name="MODEL_METRICS" level="info" additivity="false"><AppenderRef ref="model_metrics"/></Logger>
    <Logger name="TS_METRICS" level="info" additivity="false"><AppenderRef ref="ts_metrics"/></Logger>
    <Logger name="org.pytorch.serve" level="info" additivity="false">
      <AppenderRef ref="ts_log"/><AppenderRef ref="STDOUT"/></Logger>
    <Logger name="org.pytorch.serve.wlm.WorkerThread" level="warn"/>
    <Logger name="org.pytorch.serve.wlm.BatchAggregator" level="warn"/>
    <Logger name="org.pytorch.serve.wlm.WorkerLifeCycle" level="warn"/>
    <Logger name="org.pytorch.serve.job" level="warn"/>
    <Root level="info"><AppenderRef ref="STDOUT"/><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


def free_port(host: str = "127.0.0.1", exclude: Collection[int] = ()) -> int:
    """A port the OS calls free now, other than ``exclude`` (ports already given to the same server but not bound
    yet: the OS may hand one of them out again)."""
    held: list[socket.socket] = []
    try:
        while True:
            s = socket.socket()
            held.append(s)
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in exclude:
                return port
    finally:
        for s in held:
            s.close()


@dataclass
class ServerConfig:
    model_store: Path
    host: str = "127.0.0.1"
    inference_port: int = 8080  # the public inference port: ganserve's front when ``upstream_port`` is set
    # TorchServe's own inference port behind the front, on loopback; None: TorchServe listens on inference_port itself
    upstream_port: int | None = None
    management_port: int = 8081
    metrics_port: int = 8082
    # The metrics endpoint has no authentication in TorchServe: it stays on loopback whatever ``host`` is.
    metrics_host: str = "127.0.0.1"
    grpc_inference_port: int = 7070
    grpc_management_port: int = 7071
    workflow_store: Path | None = None  # None: beside the model store, empty (no workflow is ever registered)
    auth: bool = True
    token_expiration_min: float = KEY_LIFETIME_MIN
    workers: int = 1
    models: str = "all"  # what to load at start: "all" or "a.mar,b.mar"
    response_timeout_s: int = 120
    jvm_heap_mb: int = 512
    netty_threads: int = 0  # 0: TorchServe's default (one per core)
    job_queue_size: int = 100  # per model; a burst beyond it gets the frontend's 503
    log_config: Path | None = None  # a log4j2.xml (LOG4J2_XML); None keeps TorchServe's own
    extra: dict[str, str] = field(default_factory=dict)  # any other TorchServe key, written last

    def __post_init__(self) -> None:
        if self.workflow_store is None:
            self.workflow_store = Path(self.model_store).parent / "workflow-store"

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.inference_port}"

    @property
    def upstream_url(self) -> str:
        """Where TorchServe's inference API listens: behind the front on loopback, or the public URL without one."""
        return f"http://127.0.0.1:{self.upstream_port}" if self.upstream_port else self.inference_url

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_host}:{self.metrics_port}"

    def properties(self) -> dict[str, str]:
        props = {
            "inference_address": self.upstream_url,
            "management_address": self.management_url,
            "metrics_address": self.metrics_url,
            "grpc_inference_address": self.host,
            "grpc_management_address": self.host,
            "grpc_inference_port": str(self.grpc_inference_port),
            "grpc_management_port": str(self.grpc_management_port),
            "model_store": str(Path(self.model_store).resolve()),
            "workflow_store": str(Path(self.workflow_store).resolve()),
            "allowed_urls": NO_URL_ALLOWED,
            "load_models": self.models,
            "default_workers_per_model": str(self.workers),
            "default_response_timeout": str(self.response_timeout_s),
            "metrics_mode": "prometheus",
            "model_metrics_auto_detect": "true",
            "enable_model_api": "false",  # no registering or deleting models over HTTP or gRPC
            "disable_token_authorization": "false" if self.auth else "true",
            "token_expiration_min": repr(float(self.token_expiration_min)),
            "install_py_dep_per_model": "false",
            "enable_envvars_config": "false",
            # The Python worker would json.loads application/json bodies itself (and hand over the bytes when that
            # fails, or a dict with duplicate keys merged): off, so ganserve.serving.bodies reads every body strictly.
            "decode_input_request": "false",
            "max_request_size": str(TORCHSERVE_MAX_REQUEST_BYTES),
            "max_response_size": str(64 * 1024 * 1024),
            "job_queue_size": str(self.job_queue_size),
            "vmargs": f"-Xmx{self.jvm_heap_mb}m -XX:+UseSerialGC"
            + (f" -Dlog4j.configurationFile={Path(self.log_config).resolve()}" if self.log_config else ""),
        }
        if self.netty_threads:
            props["number_of_netty_threads"] = str(self.netty_threads)
        return {**props, **self.extra}

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path
