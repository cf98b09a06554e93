"""The one timing discipline of every benchmark (ganserve.benchmarks.timing) and the tools built on it: alternated
calls after warm-up, paired ratios with their spread, equal threads reaching onnxruntime, clear errors for bad flags,
and the reference benches end to end on a tiny model beside a stand-in "official" checkout (or the real one, where
GANSERVE_SG2ADA_SRC / GANSERVE_HF_BIGGAN_SRC / GANSERVE_TAMING_SRC name a checkout). No timing is asserted."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ganserve.benchmarks import timing
from ganserve.benchmarks.timing import Spread, compare


class FakeClock:
    """Each candidate's call advances the clock by its scripted duration for that round."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scripted(clock: FakeClock, durations: list[float], calls: list[str], name: str):
    it = iter(durations)

    def fn() -> None:
        calls.append(name)
        clock.now += next(it)

    return fn


def test_compare_warms_up_then_alternates_call_by_call_rotating_the_first():
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    c = compare(fns, repeats=4, warmup=2)
    warm, timed = calls[:6], calls[6:]
    assert warm == list("abcabc")  # every candidate warmed, alternated
    assert timed == list("abcbcacababc")  # one of each per round, starting one further each round
    assert c.order == timed and all(len(v) == 4 for v in c.seconds.values())


def test_ratio_is_the_median_of_per_round_paired_ratios_not_a_ratio_of_medians():
    clock = FakeClock()
    calls: list[str] = []
    # Load comes and goes: round 1 everything is 10x slower. Paired ratios are 2, 2, 2; the medians' ratio is not.
    base = [1.0, 10.0, 1.0, 3.0]
    cand = [0.5, 5.0, 0.5, 1.5]
    fns = {"base": scripted(clock, [9.0, *base], calls, "base"), "cand": scripted(clock, [9.0, *cand], calls, "cand")}
    c = compare(fns, repeats=4, clock=clock)
    assert c.seconds["base"] == base and c.seconds["cand"] == cand  # warm-up durations were not recorded
    assert c.ratios("cand") == [2.0, 2.0, 2.0, 2.0]
    s = c.speedup("cand")
    assert (s.median, s.q1, s.q3, s.min, s.max) == (2.0, 2.0, 2.0, 2.0, 2.0)
    assert c.speedup("base", over="cand").median == 0.5
    summary = c.summary(batch=8)
    assert summary["cand_vs_base"]["median"] == 2.0 and summary["base_images_per_s"] == 8 / 2.0


def test_spread_of_paired_ratios():
    s = Spread.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.q1, s.q3, s.min, s.max) == (3.0, 2.0, 4.0, 1.0, 5.0)
    assert "3.00x" in str(s) and "IQR 2.00-4.00" in str(s)
    with pytest.raises(ValueError):
        Spread.of([])


def test_compare_rejects_bad_arguments():
    with pytest.raises(ValueError, match="baseline"):
        compare({"a": lambda: None}, 1, baseline="b")
    with pytest.raises(ValueError, match="repeats"):
        compare({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="--threads"):
        timing.set_threads(0)


def test_threads_reach_onnxruntime_session_options(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from ganserve.export.onnx import OnnxRunner

    opts = timing.ort_session_options(3)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (3, 1)
    path = tmp_path / "double.onnx"

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    torch.onnx.export(Double(), (torch.ones(2, 3),), str(path), input_names=["x"], dynamo=False)
    runner = OnnxRunner(path, threads=2)
    got = runner.session.get_session_options()
    assert (got.intra_op_num_threads, got.inter_op_num_threads) == (2, 1)


def test_command_line_is_printed_beside_results():
    assert timing.command_line("python -m x.y", ["--a", "b c"]) == "python -m x.y --a 'b c'"


# ---- bench serve: the overhead is paired per response ----------------------------------------------------------
def test_serve_overhead_is_the_median_of_paired_differences():
    from ganserve.benchmarks.serve import paired_overhead

    # (latency, generator ms, handler ms) per response: differences 2, 3, 4, 100; unpaired medians would give
    # median(latency) - median(handler) = 30.5 - 27.0 = 3.5, which is no request's overhead.
    timed = [(12.0, 9.0, 10.0), (23.0, 19.0, 20.0), (38.0, 33.0, 34.0), (200.0, 99.0, 100.0), (5.0, 1.0, float("nan"))]
    o = paired_overhead(timed)
    assert o["median_ms"] == 3.5 and o["pairs"] == 4 and o["missing_header"] == 1
    assert paired_overhead([(1.0, 1.0, float("nan"))])["pairs"] == 0


def _bench_parser() -> argparse.ArgumentParser:
    from ganserve.commands import bench

    top = argparse.ArgumentParser()
    bench.add_parser(top.add_subparsers(dest="command"))
    return top


def test_bench_serve_port_flags(monkeypatch):
    from ganserve.benchmarks import serve

    args = _bench_parser().parse_args(["bench", "serve", "--port", "70000"])
    with pytest.raises(ValueError, match="--port: 70000"):
        serve._server(args, {}, Path("."), None)
    # --inference-port, the old spelling, sets the same option (and the reproducing command spells it --port)
    args = _bench_parser().parse_args(["bench", "serve", "--inference-port", "8123", "--management-port", "8123"])
    assert args.port == 8123 and "--port 8123" in timing.cli_command(args)
    with pytest.raises(ValueError, match="--port and --management-port"):
        serve._server(args, {}, Path("."), None)
    monkeypatch.setattr("ganserve.serving.launcher.port_is_free", lambda host, port: port != 8124)
    args = _bench_parser().parse_args(["bench", "serve", "--management-port", "8124"])
    with pytest.raises(ValueError, match="--management-port: port 8124"):
        serve._server(args, {}, Path("."), None)
    assert _bench_parser().parse_args(["bench", "serve"]).port == 0  # picked free


def test_every_bench_option_has_help_with_its_default():
    top = _bench_parser()
    bench = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices["bench"]
    subs = next(a for a in bench._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) >= {"sample", "serve", "precision", "kernels"}
    for name, p in subs.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"bench {name} {action.option_strings[0]} has no help"
        text = p.format_help()
        assert "(default: " in text, f"bench {name}'s help shows no defaults"


# ---- reference benches: flags ------------------------------------------------------------------------------------
def _module(*args: str) -> subprocess.CompletedProcess:
    # Generous: the end-to-end runs export a graph, and CI machines are shared.
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=1200)


@pytest.mark.parametrize(
    "module",
    ["ganserve.benchmarks.reference_bench", "ganserve.benchmarks.biggan_reference_bench", "ganserve.benchmarks.vq"],
)
def test_reference_bench_bad_path_is_one_line_naming_the_flag(module, tmp_path):
    extra = ["reference"] if module.endswith(".vq") else []
    proc = _module(module, *extra, "--reference", str(tmp_path / "nowhere"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "--reference" in proc.stderr and str(tmp_path / "nowhere") in proc.stderr


def test_bench_sample_reference_bad_path(tiny_path, capsys):
    from ganserve.cli import main

    code = main(["bench", "sample", "--model", str(tiny_path), "--reference", "/no/such/checkout", "--repeats", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--reference /no/such/checkout" in err and "Traceback" not in err


# ---- reference benches end to end, beside a stand-in checkout ----------------------------------------------------
FAKE_SG2ADA = textwrap.dedent('''
    """A stand-in for stylegan2-ada-pytorch's training/networks.py: its Generator's constructor and call signatures
    around ganserve's own generator (for testing the bench's plumbing; the real checkout is tested where given)."""
    import torch
    from ganserve.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator


    class Generator(torch.nn.Module):
        def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs):
            super().__init__()
            self.z_dim, self.c_dim = z_dim, c_dim
            self.inner = StyleGAN2Generator(StyleGAN2Config(
                resolution=img_resolution, img_channels=img_channels, z_dim=z_dim, w_dim=w_dim, c_dim=c_dim,
                mapping_layers=mapping_kwargs["num_layers"], **synthesis_kwargs))

        def load_state_dict(self, state, strict=True):
            return self.inner.load_state_dict(state, strict=strict)

        def synthesis(self, ws, noise_mode="random", force_fp32=False, fused_modconv=None):
            return self.inner.synthesis(ws, noise_mode=noise_mode, fused=False)

        def forward(self, z, c, truncation_psi=1, noise_mode="random", force_fp32=False):
            ws = self.inner.mapping(z, c.argmax(1) if self.c_dim else None, truncation_psi, None)
            return self.synthesis(ws, noise_mode=noise_mode)
''')


def _sg2ada_checkout(tmp_path: Path) -> Path:
    real = os.environ.get("GANSERVE_SG2ADA_SRC")
    if real:
        return Path(real)
    root = tmp_path / "fake-stylegan2-ada-pytorch"
    (root / "training").mkdir(parents=True)
    (root / "training" / "__init__.py").write_text("")
    (root / "training" / "networks.py").write_text(FAKE_SG2ADA)
    return root


def test_bench_sample_reference_full_path_and_synthesis_labelled(tiny_path, tmp_path, capsys):
    from ganserve.cli import main

    ref = _sg2ada_checkout(tmp_path)
    code = main(["bench", "sample", "--model", str(tiny_path), "--reference", str(ref), "--batch-sizes", "1,3",
                 "--repeats", "2", "--threads", "1", "--json"])  # fmt: skip
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["threads"] == 1
    assert info["command"] == (f"ganserve bench sample --model {tiny_path} --batch-sizes 1,3 --repeats 2 --threads 1 "
                               f"--reference {ref} --json")  # fmt: skip
    assert [r["batch"] for r in info["rows"]] == [1, 3]
    for r in info["rows"]:
        for k in ("official_full", "full", "official_synthesis", "synthesis"):
            assert r[f"{k}_images_per_s"] > 0
        assert r["full_vs_official_full"]["q1"] <= r["full_vs_official_full"]["median"]
        assert r["synthesis_vs_official_synthesis"]["median"] > 0
        assert r["synthesis_max_abs_diff"] < 1e-4  # the same weights: the same synthesis


@pytest.fixture(scope="module")
def bench_export_cache(tmp_path_factory) -> str:
    """One export cache for this module's benches of the tiny model: they export the same onnx graphs (tens of
    seconds), kept apart from the session's cache, whose first tiny export test_sample_backend checks."""
    return str(tmp_path_factory.mktemp("bench-export-cache"))


def test_reference_bench_end_to_end(tiny_path, tmp_path, monkeypatch, bench_export_cache):
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", bench_export_cache)
    ref = _sg2ada_checkout(tmp_path)
    proc = _module("ganserve.benchmarks.reference_bench", "--reference", str(ref), "--model", str(tiny_path),
                   "--batch-sizes", "1,2", "--repeats", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["threads"] == 1 and info["command"].startswith("python3 -m ganserve.benchmarks.reference_bench")
    assert info["official_graph_vs_official_eager_max_abs_diff"] < 1e-3
    for r in info["rows"]:
        for k in ("onnx_vs_official_onnx", "eager_vs_official_eager", "onnx_vs_eager"):
            assert r[k]["median"] > 0


@pytest.mark.skipif(not os.environ.get("GANSERVE_HF_BIGGAN_SRC"), reason="no pytorch-pretrained-BigGAN checkout given")
def test_biggan_reference_bench_end_to_end():
    proc = _module("ganserve.benchmarks.biggan_reference_bench", "--reference", os.environ["GANSERVE_HF_BIGGAN_SRC"],
                   "--batch-sizes", "1,2", "--repeats", "1", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert max(info["eager_max_abs_diff_by_truncation"].values()) < 1e-4
    assert all(r["full_vs_official_full"]["median"] > 0 and r["onnx_vs_eager"]["median"] > 0 for r in info["rows"])


@pytest.mark.skipif(not os.environ.get("GANSERVE_TAMING_SRC"), reason="no taming-transformers checkout given")
def test_vq_reference_bench_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", str(tmp_path / "export-cache"))
    proc = _module("ganserve.benchmarks.vq", "reference", "--reference", os.environ["GANSERVE_TAMING_SRC"],
                   "--batch-sizes", "1,2", "--repeats", "1", "--prior-batch-sizes", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    ref = info["reference"]
    assert info["command"].startswith("python3 -m ganserve.benchmarks.vq reference") and ref["onnx_threads"] == 1
    assert ref["codes_equal"] and ref["decode_max_abs_diff"] < 1e-4
    assert all(r["decode_onnx_vs_official"]["median"] > 0 for r in ref["rows"])
    (prior,) = ref["prior"]["rows"]
    assert prior["batch"] == 2 and prior["logits_max_abs_diff"] < 1e-4 and prior["core_vs_official"]["median"] > 0


def test_bench_sample_gives_graph_backends_torchs_thread_count(tiny_path, monkeypatch, bench_export_cache):
    pytest.importorskip("onnxruntime")
    from ganserve.benchmarks import sample as bench
    from ganserve.export import onnx as onnx_export

    monkeypatch.setenv("GANSERVE_EXPORT_CACHE", bench_export_cache)
    args = _bench_parser().parse_args(["bench", "sample", "--model", str(tiny_path), "--backend", "onnx"])
    bench._load("onnx", args, threads=1)  # exports into the cache (its parity check's sessions are not timed)
    sessions = []
    original = onnx_export.OnnxRunner.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        sessions.append(self.session.get_session_options())

    monkeypatch.setattr(onnx_export.OnnxRunner, "__init__", recording_init)
    bench._load("onnx", args, threads=1)
    assert sessions and all((o.intra_op_num_threads, o.inter_op_num_threads) == (1, 1) for o in sessions)
