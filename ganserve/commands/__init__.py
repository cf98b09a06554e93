"""CLI subcommands; each module has ``add_parser(subparsers)`` and ``run(args)``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _no_default(value: object) -> bool:
    """None, False, SUPPRESS or an empty list: nothing worth showing (0 and 0.0 are shown; ``0 in (False,)`` is true,
    hence the identity checks)."""
    return value is None or value is False or value is argparse.SUPPRESS or value == []


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, unless it has none (None, False) or the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or _no_default(action.default):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """ganserve's parsers: defaults shown in --help, and a bad argument is one line naming it (exit 2)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi], refused with the range otherwise (0, -1, 1e30, 'x')."""

    def parse(text: str) -> int:
        t = text.strip()
        if not (t.lstrip("-").isascii() and t.lstrip("-").isdigit()) or not lo <= int(t) <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer in [{lo}, {hi}], got {text!r}")
        return int(t)

    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse
