"""Every command the docs show works (issue 15 item 9): README.md, docs/*.md and checkpoints/README.md.

Commands come from shell-like fenced blocks (bash, sh, console, shell or no language) and from inline code spans that
start a command (`ganserve ...`, `python3 -m ...`). Each ``ganserve`` command is parsed by the real CLI parser, so a
flag or subcommand that does not exist fails naming the file and line. Synopses (``[--psi 0.7]``, ``onnx|pt2``,
placeholders such as NAME or PATH) are checked flag by flag, alternatives against the flag's choices. Concrete
commands that finish in seconds are run in a temporary folder against the bundled checkpoints; the others are
parse-checked only, each kind with the reason below. A command of a kind nobody has classified fails the test.
When a test here fails, fix the doc (or classify a new kind), not the extraction.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

import ganserve
from ganserve.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "checkpoints" / "README.md"]
SHELL_LANGS = {"", "bash", "sh", "console", "shell"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w-]*)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
# An inline span is a command when it starts like one; `ganserve serve: PATH: ...` (an error message) does not.
INLINE_COMMAND = re.compile(r"^(\.venv/bin/)?(ganserve [a-z_]+(\s|$)|python3? -m \w)")
GANSERVE = ("ganserve", ".venv/bin/ganserve")
# Placeholders in synopses: NAME, PATH, DIR, FILE.npy, <model>, N ... (an argument that is a name, not a value).
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z0-9_]*(\.\w+)?|\.\.\.|.*\.\.\.)$")

# ---- what runs and what is parse-checked only --------------------------------------------------------------------
# Kinds (the subcommand, with `bench`'s benchmark) that run in the test: seconds each on the bundled 32 px models.
RUN_KINDS = {"sample", "export", "help"}
# Kinds that are parse-checked only, and why.
PARSE_ONLY = {
    "serve": "starts TorchServe (Java frontend, workers): tested for real in test_serve_torchserve.py",
    "ui": "starts a Gradio server: tested in test_ui_cli.py and test_ui_browser.py",
    "train": "trains for minutes to hours: the training loop is tested in test_train*.py",
    "eval": "FID needs 1,000+ Inception passes: tested with tiny models in test_eval_cli.py",
    "import": "needs an official release file (.pkl / .pt / .ckpt): tested in test_importers*.py",
    "project": "optimises for hundreds of steps: tested in test_projection.py",
    "bench sample": "times many repeats (with --reference, an official checkout)",
    "bench serve": "starts TorchServe: see serve",
    "bench precision": "renders 1,000 seeds per precision",
    "bench kernels": "times Triton kernels (a GPU's figures)",
}
# Commands other than ganserve's, by their first word, and why they are not run.
OTHER_PARSE_ONLY = {
    "bash": ".ci/setup and .ci/run install everything and run the whole suite: that is CI itself",
    "pip": "installs packages (the wheel install is tested in test_install.py)",
    "apt-get": "installs system packages",
    "cp": "copies a file a training run wrote",
    "curl": "needs a running server: its body is checked against the request models below",
    "python3 -c": "reads the key file of a running server (its layout: test_serve_keys.py)",
}
# `python3 -m MODULE` lines: the module must import and answer --help.


@dataclass
class Command:
    file: str
    line: int
    text: str
    inline: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def _split(text: str) -> list[str]:
    """One shell line -> its commands (``a && b``, ``a; b``); an assignment ``K=$(cmd)`` -> cmd."""
    out = []
    for part in re.split(r"\s*(?:&&|;)\s*(?=(?:[^'\"]|'[^']*'|\"[^\"]*\")*$)", text):
        m = re.match(r"^\w+=\$\((.*)\)$", part.strip())
        out.append(m.group(1) if m else part.strip())
    return [p for p in out if p]


def fenced_commands(path: Path) -> Iterator[Command]:
    lang = None  # None: outside a fence
    pending: tuple[int, str] | None = None  # a line continued with a backslash
    last: Command | None = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        m = FENCE.match(raw)
        if m:
            lang = m.group(2).lower() if lang is None else None
            last = pending = None
            continue
        if lang not in SHELL_LANGS:
            continue
        line = raw.rstrip()
        if pending:
            start, text = pending
            line, n = text + " " + line.strip(), start
        if line.endswith("\\"):
            pending = (n, line[:-1].rstrip())
            continue
        pending = None
        body = line.strip()
        if body.startswith("$ "):
            body = body[2:]
        if not body or body.startswith("#"):
            continue
        if raw[:1].isspace() and last is not None and body[:1] in "[-":
            last.text += " " + body  # a synopsis wrapped onto an indented line
            continue
        for text in _split(body):
            last = Command(path.relative_to(ROOT).as_posix(), n, text)
            yield last


def inline_commands(path: Path) -> Iterator[Command]:
    in_fence = False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for span in INLINE.findall(line):
            text = span.replace("\\|", "|").strip()
            if INLINE_COMMAND.match(text):
                yield Command(path.relative_to(ROOT).as_posix(), n, text, inline=True)


COMMANDS = [c for doc in DOCS for c in [*fenced_commands(doc), *inline_commands(doc)]]


def _id(c: Command) -> str:
    return f"{c.file}:{c.line}"


# ---- ganserve commands -------------------------------------------------------------------------------------------


def is_ganserve(c: Command) -> bool:
    return c.argv[0] in GANSERVE


def subparser_path(argv: list[str]) -> tuple[list[argparse.ArgumentParser], list[str]]:
    """The parsers a command's words walk through (ganserve, its subcommand, bench's benchmark) and the rest."""
    parsers = [build_parser()]
    rest = list(argv)
    while rest:
        subs = [a for a in parsers[-1]._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or rest[0] not in subs[0].choices:
            break
        parsers.append(subs[0].choices[rest.pop(0)])
    return parsers, rest


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                yield from walk(sub)


def is_synopsis(argv: list[str]) -> bool:
    return any(("[" in a or "]" in a or "|" in a or PLACEHOLDER.match(a)) for a in argv[1:])


def kind(argv: list[str]) -> str:
    """``sample``, ``bench serve``, ``help`` ... (what the lists above classify)."""
    if "--help" in argv or "-h" in argv:
        return "help"
    words = argv[1:3] if argv[1:2] == ["bench"] else argv[1:2]
    return " ".join(words)


def check_synopsis(c: Command) -> None:
    """Each --flag exists for its subcommand; an alternative list (a|b|c) of a flag with choices names only choices."""
    argv = [a.strip("[]") for a in c.argv]
    parsers, rest = subparser_path(argv[1:])
    assert len(parsers) > 1, f"{c.where}: unknown subcommand {argv[1:2]}"
    options = {s: a for a in parsers[-1]._actions for s in a.option_strings}
    for i, token in enumerate(rest):
        flag = token.split("=", 1)[0]
        if not flag.startswith("--"):
            continue
        assert flag in options, f"{c.where}: {' '.join(argv[:len(parsers)])} has no {flag}"
        choices = options[flag].choices
        value = token.split("=", 1)[1] if "=" in token else (rest[i + 1] if i + 1 < len(rest) else "")
        if choices and "|" in value:
            wrong = [v for v in value.split("|") if v not in choices]
            assert not wrong, f"{c.where}: {flag} has no choice {wrong} (choices: {list(choices)})"


def parse_error(argv: list[str]) -> str | None:
    """What the real parser says against ``argv`` (None: it parses; --help exits 0)."""
    parser = build_parser()
    for p in walk(parser):  # a doc must spell flags out: argparse would take `--seed` for `--seeds`
        p.allow_abbrev = False
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv[1:])
    except SystemExit as e:
        if e.code != 0:
            return err.getvalue().strip().splitlines()[-1]
    return None


def names_its_model(c: Command) -> bool:
    """An inline span is a whole command, not a mention in prose (`ganserve sample --precision fp16`), when it says
    what to run on; fenced lines always are."""
    return not c.inline or bool({"--model", "--list", "--help", "-h"} & set(c.argv)) or kind(c.argv) == "export"


GANSERVE_COMMANDS = [c for c in COMMANDS if is_ganserve(c)]


@pytest.mark.parametrize("c", GANSERVE_COMMANDS, ids=_id)
def test_every_ganserve_command_parses(c: Command) -> None:
    error = None if is_synopsis(c.argv) else parse_error(c.argv)
    if is_synopsis(c.argv) or (c.inline and error):
        check_synopsis(c)  # a synopsis, or prose naming a flag (`--precision`): every word must still exist
        return
    assert error is None, f"{c.where}: the CLI refuses it: {error}"
    k = kind(c.argv)
    assert k in RUN_KINDS or k in PARSE_ONLY, f"{c.where}: unclassified command kind {k!r}: add it to RUN_KINDS or " \
                                              "PARSE_ONLY in tests/test_docs_commands.py"  # fmt: skip


RUNNABLE = [c for c in GANSERVE_COMMANDS if not is_synopsis(c.argv) and kind(c.argv) in RUN_KINDS
            and names_its_model(c) and parse_error(c.argv) is None]  # fmt: skip


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Commands without --threads run in this process on one thread (what --threads 1 gives the others)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("c", RUNNABLE, ids=_id)
def test_runnable_ganserve_commands_run(c: Command, tmp_path, monkeypatch, one_thread, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # outputs land here; models resolve as for a user anywhere (bundled package data)
    argv = c.argv[1:]
    parsers, _ = subparser_path(argv)
    if "--threads" in {s for a in parsers[-1]._actions for s in a.option_strings} and "--threads" not in argv:
        argv += ["--threads", "1"]
    try:
        rc = main(argv)
    except SystemExit as e:  # --help
        rc = e.code
    out = capsys.readouterr()
    assert rc == 0, f"{c.where}: exit {rc}: {out.err.strip()[-500:]}"
    if "--out" in argv:  # and it wrote what the doc says it writes
        assert any(tmp_path.glob(argv[argv.index("--out") + 1] + "*")), f"{c.where}: wrote no {argv}"


# ---- other commands ----------------------------------------------------------------------------------------------

OTHER = [c for c in COMMANDS if not is_ganserve(c)]


def other_kind(argv: list[str]) -> str:
    if argv[0] in ("python3", "python") and argv[1:2] in (["-m"], ["-c"]):
        return f"{argv[0]} {argv[1]}"
    return argv[0]


@pytest.mark.parametrize("c", OTHER, ids=_id)
def test_other_commands_are_known(c: Command) -> None:
    k = other_kind(c.argv)
    assert c.argv[0] != "python", f"{c.where}: Debian has no `python`: write python3"
    assert k == "python3 -m" or k in OTHER_PARSE_ONLY, f"{c.where}: unclassified command {k!r}: add it to " \
                                                        "OTHER_PARSE_ONLY in tests/test_docs_commands.py"  # fmt: skip


@pytest.mark.parametrize("c", [c for c in OTHER if other_kind(c.argv) == "python3 -m"], ids=_id)
def test_python_modules_import_and_answer_help(c: Command, capsys) -> None:
    module = c.argv[2]
    mod = importlib.import_module(module)
    entry = getattr(mod, "main", None)
    assert callable(entry), f"{c.where}: {module} has no main() to run as python3 -m"
    with pytest.raises(SystemExit) as e:
        entry(["--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out.lower(), c.where


def curl_request(c: Command) -> tuple[str, dict[str, str], str | None]:
    """(URL, headers, body) of a curl command line."""
    argv, url, headers, body = c.argv[1:], None, {}, None
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev == "-H":
            k, _, v = a.partition(":")
            headers[k.strip().lower()] = v.strip()
        elif prev in ("-d", "--data", "--data-raw", "--data-binary"):
            body = a
        elif a.startswith("http") and prev not in ("-H", "-o"):
            url = a
    assert url, f"{c.where}: no URL"
    return url, headers, body


@pytest.mark.parametrize("c", [c for c in OTHER if c.argv[0] == "curl"], ids=_id)
def test_curl_requests_use_real_endpoints_and_valid_bodies(c: Command) -> None:
    """The server cannot run here: the path must be an inference endpoint of a bundled model and the body a request
    that model answers with 200 through the serving core the handler runs."""
    from ganserve.serving.service import SampleService

    url, headers, body = curl_request(c)
    parts = urlparse(url).path.strip("/").split("/")
    assert parts[0] == "predictions" and len(parts) == 2, f"{c.where}: not an inference endpoint: {url}"
    assert parts[1] in ganserve.available_models(), f"{c.where}: no bundled model {parts[1]!r}"
    if body is not None:
        # without it curl -d sends a form, which the server refuses (issue 15 item 1)
        assert headers.get("content-type") == "application/json", f"{c.where}: -d needs Content-Type: application/json"
        (resp,) = SampleService(ganserve.load(parts[1])).handle_batch([body.encode()])
        assert resp.status == 200, f"{c.where}: {json.loads(resp.body)}"


def test_the_extraction_finds_what_the_docs_hold() -> None:
    """Guards the extractor: continuations joined, prompts and comments dropped, && split, synopses kept whole."""
    texts = {c.text for c in COMMANDS}
    assert "bash .ci/run" in texts and "ganserve sample --list" in texts
    assert any(t.startswith("curl ") and "-o grid.png" in t for t in texts)  # three lines joined
    assert any(t.startswith("ganserve sample --model NAME|PATH") and "--cols C" in t for t in texts)  # wrapped synopsis
    assert not any("#" in c.argv[-1] for c in COMMANDS if not c.inline)
    assert {kind(c.argv) for c in RUNNABLE} >= {"sample", "export", "help"}
    # and the checks bite: a flag or subcommand that does not exist, a choice that is not one
    for wrong in ("ganserve sample --model m --seed 1", "ganserve sample [--psi 0.7] [--colour C]",
                  "ganserve sample --noise-mode const|loud", "ganserve smaple --list"):  # fmt: skip
        c = Command("doc.md", 1, wrong)
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            test_every_ganserve_command_parses(c)
