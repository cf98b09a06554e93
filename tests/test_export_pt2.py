"""torch.export (.pt2) through the CLI: parity, dynamic batch, the pt2 backend; plus the bad-input errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ganserve
import ganserve.export.onnx
from ganserve.backends import load_backend
from ganserve.cli import main
from ganserve.export import get_exporter, read_manifest
from ganserve.export.parity import FP32_TOLERANCE, measure
from ganserve.export.pt2 import Pt2Runner
from ganserve.sampling import sample


@pytest.fixture(scope="module")
def cli_export(tiny_path, tmp_path_factory):
    """`ganserve export tiny --format pt2` run once in-process: (output folder, what it printed)."""
    out = tmp_path_factory.mktemp("pt2") / "tiny-pt2"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["export", str(tiny_path), "--format", "pt2", "--out", str(out)])
    assert rc == 0
    return out, stdout.getvalue()


def test_cli_prints_files_sizes_and_parity(cli_export):
    out, printed = cli_export
    assert f"wrote {out}" in printed
    for name in ("mapping.pt2", "synthesis.pt2", "constants.safetensors", "ganserve-export.json"):
        size = (out / name).stat().st_size
        assert size > 0 and name in printed
    assert "parity vs eager PyTorch (fp32" in printed
    assert "synthesis  batch 1:" in printed and "batch 8:" in printed
    assert read_manifest(out)["format"] == "pt2"


def test_pt2_parity_and_dynamic_batch(cli_export, tiny_path):
    out, _ = cli_export
    eager = ganserve.load(tiny_path)
    specs = {s.name: s for s in get_exporter("stylegan2").graphs(eager)}
    for graph in ("mapping", "synthesis"):
        errors = measure(specs[graph], Pt2Runner(out / f"{graph}.pt2"), (1, 3, 8, 13), seed=99)
        assert max(errors.values()) <= FP32_TOLERANCE, (graph, errors)


def test_pt2_backend_gives_eager_images(cli_export, tiny_path):
    out, _ = cli_export
    eager, backend = ganserve.load(tiny_path), load_backend("pt2", out)
    # On the CPU in fp32 the program's layers are ganserve's fixed kernels: a batch of one is not padded (that it
    # gives the same bits as in a larger batch is tests/test_batch_invariance.py's claim, at batch 1 too).
    assert backend.pad_batch_one is False
    for req in [{"seeds": "0-5", "truncation_psi": 0.7}, {"seeds": [2], "noise_mode": "random"}]:
        a, b = sample(eager, req).images.astype(int), sample(backend, req).images.astype(int)
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, nothing written


def _run(capsys, *args):
    rc = main(["export", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


def test_unknown_model(capsys, tmp_path):
    rc, err = _run(capsys, "no-such-model", "--format", "onnx", "--out", str(tmp_path / "x"))
    assert rc == 2 and "unknown model 'no-such-model'" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_unknown_format(capsys, tiny_path, tmp_path):
    rc, err = _run(capsys, str(tiny_path), "--format", "tflite", "--out", str(tmp_path / "x"))
    assert rc == 2 and "unknown format 'tflite'" in err and "onnx, pt2, mar" in err and "\n" not in err


def test_output_not_writable(capsys, tiny_path, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, err = _run(capsys, str(tiny_path), "--format", "onnx", "--out", str(blocker / "sub" / "x"))
    assert rc == 2 and "cannot write to" in err and "not a directory" in err and "\n" not in err


def test_existing_output_needs_force(capsys, tiny_path, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("old")
    rc, err = _run(capsys, str(tiny_path), "--format", "pt2", "--out", str(tmp_path / "x"))
    assert rc == 2 and "already exists (pass --force" in err and "\n" not in err
    assert (tmp_path / "x" / "keep").read_text() == "old"


def test_backend_flag_is_for_mar_only(capsys, tiny_path, tmp_path):
    rc, err = _run(capsys, str(tiny_path), "--format", "onnx", "--backend", "onnx", "--out", str(tmp_path / "x"))
    assert rc == 2 and "--format mar only" in err


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_failed_export_leaves_nothing_half_written(capsys, tiny_path, tmp_path, monkeypatch, interrupt):
    """A failure (or Ctrl-C) after the first file is written: no output, no temp files, an old output untouched."""

    def half_then_fail(spec, path, **_):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise interrupt("stopped")

    # the onnx format's declaration, with its export function replaced (the registry reads FORMAT at each lookup)
    failing = dataclasses.replace(ganserve.export.onnx.FORMAT, export_graph=half_then_fail)
    monkeypatch.setattr(ganserve.export.onnx, "FORMAT", failing)
    out = tmp_path / "out"
    with pytest.raises(interrupt):
        ganserve.export.export_graphs(ganserve.load(tiny_path), "onnx", out)
    assert os.listdir(tmp_path) == []
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(interrupt):
        ganserve.export.export_graphs(ganserve.load(tiny_path), "onnx", out, force=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and (out / "keep").read_text() == "old"


def test_registry_names_the_exportable_families(tiny_path):
    with pytest.raises(ValueError, match=r"no exporter for family 'dcgan' \(exportable: .*stylegan2"):
        get_exporter("dcgan")
    assert torch.is_tensor(get_exporter("stylegan2").constants(ganserve.load(tiny_path))["w_avg"])


def test_cli_mar_eager_archive(capsys, tiny_path, tmp_path):
    import zipfile

    import yaml

    rc = main(["export", str(tiny_path), "--format", "mar", "--out", str(tmp_path / "store"), "--batch-size", "4"])
    assert rc == 0 and f"wrote {tmp_path / 'store' / 'tiny.mar'}" in capsys.readouterr().out
    with zipfile.ZipFile(tmp_path / "store" / "tiny.mar") as z:
        config = yaml.safe_load(z.read("model-config.yaml"))
        assert "tiny.safetensors" in z.namelist()
    assert config["batchSize"] == 4 and config["handler"]["backend"] == "eager"
    assert os.listdir(tmp_path / "store") == ["tiny.mar"]
    rc, err = _run(capsys, str(tiny_path), "--format", "mar", "--backend", "tf", "--out", str(tmp_path / "store2"))
    assert rc == 2 and "unknown backend 'tf'" in err


def test_loading_a_program_in_a_fresh_process_finds_every_ganserve_op():
    """A cached program is loaded by a process that never exported (a TorchServe worker, `sample --backend pt2`): the
    pt2 loader alone must register every ganserve:: op an exporter puts into a program."""
    code = (
        "import torch, ganserve.export.pt2\n"
        "ops = ('vq_nearest', 'modulated_conv2d', 'invariant_linear', 'invariant_conv2d',\n"
        "       'invariant_conv_transpose2d')\n"
        "for op in ops:\n"
        "    getattr(torch.ops.ganserve, op).default\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
