"""ganserve eval end to end on tiny models: measure, JSON, the model card, the classifier check and its refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ganserve
from ganserve.checkpoint import read_metadata
from ganserve.cli import main
from ganserve.commands.eval import record
from ganserve.data import FASHION_MNIST_CLASSES
from ganserve.eval.evaluate import EvalOptions, evaluate, generate
from ganserve.sampling import sample
from tests.conftest import make_tiny_generator


@pytest.fixture(scope="module")
def fashion_cond_path(tmp_path_factory):
    """A tiny random 10-class generator that says it learnt Fashion-MNIST (so the bundled classifier applies)."""
    path = tmp_path_factory.mktemp("fashion") / "tiny-fashion.safetensors"
    G = make_tiny_generator(2, c_dim=10, class_names=list(FASHION_MNIST_CLASSES))
    ganserve.save_generator(path, G, dataset="fashion-mnist", training={"step": 0})
    return path


def test_eval_measures_a_tiny_model_and_records_it_in_the_model_card(tiny_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ckpt = tmp_path / "tiny.safetensors"
    shutil.copy(tiny_path, ckpt)
    (tmp_path / "README.md").write_text("# Models\n")
    before = sample(ganserve.load(ckpt), seeds=[0, 1]).images
    out = tmp_path / "eval.json"
    argv = ["eval", "--model", str(ckpt), "--n", "8", "--k", "3", "--metrics", "fid,kid,pr", "--data", "fashion-mnist",
            "--baseline", "--batch-size", "4", "--out", str(out), "--record", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "FID" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert (r["n"], r["seeds"], r["truncation_psi"], r["model"]) == (8, "0-7", 1.0, "tiny")
    assert r["reference"] == {"dataset": "fashion-mnist", "split": "test", "n": 8, "selection": "first 8 of 10000"}
    assert np.isfinite(r["fid"]) and r["fid"] > 0 and r["kid"]["subset_size"] == 8
    assert all(0 <= r[k] <= 1 for k in ("precision", "recall", "coverage")) and r["k"] == 3
    assert r["baseline"]["images"]["split"] == "train" and np.isfinite(r["baseline"]["fid"])
    assert "Inception" in r["features"]
    assert r["command"] == (f"ganserve eval --model {ckpt} --n 8 --metrics fid,kid,pr --psi 1.0 --batch-size 4 --data "
                            f"fashion-mnist --k 3 --baseline --out {out} --record --no-progress")  # fmt: skip
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2  # the real sets' features
    assert "classifier" not in r

    meta = read_metadata(ckpt)
    (entry,) = meta["evaluation"]
    assert entry["n"] == 8 and entry["fid"] == r["fid"] and entry["baseline"]["fid"] == r["baseline"]["fid"]
    assert np.array_equal(sample(ganserve.load(ckpt), seeds=[0, 1]).images, before)  # same tensors, valid hash
    readme = (tmp_path / "README.md").read_text()
    assert "<!-- ganserve eval: begin tiny -->" in readme and f"| {r['fid']:.1f} |" in readme
    assert "real train (8), the floor" in readme

    # the same measurement again replaces its record and its table instead of adding to them
    record(ckpt, {**r, "fid": 1.5})
    (entry,) = read_metadata(ckpt)["evaluation"]
    readme = (tmp_path / "README.md").read_text()
    assert entry["fid"] == 1.5 and readme.count("ganserve eval: begin tiny") == 1 and "| 1.5 |" in readme
    record(ckpt, {**r, "n": 9})
    assert len(read_metadata(ckpt)["evaluation"]) == 2


def test_generation_goes_through_the_sampling_core_per_seed_and_class(fashion_cond_path):
    G = ganserve.load(fashion_cond_path)
    gen = generate(G, EvalOptions(n=12, seed_offset=5, metrics=("classifier",), batch_size=4, progress=False))
    assert gen.images.shape == (12, 16, 16, 3) and list(gen.classes) == [i % 10 for i in range(12)]
    for i in (0, 7, 11):
        one = sample(G, seeds=[5 + i], truncation_psi=1.0, **{"class": i % 10}).images[0]
        assert np.array_equal(gen.images[i], one)


def test_the_classifier_check_on_a_conditional_model(fashion_cond_path, capsys):
    argv = ["eval", "--model", str(fashion_cond_path), "--n", "20", "--metrics", "classifier", "--no-progress"]
    argv.append("--json")
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    c = r["classifier"]
    assert 0 <= c["accuracy"] <= 1 and list(c["per_class"]) == list(FASHION_MNIST_CLASSES)
    assert c["real_test_accuracy"] >= 0.91 and c["classifier"] == "classifier-fashion-32.safetensors"
    assert "fid" not in r and "reference" not in r


def test_the_classifier_check_is_skipped_with_a_reason(tiny_path, tiny_cond_path, fashion_cond_path, capsys):
    def classifier_result(*argv: str) -> str:
        assert main(["eval", *argv, "--n", "6", "--metrics", "classifier", "--no-progress", "--json"]) == 0
        return json.loads(capsys.readouterr().out)["classifier"]["skipped"]

    assert "unconditional" in classifier_result("--model", str(tiny_path))
    assert "no classifier for data set 'random'" in classifier_result("--model", str(tiny_cond_path))
    clf = str(ganserve.loading.bundled_dir() / "classifier-fashion-32.safetensors")
    assert "not the classifier's" in classifier_result("--model", str(tiny_cond_path), "--classifier", clf)


def test_json_prints_and_out_writes_and_the_old_json_path_still_writes(tiny_path, tmp_path, capsys):
    """--json is a print switch (as in every command), --out the file; ``--json PATH`` (the old form) is --out PATH."""
    base = ["eval", "--model", str(tiny_path), "--n", "6", "--metrics", "classifier", "--no-progress"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert out.startswith("classifier: ") and "unconditional" in out  # a summary, not JSON

    both = tmp_path / "both.json"
    assert main([*base, "--out", str(both), "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out) == json.loads(both.read_text()) and f"wrote {both}" in printed.err
    assert json.loads(printed.out)["command"].endswith(f"--out {both} --json --no-progress")

    old = tmp_path / "old.json"
    assert main([*base, "--json", str(old)]) == 0
    printed = capsys.readouterr().out
    r = json.loads(old.read_text())
    assert printed.startswith("classifier: ") and f"wrote {old}" in printed
    assert "unconditional" in r["classifier"]["skipped"]
    assert f"--out {old}" in r["command"] and "--json" not in r["command"]  # recorded in the current spelling

    assert main([*base, "--json", str(old), "--out", str(both)]) == 2
    assert "--json" in capsys.readouterr().err


def test_the_real_floor_alone(tmp_path):
    def pixels(images, batch_size=50, progress=None):  # a cheap stand-in for Inception: the pixels as features
        return images.reshape(len(images), -1).astype(np.float64)

    r = evaluate(None, EvalOptions(n=16, k=3, data="fashion-mnist", progress=False), extractor=pixels)
    assert r["reference"]["split"] == "test" and r["baseline"]["images"]["split"] == "train"
    assert r["baseline"]["fid"] > 0 and 0 < r["baseline"]["precision"] <= 1 and "fid" not in r


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "tiny", "--n", "3"], "--n must be at least 6"),
        (["--baseline", "--record", "--data", "fashion-mnist"], "--record writes into a model's card"),
        ([], "give --model"),
        (["--train-classifier"], "needs --out"),
    ],
)
def test_bad_invocations_are_one_line_errors(argv, message, tiny_models_dir, monkeypatch, capsys):
    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(tiny_models_dir))
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_unknown_metrics_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--model", "tiny", "--metrics", "fid,is"])
    assert "unknown metrics ['is']" in capsys.readouterr().err


def test_real_features_are_cached_per_selection(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    class Pixels:  # a cheap stand-in for Inception that says which weights it is
        weights_sha1 = "0" * 40

        def __call__(self, images, batch_size=50, progress=None):
            calls.append(len(images))
            return images.reshape(len(images), -1).astype(np.float64)

    opts = EvalOptions(n=12, k=3, data="fashion-mnist", progress=False)
    first = evaluate(None, opts, extractor=Pixels())
    assert calls == [12, 12] and len(list((tmp_path / "ganserve" / "eval").glob("*.safetensors"))) == 2
    again = evaluate(None, opts, extractor=Pixels())
    assert calls == [12, 12] and again["baseline"] == first["baseline"]  # both sets from the cache, same numbers
    evaluate(None, EvalOptions(n=12, k=3, data="fashion-mnist", real_seed=1, progress=False), extractor=Pixels())
    assert calls == [12, 12, 12, 12]  # another selection of images is another entry
    evaluate(None, EvalOptions(n=12, k=3, data="fashion-mnist", cache=False, progress=False), extractor=Pixels())
    assert len(calls) == 6


def test_a_classifier_only_record_has_no_reference_set_in_its_row():
    from ganserve.commands.eval import readme_rows

    record = {"n": 1000, "truncation_psi": 0.5, "date": "2026-11-28",
              "classifier": {"accuracy": 0.97, "real_test_accuracy": 0.9215}}  # fmt: skip
    (row,) = readme_rows("m", [record])
    assert "?" not in row and "| 0.970 (real 0.921) |" in row and "| — |" in row
    (row,) = readme_rows("m", [{**record, "reference": {"dataset": "fashion-mnist", "split": "test", "n": 1000}}])
    assert "| fashion-mnist test (1000) |" in row
