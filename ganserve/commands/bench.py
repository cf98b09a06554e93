"""ganserve bench WHAT ...: benchmarks that print numbers (never tests). One module per benchmark in
ganserve/benchmarks/, each with ``add_parser(sub)`` and ``run(args)``."""

from __future__ import annotations

import argparse
import importlib

BENCHES = ["sample", "precision", "kernels", "serve"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("bench", help="benchmarks: images/s, latency, kernel timings")
    bench_sub = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    for name in BENCHES:
        module = importlib.import_module(f"ganserve.benchmarks.{name}")
        bench = module.add_parser(bench_sub)
        # Each bench prints the command that reproduces its figures: rebuilt from its parser and the parsed args.
        bench.set_defaults(_bench_run=module.run, _bench_parser=bench)
    return p


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
