"""One timing discipline for every benchmark.

Candidates are warmed up, then timed call by call in rounds (each round calls every candidate once, the starting
candidate rotating from round to round), so a shared, noisy machine's load falls on all of them alike. A speed-up is
the median of the per-round *paired* ratios (baseline's time / candidate's time in the same round), reported with its
spread; never a ratio of two medians taken at different times. Every side runs at the same thread count: torch's
intra-op threads and onnxruntime's session threads come from :func:`set_threads` / :func:`ort_session_options`.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Spread:
    """Median and spread of a sample (per-round paired ratios, or seconds)."""

    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarise")
        if len(values) == 1:
            q1 = q3 = values[0]
        else:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q1, q3, min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.2f}x (IQR {self.q1:.2f}-{self.q3:.2f}, range {self.min:.2f}-{self.max:.2f})"


@dataclass
class Comparison:
    """Per-round seconds of each candidate, timed alternately; ``baseline`` is the one speed-ups are against."""

    seconds: dict[str, list[float]]
    baseline: str
    threads: int
    order: list[str] = field(default_factory=list)  # every timed call's candidate, in call order

    def median(self, name: str) -> float:
        """Median seconds per call of ``name``."""
        return statistics.median(self.seconds[name])

    def ratios(self, name: str, over: str | None = None) -> list[float]:
        """Per-round paired speed-ups of ``name`` over ``over`` (default: the baseline); >1: ``name`` is faster."""
        base = self.seconds[self.baseline if over is None else over]
        return [b / c for b, c in zip(base, self.seconds[name])]

    def speedup(self, name: str, over: str | None = None) -> Spread:
        """Median and spread of the per-round paired speed-ups of ``name`` over ``over`` (default: the baseline)."""
        return Spread.of(self.ratios(name, over))

    def summary(self, batch: int | None = None) -> dict[str, Any]:
        """JSON-ready: each candidate's median ms (and images/s for ``batch``), each speed-up with its spread."""
        out: dict[str, Any] = {"rounds": len(self.seconds[self.baseline]), "threads": self.threads}
        for name in self.seconds:
            out[f"{name}_ms"] = round(self.median(name) * 1000, 3)
            if batch:
                out[f"{name}_images_per_s"] = round(batch / self.median(name), 2)
        for name in self.seconds:
            if name != self.baseline:
                s = self.speedup(name)
                out[f"{name}_vs_{self.baseline}"] = {
                    "median": round(s.median, 3), "q1": round(s.q1, 3), "q3": round(s.q3, 3),
                    "min": round(s.min, 3), "max": round(s.max, 3),
                }  # fmt: skip
        return out


def compare(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    *,
    baseline: str | None = None,
    device: str = "cpu",
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Time every candidate ``repeats`` times, alternating call by call after ``warmup`` alternated untimed rounds.

    The starting candidate rotates each round, so no candidate always runs right after the same other one.
    """
    if not fns:
        raise ValueError("nothing to time")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    baseline = names[0] if baseline is None else baseline
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is not one of {names}")
    cuda = str(device).startswith("cuda")
    for _ in range(warmup):
        for name in names:
            fns[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    order: list[str] = []
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if cuda:
                torch.cuda.synchronize()
            t0 = clock()
            fns[name]()
            if cuda:
                torch.cuda.synchronize()
            seconds[name].append(clock() - t0)
            order.append(name)
    return Comparison(seconds, baseline, torch.get_num_threads(), order)


def interleaved_median_seconds(
    fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu", warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each candidate, timed by :func:`compare`."""
    c = compare(fns, repeats, device=device, warmup=warmup)
    return {name: c.median(name) for name in fns}


def median_seconds(fn: Callable[[], object], repeats: int, device: str = "cpu", warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    return interleaved_median_seconds({"fn": fn}, repeats, device, warmup)["fn"]


def set_threads(threads: int) -> int:
    """Torch's intra-op thread count for this process (the same number goes to onnxruntime's sessions)."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads


def ort_session_options(threads: int) -> Any:
    """onnxruntime SessionOptions at ``threads`` intra-op threads and one inter-op thread, as torch runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return opts


def command_line(prog: str, argv: list[str] | None = None) -> str:
    """The command that reproduces a result, printed beside it."""
    return shlex.join([*prog.split(), *(sys.argv[1:] if argv is None else argv)])


def parsed_command_line(prog: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The command that reproduces ``args`` (every option that differs from its default), rebuilt from the parser:
    right however the bench was called (CLI, or ``main([...])`` in process)."""
    words = prog.split()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help" or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        # the main spelling: the first long one (aliases, e.g. old spellings, come after it)
        flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        words += [flag] if isinstance(action, argparse._StoreTrueAction) else [flag, str(value)]
    return shlex.join(words)


def cli_command(args: argparse.Namespace) -> str:
    """``ganserve bench WHAT ...`` for a bench's parsed args (its parser is set as a default by ``ganserve bench``)."""
    parser = getattr(args, "_bench_parser", None)
    if parser is None:
        return command_line("ganserve")
    return parsed_command_line(f"ganserve bench {args.bench}", parser, args)
