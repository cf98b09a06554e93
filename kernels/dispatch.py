"""Per-shape choice between numerically equivalent implementations of an op, from measurements cached on disk.

An op call on the GPU has a *key* (op, layer shape, dtype and dot precision, batch bucket) and a set of *candidates*:
the Triton kernel in each of a few tile configurations and the PyTorch paths (cuDNN activation scaling, grouped
conv, ...). All candidates compute the same linear map. Which one is fastest depends on the shape, the dtype, the batch,
the card and the Triton version, so the choice is measured, not assumed:

- **Tuning** (``ganserve bench kernels --tune``, or any code run inside ``with tuning():``, or
  $GANSERVE_KERNELS_TUNE=1): on a key without a choice, every candidate runs once, its result is checked against the
  fp32 reference (a candidate outside the tolerance, or one that raises, is rejected), the survivors are timed, and the
  fastest is stored.
- **Serving** (everything else): the choice is read from the table; a key without one runs the op's best-known
  default, which is always a PyTorch path. A request never waits for tuning, and an unmeasured Triton configuration
  never runs on the request path.

The table lives in one JSON file per card, Triton and PyTorch version (a new driver stack or card re-tunes):
$GANSERVE_KERNELS_CACHE (a folder, or a file path ending in .json), else $XDG_CACHE_HOME/ganserve/kernels (default
~/.cache/ganserve/kernels). It is read once per device, on the first call (or on ``load()`` at start-up), and written
atomically (a temporary file renamed over it, merged with what other processes wrote meanwhile). A missing, unreadable
or corrupt file is ignored with a warning: the op then runs its defaults, it never fails.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import statistics
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

FORMAT = 1
CACHE_ENV = "GANSERVE_KERNELS_CACHE"
TUNE_ENV = "GANSERVE_KERNELS_TUNE"

# (candidate name, zero-argument callable running it) -> seconds per call
Timer = Callable[[str, Callable[[], object]], float]
# the candidate's output -> None if it agrees with the reference, else a short reason
Check = Callable[[Any], "str | None"]

_lock = threading.RLock()
_tables: dict[str, TuningTable] = {}
_tune: bool | None = None  # None: follow $GANSERVE_KERNELS_TUNE
_timer: Timer | None = None
stats = {"hits": 0, "defaults": 0, "tuned": 0}  # counters for tests and the bench
last_entry: dict | None = None  # the latest measurement (benchmarks read the candidates' times here)


def batch_bucket(n: int) -> int:
    """Batch sizes share a choice within powers of two: 1, 2, 3-4, 5-8, 9-16, ..."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def fingerprint(device: torch.device | str) -> dict[str, str]:
    """What a measurement depends on besides the shape: the card and the software that compiles for it."""
    device = torch.device(device)
    fp = {"torch": torch.__version__.split("+")[0], "triton": _triton_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        fp.update(
            card=props.name,
            capability=f"{props.major}.{props.minor}",
            sms=str(props.multi_processor_count),
            cuda=str(torch.version.cuda),
        )
    else:
        fp.update(card=device.type)
    return fp


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "none"


def cache_dir() -> Path:
    """$GANSERVE_KERNELS_CACHE (a folder), else $XDG_CACHE_HOME/ganserve/kernels (default ~/.cache/...)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env)
        return path.parent if path.suffix == ".json" else path
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ganserve" / "kernels"


def cache_file(fp: Mapping[str, str]) -> Path:
    """One file per card + Triton + PyTorch version; $GANSERVE_KERNELS_CACHE=path.json names the file itself."""
    env = os.environ.get(CACHE_ENV)
    if env and Path(env).suffix == ".json":
        return Path(env)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", fp.get("card", "unknown")).strip("-").lower() or "unknown"
    sm = fp.get("capability", "")
    name = f"{slug}{'-sm' + sm.replace('.', '') if sm else ''}-triton{fp['triton']}-torch{fp['torch']}.json"
    return cache_dir() / name


class TuningTable:
    """The measured choices of one device: ``{key: {"choice": name, "ms": {name: t}, "rejected": {...}, ...}}``."""

    def __init__(self, path: Path, fp: Mapping[str, str]) -> None:
        self.path, self.fingerprint = Path(path), dict(fp)
        self.entries: dict[str, dict] = {}

    def load(self) -> TuningTable:
        self.entries = self._read()
        return self

    def _read(self) -> dict[str, dict]:
        """The file's valid entries; a missing file is empty, a bad one is ignored with a warning (never raises)."""
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a format-{FORMAT} tuning table")
            if data.get("device") != self.fingerprint:
                raise ValueError(f"measured on {data.get('device')}, this device is {self.fingerprint}")
            entries = data.get("entries")
            if not isinstance(entries, dict):
                raise ValueError("no 'entries' object")
        except (OSError, ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            warnings.warn(f"ignoring the kernel tuning table {self.path}: {e}", RuntimeWarning, stacklevel=3)
            return {}
        good = {k: v for k, v in entries.items() if _valid_entry(v)}
        if len(good) < len(entries):
            bad = sorted(set(entries) - set(good))
            warnings.warn(f"ignoring {len(bad)} malformed entries of {self.path} ({bad[:3]})", RuntimeWarning,
                          stacklevel=3)  # fmt: skip
        return good

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        """Store one choice and write the file: re-read first (another process may have added keys), then replace
        it atomically. A write that fails (read-only cache) warns; the choice still holds for this process."""
        with _lock:
            self.entries[key] = entry
            merged = {**self._read(), **self.entries} if self.path.exists() else dict(self.entries)
            self.entries = merged
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                payload = {"format": FORMAT, "device": self.fingerprint, "entries": merged}
                fd, tmp = tempfile.mkstemp(prefix=".tuning-", suffix=".json", dir=self.path.parent)
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump(payload, f, indent=1, sort_keys=True)
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            except OSError as e:
                warnings.warn(f"could not write the kernel tuning table {self.path}: {e}", RuntimeWarning,
                              stacklevel=2)  # fmt: skip


def _valid_entry(v: object) -> bool:
    return isinstance(v, dict) and isinstance(v.get("choice"), str) and isinstance(v.get("ms", {}), dict)


def _device_key(device: torch.device) -> str:
    return f"{device.type}:{device.index if device.index is not None else 0}" if device.type == "cuda" else device.type


def table(device: torch.device | str) -> TuningTable:
    """The device's table, read from disk on first use."""
    device = torch.device(device)
    dkey = _device_key(device)
    tab = _tables.get(dkey)
    if tab is None:
        with _lock:
            tab = _tables.get(dkey)
            if tab is None:
                fp = fingerprint(device)
                tab = _tables[dkey] = TuningTable(cache_file(fp), fp).load()
    return tab


def load(device: torch.device | str | None = None) -> TuningTable:
    """(Re-)read the device's table from disk now, e.g. at server start-up; returns it."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    with _lock:
        _tables.pop(_device_key(device), None)
        return table(device)


def forget() -> None:
    """Drop every loaded table (they are re-read on next use); for tests and after changing $GANSERVE_KERNELS_CACHE."""
    with _lock:
        _tables.clear()


def tuning_enabled() -> bool:
    if _tune is not None:
        return _tune
    return os.environ.get(TUNE_ENV, "0").strip().lower() in ("1", "true", "on", "yes")


@contextlib.contextmanager
def tuning(enabled: bool = True, timer: Timer | None = None) -> Iterator[None]:
    """Measure keys that have no choice yet while inside this block (warm-up, benchmarks); ``timer`` replaces the
    CUDA-event timer (tests inject fake timings)."""
    global _tune, _timer
    previous = _tune, _timer
    _tune, _timer = enabled, timer if timer is not None else _timer
    try:
        yield
    finally:
        _tune, _timer = previous


def select(
    key: str,
    candidates: Mapping[str, Callable[[], object]],
    default: str,
    device: torch.device | str,
    check: Check | None = None,
) -> str:
    """The name of the candidate to run for ``key``: the stored choice, else (tuning) a fresh measurement, else
    ``default``. ``check`` validates a candidate's output during tuning."""
    if default not in candidates:
        raise ValueError(f"default {default!r} is not a candidate ({sorted(candidates)})")
    entry = table(device).get(key)
    if entry is not None and entry["choice"] in candidates:
        stats["hits"] += 1
        return entry["choice"]
    if not tuning_enabled():
        stats["defaults"] += 1
        return default
    return tune(key, candidates, default, device, check)


def tune(
    key: str,
    candidates: Mapping[str, Callable[[], object]],
    default: str,
    device: torch.device | str,
    check: Check | None = None,
    timer: Timer | None = None,
    store: bool = True,
) -> str:
    """Run, check and time every candidate; store (unless ``store=False``: benchmarks) and return the fastest that
    agrees with the reference. The entry is in ``last_entry`` afterwards."""
    global last_entry
    timer = timer or _timer or cuda_event_timer
    ms: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for name, fn in candidates.items():
        try:
            reason = check(fn()) if check is not None else None
            if reason is None:
                t = float(timer(name, fn))
                if not math.isfinite(t) or t <= 0:
                    raise ValueError(f"timer returned {t}")
                ms[name] = t * 1e3
        except Exception as e:  # a candidate that fails here (compile error, unsupported dtype) is just not chosen
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        if reason is not None:
            rejected[name] = reason
    choice = min(ms, key=lambda n: (ms[n], n != default)) if ms else default  # ties go to the default
    entry = {
        "choice": choice,
        "ms": {k: round(v, 5) for k, v in ms.items()},
        "rejected": rejected,
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if not ms:
        warnings.warn(f"kernel tuning of {key}: every candidate failed ({rejected}); using {default}", RuntimeWarning,
                      stacklevel=2)  # fmt: skip
    if store:
        table(device).put(key, entry)
    last_entry = entry
    stats["tuned"] += 1
    return choice


def cuda_event_timer(name: str, fn: Callable[[], object], calls: int = 5, repeats: int = 7) -> float:
    """Median seconds per call over CUDA events: ``repeats`` windows of ``calls`` back-to-back calls (queued like a
    served request's layers), after two warm-up calls (compilation, caches). Without CUDA: wall clock, 3 single calls
    after one warm-up (only the CPU smoke tests time there)."""
    if not torch.cuda.is_available():
        import time

        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(times)


def max_error_check(reference: Callable[[], torch.Tensor], tolerance: float) -> Check:
    """A check: max |out - ref| <= tolerance * max(1, max |ref|), no NaN; the reference is computed once, lazily."""
    cache: list[torch.Tensor] = []

    def check(out: object) -> str | None:
        if not cache:
            cache.append(reference().float())
        ref = cache[0]
        got = out[0] if isinstance(out, tuple) else out
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
            return f"shape {getattr(got, 'shape', None)} != {tuple(ref.shape)}"
        err = (got.float() - ref).abs().max().item() if ref.numel() else 0.0
        scale = max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
        if not math.isfinite(err) or err > tolerance * scale:
            return f"max error {err:.3g} > {tolerance:g} x {scale:.3g}"
        return None

    return check
