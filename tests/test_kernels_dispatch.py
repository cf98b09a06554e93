"""Dispatch from measurements (ganserve.kernels.dispatch, .candidates) on the CPU: fake timings, the tuning table's
round trip through disk, corrupt tables, the request path never tuning, and the PyTorch candidates computing the same
map as the reference. The Triton candidates' agreement is tested under the interpreter (test_kernels_interpreter.py);
nothing here imports Triton."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from ganserve.kernels import candidates, derived, dispatch
from ganserve.models.layers import setup_filter


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(dispatch.CACHE_ENV, str(tmp_path / "kernels"))
    monkeypatch.delenv(dispatch.TUNE_ENV, raising=False)
    dispatch.forget()
    yield tmp_path / "kernels"
    dispatch.forget()


def _never_timer(name, fn):
    raise AssertionError(f"the request path timed {name}")


def _fake_timer(ms: dict):
    calls = []

    def timer(name, fn):
        calls.append(name)
        return ms[name] * 1e-3

    timer.calls = calls
    return timer


def _cands(log: list | None = None, names=("torch-a", "torch-b", "triton/x")):
    def make(name):
        def run():
            if log is not None:
                log.append(name)
            return torch.ones(3)

        return run

    return {n: make(n) for n in names}


def test_batch_buckets():
    assert [dispatch.batch_bucket(b) for b in (1, 2, 3, 4, 5, 8, 9, 31, 32, 33)] == [1, 2, 4, 4, 8, 8, 16, 32, 32, 64]


def test_tuning_picks_the_fastest_and_stores_it(cache_dir):
    timer = _fake_timer({"torch-a": 2.0, "torch-b": 1.5, "triton/x": 0.7})
    with dispatch.tuning(timer=timer):
        assert dispatch.select("k1", _cands(), "torch-a", "cpu") == "triton/x"
    assert sorted(timer.calls) == ["torch-a", "torch-b", "triton/x"]
    entry = dispatch.table("cpu").get("k1")
    assert entry["choice"] == "triton/x" and entry["ms"] == {"torch-a": 2.0, "torch-b": 1.5, "triton/x": 0.7}
    # the stored choice is used without timing again, also inside tuning
    with dispatch.tuning(timer=_never_timer):
        assert dispatch.select("k1", _cands(), "torch-a", "cpu") == "triton/x"
    # ties go to the default
    with dispatch.tuning(timer=_fake_timer({"torch-a": 1.0, "torch-b": 1.0, "triton/x": 1.0})):
        assert dispatch.select("k2", _cands(), "torch-b", "cpu") == "torch-b"


def test_the_table_round_trips_through_disk(cache_dir):
    with dispatch.tuning(timer=_fake_timer({"torch-a": 3.0, "torch-b": 1.0, "triton/x": 2.0})):
        dispatch.select("modconv|float16|b8|512->512|16x16|k3x3|up1|pad1|demod", _cands(), "torch-a", "cpu")
    files = list(cache_dir.glob("*.json"))
    assert len(files) == 1 and not list(cache_dir.glob(".tuning-*"))  # no temporary file left behind
    data = json.loads(files[0].read_text())
    assert data["format"] == dispatch.FORMAT and data["device"] == dispatch.fingerprint("cpu")
    dispatch.forget()  # as a new process would: read from disk on first use
    log = []
    choice = dispatch.select("modconv|float16|b8|512->512|16x16|k3x3|up1|pad1|demod", _cands(log), "torch-a", "cpu")
    assert choice == "torch-b" and log == []  # select only names; nothing ran or was timed
    assert dispatch.load("cpu").get("modconv|float16|b8|512->512|16x16|k3x3|up1|pad1|demod")["choice"] == "torch-b"


def test_one_file_per_card_and_software(monkeypatch, cache_dir):
    fp = dispatch.fingerprint("cpu")
    other = {**fp, "triton": "0.0.1"}
    assert dispatch.cache_file(fp) != dispatch.cache_file(other)
    assert dispatch.cache_file(fp).parent == cache_dir
    monkeypatch.setenv(dispatch.CACHE_ENV, str(cache_dir / "exact.json"))
    assert dispatch.cache_file(fp) == cache_dir / "exact.json"
    monkeypatch.delenv(dispatch.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_dir / "xdg"))
    assert dispatch.cache_file(fp).parent == cache_dir / "xdg" / "ganserve" / "kernels"


def test_a_cache_miss_on_the_request_path_never_tunes(monkeypatch):
    log = []
    with dispatch.tuning(False, timer=_never_timer):
        assert dispatch.select("missing", _cands(log), "torch-a", "cpu") == "torch-a"
    assert log == []  # not even run: the caller runs the default it was given
    before = dict(dispatch.stats)
    assert dispatch.select("missing", _cands(log), "torch-a", "cpu") == "torch-a"
    assert dispatch.stats["defaults"] == before["defaults"] + 1 and dispatch.stats["tuned"] == before["tuned"]
    assert dispatch.table("cpu").get("missing") is None
    monkeypatch.setenv(dispatch.TUNE_ENV, "1")  # the environment switch turns tuning on for warm-up runs
    with dispatch.tuning(None, timer=_fake_timer({"torch-a": 2.0, "torch-b": 1.0, "triton/x": 3.0})):
        assert dispatch.select("missing", _cands(), "torch-a", "cpu") == "torch-b"


def test_a_stored_choice_that_no_longer_exists_falls_back_to_the_default():
    with dispatch.tuning(timer=_fake_timer({"torch-a": 2.0, "torch-b": 3.0, "triton/x": 1.0})):
        dispatch.select("k", _cands(), "torch-a", "cpu")
    # e.g. Triton missing now, or the configuration list changed: never guess, run the default
    assert dispatch.select("k", _cands(names=("torch-a", "torch-b")), "torch-a", "cpu") == "torch-a"


def test_wrong_or_failing_candidates_are_rejected():
    def boom():
        raise RuntimeError("no kernel image for this card\nmore")

    cands = {"torch-a": lambda: torch.ones(3), "bad": lambda: torch.full((3,), 2.0), "boom": boom}
    check = dispatch.max_error_check(lambda: torch.ones(3), 1e-4)
    with dispatch.tuning(timer=_fake_timer({"torch-a": 5.0, "bad": 0.1, "boom": 0.1})):
        assert dispatch.select("k", cands, "torch-a", "cpu", check) == "torch-a"
    entry = dispatch.table("cpu").get("k")
    assert set(entry["ms"]) == {"torch-a"}
    assert "max error" in entry["rejected"]["bad"] and entry["rejected"]["boom"].startswith("RuntimeError: no kernel")
    nan_check = dispatch.max_error_check(lambda: torch.ones(3), 1.0)
    assert nan_check(torch.tensor([1.0, float("nan"), 1.0])) is not None  # NaN never passes
    assert nan_check(torch.ones(4)) is not None  # nor a wrong shape


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[]", b'{"format": 99, "entries": {}}', b'{"format": 1}'],
    ids=["truncated", "binary", "list", "format", "no-device"],
)
def test_corrupt_tables_are_ignored_with_a_warning(cache_dir, content):
    path = dispatch.cache_file(dispatch.fingerprint("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.warns(RuntimeWarning, match="ignoring the kernel tuning table"):
        assert dispatch.select("k", _cands(), "torch-a", "cpu") == "torch-a"
    # tuning afterwards writes a good table over it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with dispatch.tuning(timer=_fake_timer({"torch-a": 2.0, "torch-b": 1.0, "triton/x": 3.0})):
            dispatch.select("k", _cands(), "torch-a", "cpu")
    dispatch.forget()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.select("k", _cands(), "torch-a", "cpu") == "torch-b"


def test_a_table_from_another_card_or_with_bad_entries(cache_dir):
    path = dispatch.cache_file(dispatch.fingerprint("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    other = {**dispatch.fingerprint("cpu"), "card": "NVIDIA H200"}
    path.write_text(json.dumps({"format": 1, "device": other, "entries": {"k": {"choice": "torch-b"}}}))
    with pytest.warns(RuntimeWarning, match="measured on"):
        assert dispatch.select("k", _cands(), "torch-a", "cpu") == "torch-a"
    dispatch.forget()
    entries = {"good": {"choice": "torch-b", "ms": {}}, "bad": {"choice": 3}, "worse": "x"}
    path.write_text(json.dumps({"format": 1, "device": dispatch.fingerprint("cpu"), "entries": entries}))
    with pytest.warns(RuntimeWarning, match="2 malformed entries"):
        assert dispatch.select("good", _cands(), "torch-a", "cpu") == "torch-b"
    assert dispatch.select("bad", _cands(), "torch-a", "cpu") == "torch-a"


def test_writes_merge_with_other_processes_and_survive_an_unwritable_cache(cache_dir, monkeypatch):
    with dispatch.tuning(timer=_fake_timer({"torch-a": 2.0, "torch-b": 1.0, "triton/x": 3.0})):
        dispatch.select("mine", _cands(), "torch-a", "cpu")
    path = dispatch.cache_file(dispatch.fingerprint("cpu"))
    # another process adds a key meanwhile
    data = json.loads(path.read_text())
    data["entries"]["theirs"] = {"choice": "triton/x", "ms": {"triton/x": 1.0}}
    path.write_text(json.dumps(data))
    with dispatch.tuning(timer=_fake_timer({"torch-a": 1.0, "torch-b": 2.0, "triton/x": 3.0})):
        dispatch.select("mine2", _cands(), "torch-b", "cpu")
    assert set(json.loads(path.read_text())["entries"]) == {"mine", "mine2", "theirs"}
    # an unwritable cache (here: its folder would have to be made inside a file) warns and keeps the choice in memory
    blocker = cache_dir.parent / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(dispatch.CACHE_ENV, str(blocker / "kernels"))
    dispatch.forget()
    timer = _fake_timer({"torch-a": 1.0, "torch-b": 2.0, "triton/x": 3.0})
    with pytest.warns(RuntimeWarning, match="could not write"), dispatch.tuning(timer=timer):
        assert dispatch.select("mine3", _cands(), "torch-b", "cpu") == "torch-a"
    assert dispatch.select("mine3", _cands(), "torch-b", "cpu") == "torch-a"  # still known in this process


# ---------------------------------------------------------------------------------------------------------------------
# The real candidates on the CPU (PyTorch paths only)


def _call(up=1, dtype=torch.float32, n=3, i=7, o=5, h=6, w=5, demod=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    oh, ow = (h * up, w * up)
    return candidates.ModConvCall(
        torch.randn(n, i, h, w, generator=g).to(dtype), torch.randn(o, i, 3, 3, generator=g) / math.sqrt(i * 9),
        torch.randn(n, i, generator=g) * 0.5 + 1.0, torch.randn(oh, ow, generator=g), torch.randn(o, generator=g),
        setup_filter((1, 3, 3, 1)) if up > 1 else None, demod, 1, up, "lrelu", math.sqrt(2), 0.9,
    )  # fmt: skip


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_candidates_compute_the_reference_map(up, dtype):
    c = _call(up, dtype)
    ref = candidates.modconv_reference(c)
    names = candidates.modconv_candidates(c, include_triton=False)
    assert set(names) == {"torch-scale", "torch-group"} | ({"torch-subpixel"} if up > 1 else set())
    tol = candidates.MODCONV_TOLERANCE[candidates.dtype_tag(dtype, "conv")]
    for name, fn in names.items():
        y = fn()
        assert y.shape == ref.shape and y.dtype == dtype, name
        assert (y.float() - ref).abs().max().item() <= tol * max(1.0, ref.abs().max().item()), name


def test_run_modconv_uses_the_measured_choice_and_the_default_otherwise():
    c = _call()
    key = candidates.modconv_key(c)
    assert key == f"modconv|{candidates.dtype_tag(torch.float32, 'conv')}|b4|7->5|6x5|k3x3|up1|pad1|demod"
    y_default = candidates.run_modconv(c)  # nothing measured: the PyTorch default, no timing
    timer = _fake_timer({"torch-scale": 2.0, "torch-group": 1.0})
    with dispatch.tuning(timer=timer):
        y_tuned = candidates.run_modconv(c)
    assert sorted(timer.calls) == ["torch-group", "torch-scale"]
    assert dispatch.table("cpu").get(key)["choice"] == "torch-group"
    assert dispatch.table("cpu").get(key)["rejected"] == {}
    torch.testing.assert_close(y_tuned, y_default, atol=1e-5, rtol=1e-5)
    # another batch in the same bucket shares the choice; another bucket does not
    assert candidates.modconv_key(_call(n=4)) == key and candidates.modconv_key(_call(n=5)) != key


def test_run_vq_checks_the_candidates_against_the_reference():
    g = torch.Generator().manual_seed(0)
    z, cb = torch.randn(40, 6, generator=g), torch.randn(30, 6, generator=g)
    timer = _fake_timer({"torch-mm": 2.0, "torch-cdist": 1.0})
    with dispatch.tuning(timer=timer):
        idx = candidates.run_vq(z, cb, "l2")
    entry = dispatch.table("cpu").get(candidates.vq_key(z, cb, "l2"))
    assert entry["choice"] == "torch-cdist" and entry["rejected"] == {}
    assert torch.equal(idx, torch.cdist(z, cb).argmin(1))
    for metric in ("l2", "cosine"):
        check = candidates.vq_check(z, cb, metric, 1e-5)
        far = torch.cdist(z, cb).argmax(1)
        assert check(far) is not None and check(far[:3]) is not None and check(-far) is not None


def test_derived_weights_are_cached_per_weight_and_rebuilt_after_an_update():
    w = torch.randn(5, 4, 3, 3)
    before = derived.builds
    p1 = derived.packed_weight(w, torch.float16)
    assert p1.shape == (1, 36, 16) and p1.dtype == torch.float16
    assert derived.packed_weight(w, torch.float16) is p1 and derived.builds == before + 1
    torch.testing.assert_close(p1[0, :, :5].float(), w.permute(2, 3, 1, 0).reshape(36, 5).half().float())
    with torch.no_grad():
        w.mul_(2)  # in-place update (training step, load_state_dict): the version moves
    p2 = derived.packed_weight(w, torch.float16)
    assert p2 is not p1 and torch.equal(p2, p1 * 2)
    ident = id(w)
    del w
    assert ident not in derived._entries  # dropped with the weight
    with torch.inference_mode():
        wi = torch.randn(5, 4, 3, 3)
    assert derived.packed_weight(wi, torch.float32).shape == (1, 36, 16)  # no version counter: built, not cached
