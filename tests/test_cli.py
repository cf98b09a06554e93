"""The ganserve CLI end to end on tiny checkpoints: its ``main`` in this process (argument parsing, messages, exit
codes, files written), and as a subprocess where the process itself is the point (the console entry point, a missing
optional module, the bench's thread settings). Each subprocess costs a Python and torch start-up (~3 s)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from ganserve.images import make_grid, read_png_params
from ganserve.sampling import sample
from tests.conftest import ganserve_cmd


@dataclass
class CLI:
    env: dict[str, str]  # for subprocesses
    capsys: pytest.CaptureFixture


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def env(tiny_models_dir, tmp_path, monkeypatch, capsys):
    # every CLI run here starts in an empty folder: no test depends on (or writes) files in the repository root
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(tiny_models_dir))
    return CLI(dict(os.environ), capsys)


def run(cli: CLI, *args, ok=True) -> Ran:
    """``ganserve ARGS`` through the CLI's ``main``, in this process."""
    from ganserve.cli import main

    cli.capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = cli.capsys.readouterr()
    assert (code == 0) == ok, err
    return Ran(code, out, err)


def run_process(cli: CLI, *args, ok=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(ganserve_cmd(*args), capture_output=True, text=True, env=cli.env, timeout=120)
    assert (proc.returncode == 0) == ok, proc.stderr
    return proc


def test_sample_grid_png_equals_the_api(env, tmp_path, tiny):
    out = tmp_path / "grid.png"
    proc = run_process(env, "sample", "--model", "tiny", "--seeds", "0-5", "--trunc", "0.7", "--cutoff", "3", "--out",
                       str(out))  # fmt: skip
    assert proc.stdout.splitlines()[0] == str(out)
    grid = np.asarray(Image.open(out).convert("RGB"))
    expected = sample(tiny, seeds="0-5", truncation_psi=0.7, truncation_cutoff=3).images
    assert np.array_equal(grid, make_grid(expected, 3))
    assert len(read_png_params(out.read_bytes())["grid"]) == 6


def test_sample_to_a_directory_with_mixing(env, tmp_path, tiny):
    out = tmp_path / "imgs"
    run(env, "sample", "--model", "tiny", "--seeds", "1,2", "--mix", "7:coarse", "--noise-mode", "random",
        "--out", str(out))  # fmt: skip
    files = sorted(p.name for p in out.iterdir())
    assert files == ["seed0001-mix0007.png", "seed0002-mix0007.png"]
    params = read_png_params((out / files[0]).read_bytes())
    assert params["style_mix"] == {"seeds": [7], "layers": "coarse"} and params["noise_mode"] == "random"
    expected = sample(tiny, seeds=[1], style_mix={"seeds": [7], "layers": "coarse"},
                      noise_mode="random").images[0]  # fmt: skip
    assert np.array_equal(np.asarray(Image.open(out / files[0])), expected)


def test_sample_by_path_interpolation_and_class(env, tmp_path, tiny_cond_path):
    out = tmp_path / "frames.npy"
    run(env, "sample", "--network", str(tiny_cond_path), "--seeds", "3", "--interpolate", "9:4:z", "--class",
        "triangle", "--out", str(out))  # fmt: skip
    assert np.load(out).shape == (4, 16, 16, 3)


def test_list_and_unknown_model(env):
    assert "tiny-cond" in run(env, "sample", "--list").stdout
    proc = run(env, "sample", "--model", "nope", ok=False)
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr and "tiny" in proc.stderr


def test_unknown_model_is_reported_before_the_output_path(env, tmp_path):
    (tmp_path / "samples.png").write_bytes(b"left by the README's example")  # the default --out
    proc = run(env, "sample", "--model", "nope", ok=False)
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr and "exists" not in proc.stderr
    proc = run(env, "sample", "--model", str(tmp_path / "missing.safetensors"), ok=False)
    assert "missing.safetensors: file not found" in proc.stderr
    proc = run(env, "sample", "--model", "tiny", ok=False)  # a model that exists: now the output is the problem
    assert "samples.png exists (pass --force to overwrite it)" in proc.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--psi", "nan"], "truncation_psi"),
        (["--seeds", "5-1"], "seeds"),
        (["--seeds", "0-99"], "limit"),
        (["--mix", "3:everything"], "style_mix.layers"),
        (["--mix", "3"], "invalid --mix (style_mix.layers)"),  # the request's default layers: fine, none at 16 px
        (["--styles", "0-2"], "--styles needs --mix"),
        (["--class", "1"], "unconditional"),
        (["--seeds", "١٢"], "ASCII digits only"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(env, tmp_path, args, fragment):
    proc = run(env, "sample", "--model", "tiny", "--max-images", "64", *args, "--out", str(tmp_path / "x.png"),
               ok=False)  # fmt: skip
    assert proc.returncode == 2
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_mix_layers_are_inclusive_like_the_official_styles_flag(env, tmp_path, tiny):
    """--mix 7:0-2 and StyleGAN2-ADA's --styles 0-2 both copy ws 0, 1 and 2: the dash means the same as in --seeds."""
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    run(env, "sample", "--model", "tiny", "--seeds", "1", "--mix", "7:0-2", "--out", str(a))
    run(env, "sample", "--model", "tiny", "--seeds", "1", "--mix", "7", "--styles", "0-2", "--out", str(b))
    want = sample(tiny, seeds=[1], style_mix={"seeds": [7], "layers": [0, 2]}).images
    assert np.array_equal(np.load(a), want) and np.array_equal(np.load(b), want)
    assert not np.array_equal(want, sample(tiny, seeds=[1], style_mix={"seeds": [7], "layers": [0, 1]}).images)


def test_out_suffixes_and_overwrites(env, tmp_path, tiny):
    gif = tmp_path / "frames.gif"
    run(env, "sample", "--model", "tiny", "--seeds", "3", "--interpolate", "9:4", "--out", str(gif))
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 4
    proc = run(env, "sample", "--model", "tiny", "--seeds", "3", "--out", str(tmp_path / "x.webp"), ok=False)
    assert "unknown suffix '.webp'" in proc.stderr and not (tmp_path / "x.webp").exists()
    png = tmp_path / "one.png"
    png.write_bytes(b"keep me")
    proc = run(env, "sample", "--model", "tiny", "--seeds", "3", "--out", str(png), ok=False)
    assert "exists" in proc.stderr and "--force" in proc.stderr and png.read_bytes() == b"keep me"
    run(env, "sample", "--model", "tiny", "--seeds", "3", "--out", str(png), "--force")
    assert np.array_equal(np.asarray(Image.open(png)), sample(tiny, seeds=[3]).images[0])
    folder = tmp_path / "imgs"
    run(env, "sample", "--model", "tiny", "--seeds", "1,2", "--out", str(folder))
    proc = run(env, "sample", "--model", "tiny", "--seeds", "2,3", "--out", str(folder), ok=False)
    assert "seed0002.png exists" in proc.stderr and not (folder / "seed0003.png").exists()


def test_missing_extra_names_the_pip_command(env, tmp_path):
    """A command whose optional dependency is absent says which extra installs it, without a traceback."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "onnx.py").write_text("raise ModuleNotFoundError(\"No module named 'onnx'\", name='onnx')\n")
    env.env["PYTHONPATH"] = str(blocker)
    proc = run_process(env, "export", "tiny", "--format", "onnx", "--out", str(tmp_path / "o"), ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pip install 'ganserve[export]'" in proc.stderr


def test_bench_sample_prints_rows(env):
    # a subprocess: the bench sets torch's thread count for the process
    proc = run_process(env, "bench", "sample", "--model", "tiny", "--batch-sizes", "1,4", "--repeats", "1", "--json")
    import json

    rows = json.loads(proc.stdout)["rows"]
    assert [r["batch"] for r in rows] == [1, 4] and all(r["images_per_s"] > 0 for r in rows)


def test_bench_sample_times_several_backends_round_robin(tiny_path, monkeypatch, capsys):
    import json

    from ganserve import backends
    from ganserve.benchmarks import sample as bench
    from ganserve.benchmarks.timing import interleaved_median_seconds

    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    assert set(interleaved_median_seconds(fns, repeats=3, warmup=1)) == {"a", "b"}
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then one of each per round, rotating

    monkeypatch.setitem(backends.BACKENDS, "eager-copy", backends.BACKENDS["eager"])
    parser = bench.add_parser(__import__("argparse").ArgumentParser().add_subparsers())
    args = parser.parse_args(["--model", str(tiny_path), "--backend", "eager,eager-copy", "--batch-sizes", "1,2",
                              "--repeats", "2", "--json"])  # fmt: skip
    assert bench.run(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "eager,eager-copy" and [r["batch"] for r in info["rows"]] == [1, 2]
    assert all(r["eager-copy_vs_eager"]["median"] > 0 and r["eager_images_per_s"] > 0 for r in info["rows"])
    args.backend = "eager,eager"
    with pytest.raises(ValueError, match="distinct"):
        bench.run(args)
