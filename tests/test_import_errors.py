"""``ganserve import`` on files it cannot use: a clear ImportError_ (CLI: exit 2, one line naming the file and what
is wrong), never an IndexError / TypeError / bare key name; release folders are accepted; taming's resolution is never
guessed."""

from __future__ import annotations

import contextlib
import io
import pickle
import subprocess
import sys
import types

import pytest
import torch

import ganserve
from ganserve.importers import IMPORTERS, ImportError_, import_checkpoint
from tests.conftest import make_tiny_generator
from tests.test_importers import _as_persistent, _persistence_module
from tests.test_importers_biggan_taming import (
    VQ,
    lightning_ckpt,
    taming_first_stage,
    taming_transformer,
    tiny_biggan,
    tiny_vqgan,
    vqgan_family,  # noqa: F401 - a fixture
    write_release,
)


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``ganserve import ARGS`` through the CLI's ``main`` in this process: its exit code and what it prints (a
    subprocess would add only a Python and torch start-up; tests/test_cli.py runs the console entry point)."""
    from ganserve.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["import", *args])
        except SystemExit as e:  # argparse's own errors
            code = e.code
    return subprocess.CompletedProcess(["ganserve", "import", *args], code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("source", ["auto", *IMPORTERS])
def test_an_empty_file_is_refused_by_name(tmp_path, source):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ImportError_, match=r"empty\.bin: the file is empty"):
        import_checkpoint(empty, tmp_path / "o.safetensors", source=source)


@pytest.mark.parametrize("source", ["taming", "rosinality", "hf-biggan"])
def test_junk_torch_files_are_refused_by_name(tmp_path, source):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ImportError_, match=r"junk.ckpt: not a loadable weights-only torch file \(.+\)"):
        import_checkpoint(junk, tmp_path / "o.safetensors", source=source)


def test_cli_empty_file_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    proc = _cli(str(tmp_path / "empty.ckpt"), "--from", "taming", "--out", str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "empty.ckpt: the file is empty" in proc.stderr


def _sg2_pickle(path, init_kwargs):
    """A StyleGAN2-ADA-layout pickle of a tiny generator whose G_ema carries ``init_kwargs`` as given."""
    G = make_tiny_generator(3)
    mod = _persistence_module()
    parent = types.ModuleType("torch_utils")
    parent.persistence = mod
    sys.modules.update({"torch_utils": parent, "torch_utils.persistence": mod})
    try:
        net = _as_persistent(mod._reconstruct_persistent_obj, G, "Generator")
        net.state["_init_kwargs"] = init_kwargs
        path.write_bytes(pickle.dumps({"G_ema": net}))
    finally:
        del sys.modules["torch_utils.persistence"], sys.modules["torch_utils"]
    return path


GOOD_KWARGS = {"z_dim": 32, "c_dim": 0, "w_dim": 32, "img_resolution": 16, "img_channels": 3,
               "mapping_kwargs": {"num_layers": 2},
               "synthesis_kwargs": {"channel_base": 256, "channel_max": 32}}  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ([["z_dim", 32]], "G_ema's _init_kwargs is a list, not the constructor's keyword arguments"),
        ({k: v for k, v in GOOD_KWARGS.items() if k != "w_dim"}, "G_ema's _init_kwargs lacks 'w_dim'"),
        ({**GOOD_KWARGS, "img_resolution": "16"}, "_init_kwargs['img_resolution'] must be an integer, got '16'"),
        ({**GOOD_KWARGS, "mapping_kwargs": [2]}, "G_ema's mapping_kwargs is a list"),
        ({**GOOD_KWARGS, "synthesis_kwargs": {"channel_base": 256.5}}, "synthesis_kwargs['channel_base']"),
    ],
)
def test_sg2_ada_bad_init_kwargs_name_the_key(tmp_path, kwargs, fragment):
    src = _sg2_pickle(tmp_path / "net.pkl", kwargs)
    with pytest.raises(ImportError_) as e:
        import_checkpoint(src, tmp_path / "o.safetensors")
    assert fragment in str(e.value) and str(src) in str(e.value)


def test_sg2_ada_good_init_kwargs_import(tmp_path):
    src = _sg2_pickle(tmp_path / "net.pkl", GOOD_KWARGS)
    import_checkpoint(src, tmp_path / "o.safetensors")
    assert ganserve.load(tmp_path / "o.safetensors").config.resolution == 16


def test_cli_missing_key_is_a_sentence(tmp_path):
    src = _sg2_pickle(tmp_path / "net.pkl", {k: v for k, v in GOOD_KWARGS.items() if k != "w_dim"})
    proc = _cli(str(src), "--out", str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"ganserve import: {src}: G_ema's _init_kwargs lacks 'w_dim'"


def test_hf_biggan_release_folder_is_accepted(tmp_path):
    G = tiny_biggan(4)
    folder = write_release(G, tmp_path / "biggan-deep-64").parent
    imported, meta = import_checkpoint(folder, tmp_path / "bg.safetensors")
    assert imported.notes == ["config from config.json beside the file"]
    assert meta["training"]["imported_from"]["file"] == "pytorch_model.bin"
    ours = ganserve.load(tmp_path / "bg.safetensors")
    for k, v in G.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    proc = _cli(str(folder), "--out", str(tmp_path / "cli.safetensors"))
    assert proc.returncode == 0, proc.stderr
    assert "found: hf-biggan checkpoint -> biggan at 64 px" in proc.stdout


def test_a_folder_without_a_release_file_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ImportError_, match=r"stuff: a folder without a release checkpoint in it \(looked for "):
        import_checkpoint(tmp_path / "stuff", tmp_path / "o.safetensors")
    with pytest.raises(ImportError_, match=r"nope\.bin: file not found"):
        import_checkpoint(tmp_path / "nope.bin", tmp_path / "o.safetensors")


def test_non_finite_source_weights_are_refused_by_name(tmp_path):
    G = tiny_biggan(5)
    sd = G.state_dict()
    sd["generator.conv_to_rgb.bias"] = sd["generator.conv_to_rgb.bias"].clone().fill_(float("nan"))
    (tmp_path / "r").mkdir()
    torch.save(sd, tmp_path / "r" / "pytorch_model.bin")
    with pytest.raises(ImportError_, match=r"tensor 'generator\.conv_to_rgb\.bias' holds .* NaN or infinite"):
        import_checkpoint(tmp_path / "r", tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()


def test_taming_first_stage_without_config_asks_for_the_resolution(tmp_path, vqgan_family):  # noqa: F811
    # an f2 first stage trained at 16 px (ch_mult [1, 2]): the old guess (a 16x16 code grid) said 32 px
    src = lightning_ckpt(taming_first_stage(tiny_vqgan(11)), tmp_path / "vq" / "last.ckpt")
    proc = _cli(str(src), "--from", "taming", "--out", str(tmp_path / "vq.safetensors"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not say its image resolution" in proc.stderr and "pass --resolution" in proc.stderr
    assert not (tmp_path / "vq.safetensors").exists()
    proc = _cli(str(tmp_path / "vq"), "--resolution", "16", "--out", str(tmp_path / "vq.safetensors"))  # the folder
    assert proc.returncode == 0, proc.stderr
    assert "vqgan at 16 px" in proc.stdout and "note: resolution 16 from --resolution" in proc.stdout
    assert ganserve.load(tmp_path / "vq.safetensors").first_stage.config.resolution == 16


def test_taming_resolution_from_the_transformer_and_a_contradicting_flag(tmp_path, vqgan_family):  # noqa: F811
    code_len = (VQ["resolution"] >> 1) ** 2
    sd = taming_first_stage(tiny_vqgan(12), "first_stage_model.") | taming_transformer(1, 32, 64, code_len)
    src = lightning_ckpt(sd, tmp_path / "t.ckpt")
    imported, _ = import_checkpoint(src, tmp_path / "t.safetensors")
    assert imported.config["resolution"] == VQ["resolution"]
    with pytest.raises(ImportError_, match="--resolution 32 contradicts the file, which is 16 px"):
        import_checkpoint(src, tmp_path / "t2.safetensors", resolution=32)


@pytest.mark.parametrize("value", ["48", "2", "8192"])
def test_cli_bad_resolution_flag(tmp_path, value):
    (tmp_path / "x.ckpt").write_bytes(b"x")
    proc = _cli(str(tmp_path / "x.ckpt"), "--resolution", value, "--out", str(tmp_path / "o.safetensors"))
    assert proc.returncode == 2 and f"--resolution must be a power of two in [4, 4096], got {value}" in proc.stderr
