"""One way to time a call for every benchmark: warm up, then the median of wall-clock repeats (synchronising CUDA)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int, device: str = "cpu", warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    return interleaved_median_seconds({"fn": fn}, repeats, device, warmup)["fn"]


def interleaved_median_seconds(
    fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu", warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each call, timed round-robin (one of each per round), so that a shared, noisy machine's
    load falls on every candidate alike and their ratio means something."""
    cuda = str(device).startswith("cuda")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
