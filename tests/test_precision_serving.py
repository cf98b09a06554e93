"""Inference precision beyond `ganserve sample`: `serve` (through the archive's handler config), `export --precision`,
and which onnxruntime execution provider a graph backend runs on."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import yaml

import ganserve
from ganserve.cli import main
from ganserve.images import read_png_params
from ganserve.serving.service import SampleService
from ganserve.serving.store import ArchiveOptions, build_archive
from tests.family_fixtures import make_tiny_biggan, save_tiny

SEEDS = "0-5"


def cli_images(tmp_path, model, precision: str) -> np.ndarray:
    out = tmp_path / f"{precision}.npy"
    assert main(["sample", "--model", str(model), "--seeds", SEEDS, "--precision", precision, "--out", str(out)]) == 0
    return np.load(out)


@pytest.mark.parametrize("precision", ["bf16", "mixed"])
def test_the_service_at_a_precision_gives_the_pixels_of_sample(tiny_path, tmp_path, precision):
    service = SampleService.from_checkpoint(str(tiny_path), precision=precision)
    (resp,) = service.handle_batch([{"seeds": SEEDS, "format": "npy"}])
    assert resp.status == 200
    images = np.load(io.BytesIO(resp.body))
    assert np.array_equal(images, cli_images(tmp_path, tiny_path, precision))
    assert not np.array_equal(images, cli_images(tmp_path, tiny_path, "fp32"))  # it really ran in half precision
    (png,) = service.handle_batch([{"seeds": [3]}])
    assert read_png_params(png.body)["precision"] == precision
    assert service.describe()["precision"] == precision


class _Context:
    """The parts of TorchServe's Context that ``initialize`` reads."""

    def __init__(self, model_dir, handler_cfg: dict) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.model_yaml_config = {"handler": handler_cfg}
        self.model_name = "tiny"


def test_the_handler_takes_precision_from_the_archive_config(tiny_path, tmp_path):
    from ganserve.handlers.generator_handler import initialize

    options = ArchiveOptions(precision="bf16")
    cfg = options.model_config(tiny_path.name)["handler"]
    assert cfg["precision"] == "bf16"
    service = initialize(_Context(tiny_path.parent, cfg))
    (resp,) = service.handle_batch([{"seeds": SEEDS, "format": "npy"}])
    assert np.array_equal(np.load(io.BytesIO(resp.body)), cli_images(tmp_path, tiny_path, "bf16"))
    with pytest.raises(ValueError, match=r"handler\.precision: unknown precision 'fp8'"):
        initialize(_Context(tiny_path.parent, {**cfg, "precision": "fp8"}))


def test_the_archive_carries_the_precision(tiny_path, tmp_path):
    mar = build_archive(tiny_path, tmp_path, name="tiny", options=ArchiveOptions(precision="fp16"))
    with zipfile.ZipFile(mar) as z:
        config = yaml.safe_load(z.read("model-config.yaml"))
    assert config["handler"]["precision"] == "fp16"


def test_serve_refuses_bad_precisions_naming_the_flag(tiny_path, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--models", str(tiny_path), "--precision", "fp8"])
    assert "--precision" in capsys.readouterr().err
    assert main(["serve", "--models", str(tiny_path), "--backend", "onnx", "--precision", "fp16",
                 "--workdir", str(tmp_path / "w")]) == 2  # fmt: skip
    assert "--precision fp16 applies to --backend eager" in capsys.readouterr().err
    biggan = save_tiny(tmp_path, "tiny-biggan", make_tiny_biggan())
    out = tmp_path / "kserve"
    assert main(["serve", "--models", str(biggan), "--precision", "mixed", "--write-kserve", str(out)]) == 2
    err = capsys.readouterr().err
    assert "precision" in err and "no mixed precision" in err and not out.exists()


def test_serve_writes_the_precision_into_the_kserve_archives(tiny_path, tmp_path):
    out = tmp_path / "kserve"
    assert main(["serve", "--models", str(tiny_path), "--precision", "bf16", "--write-kserve", str(out)]) == 0
    (mar,) = (out / "model-store").glob("*.mar")
    with zipfile.ZipFile(mar) as z:
        assert yaml.safe_load(z.read("model-config.yaml"))["handler"]["precision"] == "bf16"


@pytest.fixture(scope="module")
def onnx16(tiny_path, tmp_path_factory):
    """`ganserve export --precision fp16` of the tiny model, exported once for the module."""
    out = tmp_path_factory.mktemp("export") / "onnx16"
    assert main(["export", str(tiny_path), "--format", "onnx", "--precision", "fp16", "--out", str(out)]) == 0
    return out


def test_export_precision_fp16_is_the_fp16_flag(onnx16, tiny_path, tmp_path, capsys):
    from ganserve.backends import load_backend

    manifest = json.loads((onnx16 / "ganserve-export.json").read_text())
    assert manifest["fp16"] and manifest["graphs"]["synthesis"]["dtype"] == "float16"
    G = load_backend("onnx", onnx16)
    params, info = G.sample(seeds=[1]).params[0], ganserve.sampling.describe(G)
    assert params["precision"] == "fp16" and info["precision"] == "fp16"  # recorded like `sample --precision`
    assert info["runtime"]["provider"] == "CPUExecutionProvider"  # no CUDA here: which provider ran is said
    capsys.readouterr()
    for argv, flag in [(["--precision", "bf16"], "--precision bf16"), (["--fp16", "--precision", "fp32"], "--fp16")]:
        assert main(["export", str(tiny_path), "--format", "onnx", "--out", str(tmp_path / "x"), *argv]) == 2
        assert flag in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tiny_path), "--format", "onnx", "--out", str(tmp_path / "x"), "--precision", "fp8"])
    assert "--precision" in capsys.readouterr().err


def test_an_eager_archive_export_takes_any_precision(tiny_path, tmp_path):
    mar = tmp_path / "tiny.mar"
    assert main(["export", str(tiny_path), "--format", "mar", "--precision", "mixed", "--out", str(mar)]) == 0
    with zipfile.ZipFile(mar) as z:
        assert yaml.safe_load(z.read("model-config.yaml"))["handler"]["precision"] == "mixed"


@pytest.mark.parametrize(
    ("device", "available", "chosen"),
    [
        ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ("cuda:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
         ["CUDAExecutionProvider", "CPUExecutionProvider"]),
        ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),  # onnxruntime without -gpu
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),  # a CPU worker stays
    ],
)  # fmt: skip
def test_onnx_provider_choice(monkeypatch, device, available, chosen):
    import onnxruntime

    from ganserve.export.onnx import providers_for

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
    assert providers_for(device) == chosen


def test_describe_reports_the_session_provider(onnx16, monkeypatch):
    """What describe says is the session's own provider list, not what was asked for."""
    import onnxruntime

    from ganserve.export import load_exported

    real = onnxruntime.InferenceSession

    class Session(real):  # stands in for a CUDA session: the providers onnxruntime actually registered
        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    info = ganserve.sampling.describe(load_exported(onnx16))
    assert info["runtime"] == {"backend": "onnx", "graph_precision": "fp16", "provider": "CUDAExecutionProvider",
                               "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}  # fmt: skip
