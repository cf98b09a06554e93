"""ganserve sample's flags are generated from the request models (issue 23 items 1, 3, 4; issue 21 item 8).

The conformance test enumerates every field of every registered family's request model and checks that the CLI
reaches it: a flag exists (or the option that sets it), and its example parses into that very field of a valid
request. Errors name the flag the user typed, in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from PIL import Image

import ganserve
from ganserve import cli_fields, families
from ganserve.cli import build_parser, main
from ganserve.commands import sample as sample_cmd
from ganserve.front_end import FrontEnd, request_fields
from ganserve.requests import validate_request
from ganserve.sampling import sample
from tests.field_examples import example_argv, example_files, is_set, is_switch


def _sample_parser() -> argparse.ArgumentParser:
    sub = build_parser()._subparsers._group_actions[0]  # the COMMAND subparsers
    return sub.choices["sample"]


@pytest.mark.parametrize("family", families.family_names())
def test_every_field_of_every_family_has_a_flag_that_parses_into_it(family, tmp_path):
    parser = _sample_parser()
    files = example_files(tmp_path)
    fam_fields = {f.path: f for f in request_fields(families.get_family(family).request)}
    options = {s for a in parser._actions for s in a.option_strings}
    for path, f in fam_fields.items():
        argv = example_argv(fam_fields, path, files)
        assert argv[-2 if not is_switch(f) else -1] in options, f"{family}.{path}: no flag {argv}"
        args = parser.parse_args(["--model", "x", *argv])
        req = sample_cmd.build_request(args)
        parsed = validate_request(families.get_family(family).request, req, family)
        assert is_set(parsed, path), f"{family}.{path}: {argv} did not set it (request {req})"


def test_a_new_field_is_a_new_flag_with_nothing_else_written(monkeypatch):
    """A family's new field, with a hint on the field or none at all, is a sample flag and lands in the request."""
    base = families.get_family("progan")

    class GlowRequest(base.request):
        glow: Annotated[float, FrontEnd(flag="--glow", aliases=("--shine",), help="how much it glows")] = 0.0
        sparkle_count: int = 0  # no hint: --sparkle-count, read as an int
        twinkle: bool = False  # no hint: a switch

    monkeypatch.setitem(families._LOADED, "glowgan", dataclasses.replace(base, name="glowgan", request=GlowRequest))
    parser = _sample_parser()
    args = parser.parse_args(["--shine", "0.5", "--sparkle-count", "3", "--twinkle"])
    assert {"glow": 0.5, "sparkle_count": 3, "twinkle": True}.items() <= sample_cmd.build_request(args).items()
    assert "how much it glows" in parser.format_help() and "[glowgan]" in parser.format_help()
    args = parser.parse_args(["--sparkle-count", "x"])
    with pytest.raises(Exception, match="--sparkle-count 'x': expected an integer"):
        sample_cmd.build_request(args)


def test_two_fields_cannot_share_a_flag(monkeypatch):
    base = families.get_family("progan")

    class Clash(base.request):
        glare: Annotated[float, FrontEnd(flag="--psi")] = 0.0

    monkeypatch.setitem(families._LOADED, "clashgan", dataclasses.replace(base, name="clashgan", request=Clash))
    with pytest.raises(ValueError, match="both want the flag --psi"):
        cli_fields.collect()


# ---- errors: one line naming the flag, exit 2 (issue 21 item 8) ----------------------------------------------------
@pytest.fixture()
def cli(tiny_models_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("GANSERVE_CHECKPOINTS", str(tiny_models_dir))
    monkeypatch.chdir(tmp_path)

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            rc = main(list(argv))
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--cols", "1000000000"], "invalid --cols (grid_cols)"),
        (["--cols", "0"], "invalid --cols (grid_cols)"),
        (["--batch-size", "0"], "--batch-size: expected an integer in [1, 4096], got '0'"),
        (["--batch-size", "-1"], "--batch-size: expected an integer in [1, 4096]"),
        (["--batch-size", "1e30"], "--batch-size: expected an integer in [1, 4096], got '1e30'"),
        (["--max-images", "0"], "--max-images: expected an integer"),
        (["--seeds="], "--seeds needs a value"),
        (["--out="], "--out needs a path"),
        (["--interpolate", "x:y:q"], "--interpolate 'x:y:q': expected TO_SEED[:STEPS[:w|z]]"),
        (["--trunc", "nan"], "invalid --trunc (truncation_psi): "),
        (["--psi", "7"], "invalid --psi (truncation_psi): "),
        (["--mix", "3:everything"], "invalid --mix (style_mix.layers)"),
        (["--mix", "3", "--styles", "9-1"], "invalid --styles (style_mix.layers)"),
        (["--styles", "0-2"], "--styles needs --mix"),
        (["--edit-method", "pca"], "--edit-method needs --edit"),
        (["--edit", "0:x"], "--edit '0:x': the amount must be a number"),
        (["--cutoff", "1.5"], "--cutoff '1.5': expected an integer"),
        (["--top-k", "5"], "--top-k does not apply to a stylegan2 model"),
        (["--classes", "0,1"], "--classes does not apply to a stylegan2 model"),
        (["--w", "missing.npy"], "--w missing.npy: No such file or directory"),
        (["--noise-mode", "loud"], "argument --noise-mode: invalid choice: 'loud'"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(cli, args, fragment):
    out = [] if any(a.startswith("--out") for a in args) else ["--out", "x.png"]
    rc, _, err = cli("sample", "--model", "tiny", *args, *out)
    assert rc == 2 and fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not Path("x.png").exists()


def test_out_to_a_device_is_refused_by_name(cli):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    rc, _, err = cli("sample", "--model", "tiny", "--seeds", "1", "--out", "/dev/full", "--force")
    assert rc == 2 and "--out /dev/full: not a regular file" in err


def test_psi_on_sagan_names_the_flag_and_the_families_that_take_it(cli):
    rc, _, err = cli("sample", "--model", "sagan-fashion-32", "--seeds", "1", "--psi", "0.5", "--out", "x.png")
    assert rc == 2 and "--psi does not apply to a sagan model" in err and "biggan" in err


# ---- the new flags reach the sampler: same pixels as the API ---------------------------------------------------------
def test_classes_to_class_and_attention_flags_give_the_api_pixels(cli):
    biggan = ganserve.load("biggan-fashion-32")
    rc, _, err = cli("sample", "--model", "biggan-fashion-32", "--seeds", "1,2", "--classes", "0,Sneaker",
                     "--out", "rows.npy")  # fmt: skip
    assert rc == 0, err
    assert np.array_equal(np.load("rows.npy"), sample(biggan, seeds=[1, 2], classes=[0, "Sneaker"]).images)
    rc, _, err = cli("sample", "--model", "biggan-fashion-32", "--seeds", "3", "--interpolate", ":3",
                     "--to-class", "Bag", "--class", "1", "--out", "frames.npy")  # fmt: skip
    assert rc == 0, err
    want = sample(biggan, {"seeds": [3], "class": 1, "interpolate": {"to_class": "Bag", "steps": 3}}).images
    assert np.array_equal(np.load("frames.npy"), want)
    sagan = ganserve.load("sagan-fashion-32")
    rc, _, err = cli("sample", "--model", "sagan-fashion-32", "--seeds", "4", "--attention", "8,9", "--out", "a.npy")
    assert rc == 0, err
    want = sample(sagan, seeds=[4], attention={"query": [8, 9]}).images
    assert np.array_equal(np.load("a.npy"), want)
    assert not np.array_equal(want, sample(sagan, seeds=[4]).images)


def test_mix_without_layers_takes_the_request_default(cli, tiny):
    """--mix SEEDS alone means the request's default layers (fine), as in the API: a 16 px model has no fine layers,
    and the refusal is the API's, naming --mix."""
    from ganserve.requests import RequestError

    rc, _, err = cli("sample", "--model", "tiny", "--seeds", "1", "--mix", "7", "--out", "m.npy")
    with pytest.raises(RequestError) as api:
        sample(tiny, seeds=[1], style_mix={"seeds": [7]})
    assert rc == 2 and err.strip().endswith(f"invalid --mix (style_mix.layers): {api.value.message}")


def test_cols_reaches_the_grid(cli, tiny):
    from ganserve.images import make_grid

    rc, _, err = cli("sample", "--model", "tiny", "--seeds", "0-5", "--cols", "2", "--out", "g.png")
    assert rc == 0, err
    assert np.array_equal(
        np.asarray(Image.open("g.png").convert("RGB")), make_grid(sample(tiny, seeds="0-5").images, 2)
    )


def test_list_shows_family_resolution_and_classes(cli):
    rc, out, _ = cli("sample", "--list")
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split()[:4] == ["NAME", "FAMILY", "RES", "CLASSES"]
    assert (
        rows["tiny-cond"].split()[1:4] == ["stylegan2", "16", "3:"] and "circle, square, triangle" in rows["tiny-cond"]
    )
    assert rows["tiny"].split()[1:4] == ["stylegan2", "16", "-"]
    assert "vqgan" in rows["vqgan-fashion-32"] and "Ankle boot" in rows["vqgan-fashion-32"]


# ---- help: text and defaults on every option of every command (issue 23 item 4) --------------------------------------
def _parsers(p: argparse.ArgumentParser, name: str = "ganserve"):
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sp in a.choices.items():
                yield from _parsers(sp, f"{name} {sub_name}")


def test_every_option_has_help_and_its_default_shown():
    missing, no_default = [], []
    for name, p in _parsers(build_parser()):
        fmt = p._get_formatter()
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not a.help:
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
                continue
            shown = fmt._get_help_string(a) % {**vars(a), "prog": p.prog}
            absent = a.default is None or a.default is False or a.default is argparse.SUPPRESS or a.default == []
            if not absent and "default" not in shown:
                no_default.append(f"{name} {'/'.join(a.option_strings)}")
    assert not missing and not no_default, (missing, no_default)


def test_class_metavar_is_class():
    assert "--class CLASS " in _sample_parser().format_help()


# ---- one spelling across commands, the old ones kept as aliases (issue 23 item 4) -----------------------------------
def _ns(*argv: str) -> dict[str, Any]:
    return {k: v for k, v in vars(build_parser().parse_args(list(argv))).items() if not k.startswith("_")}


def test_old_spellings_parse_like_the_new_ones():
    assert _ns("train", "stylegan2", "--batch", "8", "--out-dir", "d", "--model", '{"a": 1}') == _ns(
        "train", "stylegan2", "--batch-size", "8", "--out", "d", "--config", '{"a": 1}'
    )
    assert _ns("project", "--model", "m", "--image", "i.png", "--out-dir", "d")["out_dir"] == "d"
    assert _ns("project", "--model", "m", "--image", "i.png", "--out", "d")["out_dir"] == "d"
    assert _ns("serve", "--model", "a,b")["models"] == _ns("serve", "--models", "a,b")["models"] == "a,b"
    assert _ns("sample", "--network", "m", "--outdir", "o")["out"] == "o"


def test_export_takes_model_as_a_flag_or_the_old_positional(cli):
    for argv in (["--model", "tiny"], ["tiny"]):
        rc, _, err = cli("export", *argv, "--format", "nope", "--out", "o")
        assert rc == 2 and "unknown format 'nope'" in err, err
    rc, _, err = cli("export", "tiny", "--model", "tiny", "--format", "onnx", "--out", "o")
    assert rc == 2 and "give the model once" in err
    rc, _, err = cli("export", "--format", "onnx", "--out", "o")
    assert rc == 2 and "give the model once" in err


def test_seeds_default_to_a_grid_unless_another_source_of_latents_is_given(tmp_path):
    parser = _sample_parser()
    w = example_files(tmp_path)["base64-or-text"]
    assert sample_cmd.build_request(parser.parse_args(["--psi", "0.5"]))["seeds"] == "0-15"
    assert "seeds" not in sample_cmd.build_request(parser.parse_args(["--w", str(w)]))
    assert "seeds" not in sample_cmd.build_request(parser.parse_args(["--image", str(w)]))
    assert "none with --w, --project, --image" in parser.format_help()
