"""Every command's parser, walked: help on every option, no generated metavar like ``CLASS_``, and the options that
several commands share spelled the same way in each (old spellings kept as aliases, never as the main spelling).

Parametrized per command (``ganserve train stylegan2``, ``ganserve bench serve`` ... each one case), so a new command
or a new family's training flags are checked without editing this file.
"""

from __future__ import annotations

import argparse

import pytest

from ganserve.cli import build_parser

# One concept, several spellings seen in the wild: the first is the one every command accepts and shows first; the
# others may only be aliases after it. (--models: serve takes a list, so it leads with the plural and accepts --model.)
SHARED = {
    "model": ("--model", "--models", "--network"),
    "output": ("--out", "--out-dir", "--outdir"),
    "batch size": ("--batch-size", "--batch"),
    "device": ("--device",),
    "precision": ("--precision",),
    "threads": ("--threads",),
    "overwrite": ("--force",),
    "inference port": ("--port", "--inference-port"),
}
MAIN_ALTERNATIVES = {"--models"}  # an accepted main spelling besides the first (a list of the concept)
# Old spellings that now mean something else in one command, kept there as a deprecated alias: (command, alias) ->
# the main spelling it stands for there.
DEPRECATED = {("ganserve train *", "--model"): "--config"}


def _walk(p: argparse.ArgumentParser, name: str = "ganserve"):
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, p
    for a in subs:
        for sub_name, sp in a.choices.items():
            yield from _walk(sp, f"{name} {sub_name}")


PARSERS = dict(_walk(build_parser()))


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _metavars(a: argparse.Action) -> list[str]:
    """What --help shows for the action's value: its metavar, else argparse's default (DEST upper-cased)."""
    if a.nargs == 0:
        return []
    if a.metavar is not None:
        return list(a.metavar) if isinstance(a.metavar, tuple) else [a.metavar]
    if a.choices is not None:
        return []  # shown as {a,b,c}
    return [a.dest.upper() if a.option_strings else a.dest]


def _deprecated_for(command: str, flag: str) -> str | None:
    for (pattern, alias), main in DEPRECATED.items():
        if alias == flag and (pattern == command or (pattern.endswith("*") and command.startswith(pattern[:-1]))):
            return main
    return None


def test_every_command_is_walked():
    names = set(PARSERS)
    assert {"ganserve sample", "ganserve export", "ganserve serve", "ganserve bench serve", "ganserve ui"} <= names
    assert any(n.startswith("ganserve train ") for n in names)


@pytest.mark.parametrize("command", list(PARSERS))
def test_every_option_has_help_text(command):
    p = PARSERS[command]
    bare = [a.option_strings[0] if a.option_strings else a.dest for a in _options(p)
            if not a.help or a.help is argparse.SUPPRESS or not a.help.strip()]  # fmt: skip
    assert bare == [], f"{command}: options without help text"
    p.format_help()  # renders (a % in a help text without its escape would raise here)


@pytest.mark.parametrize("command", list(PARSERS))
def test_no_metavar_ends_with_an_underscore(command):
    bad = [(a.option_strings, m) for a in _options(PARSERS[command]) for m in _metavars(a) if m.endswith("_")]
    assert bad == [], f"{command}: metavars generated from a Python name (class_ -> CLASS_)"


@pytest.mark.parametrize("command", list(PARSERS))
def test_shared_options_use_the_shared_spelling(command):
    wrong = []
    for a in _options(PARSERS[command]):
        flags = a.option_strings
        for concept, spellings in SHARED.items():
            seen = [f for f in flags if f in spellings]
            if not seen or any(_deprecated_for(command, f) == flags[0] for f in seen):
                continue
            main_ok = flags[0] == spellings[0] or flags[0] in MAIN_ALTERNATIVES
            if not main_ok or spellings[0] not in flags:
                wrong.append(f"{'/'.join(flags)} ({concept}: {spellings[0]} first)")
    assert wrong == [], f"{command}: {wrong}"


def test_deprecated_aliases_are_noted_in_their_help():
    for command, p in PARSERS.items():
        for a in _options(p):
            for flag in a.option_strings[1:]:
                if _deprecated_for(command, flag):
                    assert flag in a.help and ("old" in a.help or "deprecated" in a.help), (command, a.help)


def test_old_spellings_are_named_in_their_help():
    """An alias of a shared concept (an old or another tool's spelling) is named in the help, so --help explains it."""
    unnamed = []
    for command, p in PARSERS.items():
        for a in _options(p):
            for spellings in SHARED.values():
                aliases = [f for f in a.option_strings[1:] if f in spellings and f != spellings[0]]
                unnamed += [f"{command} {f}" for f in aliases if f not in (a.help or "")]
    assert unnamed == []


@pytest.mark.parametrize("command", list(PARSERS))
def test_json_is_a_print_switch(command):
    """--json means one thing everywhere: print one JSON object on stdout (a file is --out's). eval's old
    ``--json PATH`` stays accepted as an optional value, noted in its help."""
    for a in _options(PARSERS[command]):
        if "--json" in a.option_strings:
            assert a.nargs in (0, "?") and a.const is True, f"{command}: --json takes a value"
            if a.nargs == "?":
                assert "old" in a.help and "--out" in a.help, f"{command}: --json PATH's note"


def test_the_check_catches_a_drifted_spelling():
    """The spelling check itself: a command whose main spelling is an old one is reported."""
    p = argparse.ArgumentParser()
    p.add_argument("--batch", "--batch-size", help="x")
    p.add_argument("--outdir", help="x")
    p.add_argument("--inference-port", help="x")
    PARSERS["ganserve drifted"] = p
    try:
        with pytest.raises(AssertionError, match=r"--batch/--batch-size.*--outdir.*--inference-port \(inference port"):
            test_shared_options_use_the_shared_spelling("ganserve drifted")
    finally:
        del PARSERS["ganserve drifted"]
