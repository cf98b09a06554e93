"""The KServe layout: what `ganserve serve --write-kserve` writes is what KServe's TorchServe predictor reads, and a
real TorchServe loads the models from its model_snapshot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from ganserve.serving.config import free_port
from ganserve.serving.kserve import read_properties
from ganserve.serving.launcher import group_processes
from tests.conftest import ganserve_cmd

REPO = Path(__file__).resolve().parents[1]


def test_layout_written_by_the_cli(tiny_models_dir, tmp_path):
    out = tmp_path / "kserve"
    proc = subprocess.run(
        ganserve_cmd("serve", "--models", "tiny,tiny-cond", "--batch-size", "4", "--workers", "2",
                     "--write-kserve", str(out)),
        capture_output=True, text=True, timeout=180, env={**os.environ, "GANSERVE_CHECKPOINTS": str(tiny_models_dir)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    props = read_properties(out / "config" / "config.properties")
    assert props["inference_address"] == "http://0.0.0.0:8085" and props["model_store"] == "/mnt/models/model-store"
    assert props["enable_model_api"] == "false"
    snapshot = json.loads(props["model_snapshot"])
    assert snapshot["modelCount"] == 2
    for name in ("tiny", "tiny-cond"):
        entry = snapshot["models"][name]["1.0"]
        assert (out / "model-store" / entry["marName"]).is_file()
        assert entry["batchSize"] == 4 and entry["minWorkers"] == 2


def test_inferenceservice_manifest():
    doc = yaml.safe_load((REPO / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    pred = doc["spec"]["predictor"]
    assert doc["kind"] == "InferenceService" and pred["model"]["modelFormat"]["name"] == "pytorch"
    assert pred["minReplicas"] >= 1 and pred["maxReplicas"] > pred["minReplicas"]
    assert pred["scaleMetric"] == "concurrency" and pred["model"]["protocolVersion"] == "v1"


def test_torchserve_loads_the_layout_from_its_model_snapshot(tiny_models_dir, tmp_path):
    out = tmp_path / "kserve"
    subprocess.run(ganserve_cmd("serve", "--models", str(tiny_models_dir / "tiny.safetensors"), "--write-kserve",
                                str(out)), check=True, capture_output=True, timeout=180)  # fmt: skip
    # Run it as the pod would, but on loopback ports and with the store where it lies here.
    props = read_properties(out / "config" / "config.properties")
    port, mport, metrics, g1, g2 = (free_port() for _ in range(5))
    props.update(inference_address=f"http://127.0.0.1:{port}", management_address=f"http://127.0.0.1:{mport}",
                 metrics_address=f"http://127.0.0.1:{metrics}", grpc_inference_port=str(g1),
                 grpc_management_port=str(g2), model_store=str(out / "model-store"))  # fmt: skip
    cfg = tmp_path / "local.properties"
    cfg.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "TEMP": str(tmp_path / "tmp"),
           "LOG_LOCATION": str(tmp_path / "logs"), "METRICS_LOCATION": str(tmp_path / "logs")}  # fmt: skip
    torchserve = str(Path(sys.executable).parent / "torchserve")
    cmd = [torchserve, "--start", "--foreground", "--ncs", "--ts-config", str(cfg)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline, ok = time.monotonic() + 180, False
        while time.monotonic() < deadline and not ok:
            try:
                r = requests.post(f"http://127.0.0.1:{port}/predictions/tiny", json={"seeds": [1]}, timeout=30)
                ok = r.status_code == 200 and r.headers["content-type"] == "image/png"
            except (requests.ConnectionError, requests.Timeout):  # not up, or its worker still loading (busy machine)
                pass
            time.sleep(0.5)
        assert ok
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        end = time.monotonic() + 20
        while group_processes(proc.pid) and time.monotonic() < end:
            time.sleep(0.2)
