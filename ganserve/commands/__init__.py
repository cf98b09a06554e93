"""CLI subcommands; each module has ``add_parser(subparsers)`` and ``run(args)``."""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""
