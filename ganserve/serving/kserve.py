"""The model-store layout KServe's TorchServe predictor reads: ``config/config.properties`` and ``model-store/*.mar``
under the InferenceService's storageUri (mounted at /mnt/models).

The archives are the same ones ``ganserve serve`` builds. Inside the pod TorchServe listens on 0.0.0.0:8085 (KServe's
agent and queue proxy sit in front of it), token authorisation is left to the cluster's ingress, and
``model_snapshot`` tells TorchServe which archives to load with which workers and batching.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ganserve.serving.config import NO_URL_ALLOWED
from ganserve.serving.store import ArchiveOptions, build_archive

KSERVE_PORT = 8085
MOUNT = "/mnt/models"


def kserve_properties(models: dict[str, ArchiveOptions]) -> dict[str, str]:
    snapshot = {
        "name": "startup.cfg",
        "modelCount": len(models),
        "models": {
            name: {
                "1.0": {
                    "defaultVersion": True,
                    "marName": f"{name}.mar",
                    "minWorkers": o.min_workers,
                    "maxWorkers": o.max_workers,
                    "batchSize": o.batch_size,
                    "maxBatchDelay": o.max_batch_delay_ms,
                    "responseTimeout": o.response_timeout_s,
                }
            }
            for name, o in models.items()
        },
    }
    return {
        "inference_address": f"http://0.0.0.0:{KSERVE_PORT}",
        "management_address": f"http://0.0.0.0:{KSERVE_PORT}",
        "metrics_address": "http://0.0.0.0:8082",
        "grpc_inference_port": "7070",
        "grpc_management_port": "7071",
        "enable_metrics_api": "true",
        "metrics_mode": "prometheus",
        "model_metrics_auto_detect": "true",
        "number_of_netty_threads": "4",
        "job_queue_size": "100",
        "enable_envvars_config": "true",
        "install_py_dep_per_model": "false",  # ganserve comes with the image (deploy/kserve/Dockerfile)
        "decode_input_request": "false",  # bodies reach the handler as sent; ganserve.serving.bodies reads them
        "enable_model_api": "false",
        # no workflow or model from any URL (the workflow API has no switch; see ganserve.serving.config)
        "allowed_urls": NO_URL_ALLOWED,
        "disable_token_authorization": "true",  # the cluster's ingress authenticates; KServe's agent sends no token
        "model_store": f"{MOUNT}/model-store",
        "model_snapshot": json.dumps(snapshot),
    }


def write_layout(
    out_dir: str | os.PathLike,
    checkpoints: dict[str, str | os.PathLike],
    options: ArchiveOptions | None = None,
) -> Path:
    """Build ``out_dir/model-store/NAME.mar`` for each checkpoint and ``out_dir/config/config.properties``."""
    out = Path(out_dir)
    options = options or ArchiveOptions()
    for name, ckpt in checkpoints.items():
        build_archive(ckpt, out / "model-store", name=name, options=options)
    (out / "config").mkdir(parents=True, exist_ok=True)
    props = kserve_properties({name: options for name in checkpoints})
    (out / "config" / "config.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return out


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    props = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props
