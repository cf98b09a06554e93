"""Model archives (.mar) for TorchServe, built with torch-model-archiver: the handler, the checkpoint (or exported
graphs as extra files) and a model-config.yaml.

TorchServe reads camelCase keys from model-config.yaml (batchSize, maxBatchDelay, minWorkers, maxWorkers,
responseTimeout, deviceType) and silently ignores others; the ``handler`` section is ours and reaches the handler as
``context.model_yaml_config["handler"]``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Found through the import system (the folder handlers/ installs as ganserve.handlers), so editable and regular
# installs both work; find_spec imports only the tiny package __init__, not the handler and torch.
HANDLER_FILE = Path(importlib.util.find_spec("ganserve.handlers.generator_handler").origin)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ArchiveOptions:
    batch_size: int = 8  # requests TorchServe gathers into one handler call
    max_batch_delay_ms: int = 50
    min_workers: int = 1
    max_workers: int = 1
    response_timeout_s: int = 120
    device_type: str | None = None  # "cpu" or "gpu"; None lets TorchServe decide
    backend: str = "eager"
    max_images: int = 64  # per request
    generator_batch_size: int = 16  # rows per generator call inside the handler
    threads: int | None = None
    precision: str = "fp32"  # ganserve.precision; the eager backend only (graph backends run as exported)
    handler_extra: dict[str, Any] = field(default_factory=dict)

    def model_config(self, checkpoint_name: str) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "minWorkers": self.min_workers,
            "maxWorkers": self.max_workers,
            "batchSize": self.batch_size,
            "maxBatchDelay": self.max_batch_delay_ms,
            "responseTimeout": self.response_timeout_s,
            "handler": {
                "checkpoint": checkpoint_name,
                "backend": self.backend,
                "max_images": self.max_images,
                "batch_size": self.generator_batch_size,
                "precision": self.precision,
                **({"threads": self.threads} if self.threads else {}),
                **self.handler_extra,
            },
        }
        if self.device_type:
            cfg["deviceType"] = self.device_type
        return cfg


def archiver_executable() -> str:
    exe = Path(sys.executable).parent / "torch-model-archiver"
    found = str(exe) if exe.exists() else shutil.which("torch-model-archiver")
    if not found:
        raise FileNotFoundError("torch-model-archiver not found: pip install 'ganserve[serve]'")
    return found


def build_archive(
    checkpoint: str | os.PathLike,
    export_dir: str | os.PathLike,
    *,
    name: str | None = None,
    version: str = "1.0",
    options: ArchiveOptions | None = None,
    extra_files: list[str | os.PathLike] = (),
    force: bool = True,
) -> Path:
    """Write ``export_dir/NAME.mar`` atomically and return its path."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    name = name or checkpoint.stem
    if not NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must be letters, digits, '.', '_' or '-'")
    options = options or ArchiveOptions()
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    target = export_dir / f"{name}.mar"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists (use force)")
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".build-") as tmp:
        config_path = Path(tmp) / "model-config.yaml"
        config_path.write_text(yaml.safe_dump(options.model_config(checkpoint.name), sort_keys=False))
        files = [str(checkpoint), *(str(f) for f in extra_files)]
        cmd = [
            archiver_executable(),
            "--model-name", name,
            "--version", version,
            "--handler", str(HANDLER_FILE),
            "--extra-files", ",".join(files),
            "--config-file", str(config_path),
            "--export-path", tmp,
            "--archive-format", "default",
            "--force",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed for {name}: {proc.stderr.strip() or proc.stdout.strip()}")
        os.replace(Path(tmp) / f"{name}.mar", target)
    return target
