"""ganserve bench serve: a bounded load generator on loopback against a real TorchServe.

``--scenario latency`` (default): for batching off (batchSize 1) and on (batchSize B, maxBatchDelay D), it starts a
server with ``ganserve serve``'s defaults (workers per model), sends a fixed number of one-image requests at
each concurrency level from a thread pool, and reports p50 / p99 latency and images/s. The server's overhead is
paired per request: the client's latency minus the ``X-Ganserve-Handler-Ms`` header *of the same response* (the
worker's own time), then the median and spread of those differences: frontend, IPC and HTTP alone. (Two medians
measured apart are never subtracted; the in-process time of the same request through SampleService is printed for
reference only.)

``--scenario front``: the latency ganserve's front adds on the inference port. One server (batching off); each
request goes once through the front and once straight to TorchServe's loopback port behind it, the order alternating
call by call, on one keep-alive connection each, from one thread; the paired differences (front minus direct) give the
added latency, for ``GET /ping`` (TorchServe's frontend alone) and a one-image prediction.

``--scenario worker-kill``: ``--clients`` threads send ``--requests`` one-image requests while one worker is
SIGKILLed a third of the way through, for each workers x client-retries setting; it counts the answers that were not
200 and times the worker's restart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ganserve.benchmarks.timing import cli_command
from ganserve.loading import resolve


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="latency and throughput of a real TorchServe on loopback, batching on and off",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    p.add_argument("--model", default="stylegan2-fashion-32", help="model name or checkpoint path")
    p.add_argument(
        "--scenario",
        choices=["latency", "front", "worker-kill"],
        default="latency",
        help="what to measure (front: the latency ganserve's front adds, paired with direct calls)",
    )
    p.add_argument("--concurrency", default="1,8,16,32", help="comma-separated concurrent clients")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level / per setting (bounded)")
    p.add_argument("--batch-size", type=int, default=8, help="TorchServe batchSize when batching is on")
    p.add_argument("--max-batch-delay", type=int, default=5, help="ms (ganserve serve's default)")
    p.add_argument("--modes", default="off,on", help="batching modes to run (off, on or both)")
    p.add_argument("--workers", default=None, help="workers per model (default: ganserve serve's); worker-kill: a "
                   "comma-separated list")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker and in process (torch's)")
    p.add_argument("--clients", type=int, default=8, help="worker-kill: concurrent clients")
    p.add_argument("--retries", default="0,1", help="worker-kill: client retries to compare")
    p.add_argument("--port", "--inference-port", dest="port", type=int, default=0,
                   help="inference port, as `ganserve serve --port` (0: picked free on 127.0.0.1; --inference-port: "
                        "the old spelling)")  # fmt: skip
    p.add_argument("--management-port", type=int, default=0, help="TorchServe management port (0: picked free on "
                   "127.0.0.1)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return p


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


IN_PROCESS = r"""
import json, statistics, sys, time
import torch
from ganserve.serving.service import SampleService
checkpoint, n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
service = SampleService.from_checkpoint(checkpoint)
for i in range(4):
    service.handle_batch([{"seeds": [i]}])  # warm-up
times = []
for i in range(n):
    t0 = time.perf_counter()
    (r,) = service.handle_batch([{"seeds": [i]}])
    times.append((time.perf_counter() - t0) * 1000)
    assert r.status == 200, r.body
print(json.dumps(statistics.median(times)))
"""


def _in_process(checkpoint: Path, n: int, threads: int | None, workers: int) -> float:
    """Median ms for one one-image request through the serving core, no HTTP, in a fresh process with a worker's
    thread count and OpenMP settings (they are fixed at process start, and decide a lot on a busy machine)."""
    from ganserve.serving.launcher import worker_env

    env = {**os.environ, **worker_env(workers)}
    cmd = [sys.executable, "-c", IN_PROCESS, str(checkpoint), str(n), str(threads or 0)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _load(client, model: str, concurrency: int, n: int) -> dict:
    def one(i: int) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        r = client.predict_raw(model, {"seeds": [i]})
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        h = r.headers
        return ((time.perf_counter() - t0) * 1000, float(h.get("X-Ganserve-Generator-Ms", "nan")),
                float(h.get("X-Ganserve-Handler-Ms", "nan")))  # fmt: skip

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up: connections and workers
        t0 = time.perf_counter()
        timed = list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    lat = [t for t, _, _ in timed]
    overhead = paired_overhead(timed)
    return {
        "concurrency": concurrency,
        "p50_ms": round(_percentile(lat, 50), 1),
        "p99_ms": round(_percentile(lat, 99), 1),
        "images_per_s": round(n / wall, 2),
        # per request: latency minus the generator time of its batch (queueing, HTTP, frontend, IPC, encoding)
        "non_generator_p50_ms": round(_percentile([t - g for t, g, _ in timed], 50), 1),
        # latency minus the worker's time for its batch, paired per response: queueing, frontend, IPC, HTTP
        "outside_worker_p50_ms": overhead["median_ms"],
        "outside_worker_ms": overhead,
    }


def paired_overhead(timed: list[tuple[float, float, float]]) -> dict:
    """Per request: client latency minus the X-Ganserve-Handler-Ms of the same response (ms); the median and spread
    of those paired differences. Responses without the header are left out and counted."""
    diffs = sorted(t - w for t, _, w in timed if w == w)  # NaN: no header
    if not diffs:
        return {"median_ms": float("nan"), "q1_ms": float("nan"), "q3_ms": float("nan"), "pairs": 0,
                "missing_header": len(timed)}  # fmt: skip
    return {"median_ms": round(statistics.median(diffs), 2), "q1_ms": round(_percentile(diffs, 25), 2),
            "q3_ms": round(_percentile(diffs, 75), 2), "pairs": len(diffs),
            "missing_header": len(timed) - len(diffs)}  # fmt: skip


def _probe(client, model: str, n: int = 32) -> dict:
    """p50 of requests that never reach the generator: the frontend alone, and frontend + worker + validation."""

    def p50(fn) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(times), 1)

    ping = p50(client.ping)
    invalid = p50(lambda: client.predict_raw(model, {"seeds": [1], "truncation_psi": 99}))
    return {"ping_p50_ms": ping, "invalid_request_p50_ms": invalid}


def _defaults(args: argparse.Namespace, checkpoint: Path) -> tuple[int, int | None]:
    from ganserve.commands.serve import default_workers

    workers = int(args.workers) if args.workers else default_workers({"m": checkpoint})
    return workers, args.threads


def run(args: argparse.Namespace) -> int:
    if args.scenario == "worker-kill":
        return run_worker_kill(args)
    if args.scenario == "front":
        return run_front(args)
    from ganserve.serving.store import ArchiveOptions

    checkpoint = resolve(args.model)
    name = checkpoint.stem
    levels = [int(c) for c in args.concurrency.split(",")]
    workers, threads = _defaults(args, checkpoint)
    report: dict = {"command": cli_command(args), "model": name, "requests_per_level": args.requests,
                    "workers": workers, "threads": threads,
                    "cpus": os.cpu_count()}  # fmt: skip
    report["in_process_p50_ms"] = round(_in_process(checkpoint, 32, threads, workers), 1)
    for mode in args.modes.split(","):
        bs = args.batch_size if mode == "on" else 1
        options = ArchiveOptions(batch_size=bs, max_batch_delay_ms=args.max_batch_delay if bs > 1 else 1,
                                 generator_batch_size=max(bs, 1), min_workers=workers, max_workers=workers,
                                 threads=threads)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp, _server(args, {name: checkpoint}, Path(tmp), options) as server:
            client = server.client(retries=0)  # a retry would hide what is measured
            rows = [_load(client, name, c, args.requests) for c in levels]
            probe = _probe(client, name) if mode == "off" else None
        report[f"batching_{mode}"] = {"batch_size": bs, "max_batch_delay_ms": args.max_batch_delay, "rows": rows}
        if probe:
            report["overhead_probe_batching_off"] = probe
    if "batching_off" in report:  # paired per response, never in-process median subtracted from a latency median
        report["server_overhead_ms_at_concurrency_1"] = report["batching_off"]["rows"][0]["outside_worker_ms"]
    if "batching_on" in report and "batching_off" in report:
        ratios = {}
        for on, off in zip(report["batching_on"]["rows"], report["batching_off"]["rows"]):
            ratios[str(on["concurrency"])] = round(on["images_per_s"] / off["images_per_s"], 2)
        report["throughput_on_over_off"] = ratios
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"$ {report['command']}")
    print(f"model {name}: in-process p50 {report['in_process_p50_ms']} ms per one-image request "
          f"({threads or 'default'} torch thread(s), as each of the {workers} worker(s))")  # fmt: skip
    for mode in ("off", "on"):
        block = report.get(f"batching_{mode}")
        if not block:
            continue
        print(f"batching {mode} (batchSize {block['batch_size']}):")
        for r in block["rows"]:
            print(f"  concurrency {r['concurrency']:>3}: p50 {r['p50_ms']:>8} ms  p99 {r['p99_ms']:>8} ms  "
                  f"{r['images_per_s']:>8} images/s  non-generator p50 {r['non_generator_p50_ms']} ms  "
                  f"outside-worker p50 {r['outside_worker_p50_ms']} ms")  # fmt: skip
    for key in ("server_overhead_ms_at_concurrency_1", "overhead_probe_batching_off", "throughput_on_over_off"):
        if key in report:
            print(f"{key}: {report[key]}")
    return 0


def _server(args: argparse.Namespace, checkpoints: dict, workdir: Path, options):
    """A Server on the given ports (0: picked free on 127.0.0.1); a bad or busy port is an error naming its flag."""
    from ganserve.serving.launcher import Server, port_is_free

    for flag, port in (("--port", args.port), ("--management-port", args.management_port)):
        if not 0 <= port <= 65535:
            raise ValueError(f"{flag}: {port} is not a port number (0-65535; 0 picks a free one)")
        if port and not port_is_free("127.0.0.1", port):
            raise ValueError(f"{flag}: port {port} on 127.0.0.1 is in use")
    if args.port and args.port == args.management_port:
        raise ValueError(f"--port and --management-port are both {args.port}")
    return Server(checkpoints, workdir, archive=options, inference_port=args.port,
                  management_port=args.management_port)  # fmt: skip


# ---- front ---------------------------------------------------------------------------------------------------------
def paired_calls(front: Callable[[int], int], direct: Callable[[int], int], n: int, warmup: int = 4) -> dict:
    """``n`` pairs of calls (each returns its HTTP status), alternated call by call (front first on even i, direct
    first on odd i); ms of each side and of the paired differences front - direct."""
    for i in range(warmup):
        front(i), direct(i)
    times: dict[str, list[float]] = {"front": [], "direct": []}
    for i in range(n):
        for side in ("front", "direct") if i % 2 == 0 else ("direct", "front"):
            t0 = time.perf_counter()
            status = (front if side == "front" else direct)(i)
            times[side].append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"{side}: HTTP {status}")
    diffs = sorted(f - d for f, d in zip(times["front"], times["direct"]))
    ratios = sorted(f / d for f, d in zip(times["front"], times["direct"]))  # per pair, never a ratio of medians
    return {"pairs": n, "front_p50_ms": round(statistics.median(times["front"]), 2),
            "direct_p50_ms": round(statistics.median(times["direct"]), 2),
            "added_median_ms": round(statistics.median(diffs), 2), "added_q1_ms": round(_percentile(diffs, 25), 2),
            "added_q3_ms": round(_percentile(diffs, 75), 2), "front_over_direct": round(statistics.median(ratios), 3),
            "ratio_q1": round(_percentile(ratios, 25), 3), "ratio_q3": round(_percentile(ratios, 75), 3)}  # fmt: skip


def run_front(args: argparse.Namespace) -> int:
    from ganserve.serving.client import Client
    from ganserve.serving.store import ArchiveOptions

    checkpoint = resolve(args.model)
    name = checkpoint.stem
    workers, threads = _defaults(args, checkpoint)
    options = ArchiveOptions(batch_size=1, max_batch_delay_ms=1, min_workers=workers, max_workers=workers,
                             threads=threads)  # fmt: skip
    report: dict = {"command": cli_command(args), "model": name, "workers": workers, "threads": threads,
                    "cpus": os.cpu_count()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, _server(args, {name: checkpoint}, Path(tmp), options) as server:
        through = server.client(retries=0)  # the public port: ganserve's front
        direct = Client(server.config.upstream_url, server.config.management_url, key_file=server.key_file,
                        retries=0)  # fmt: skip
        report["ping"] = paired_calls(lambda i: through.ping().status_code, lambda i: direct.ping().status_code,
                                      args.requests)  # fmt: skip
        report["predict_one_image"] = paired_calls(
            lambda i: through.predict_raw(name, {"seeds": [i]}).status_code,
            lambda i: direct.predict_raw(name, {"seeds": [i]}).status_code, args.requests,
        )  # fmt: skip
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"$ {report['command']}")
    for key in ("ping", "predict_one_image"):
        r = report[key]
        print(f"{key}: front p50 {r['front_p50_ms']} ms, direct p50 {r['direct_p50_ms']} ms, added (paired) median "
              f"{r['added_median_ms']} ms [IQR {r['added_q1_ms']}..{r['added_q3_ms']}], front / direct per pair "
              f"{r['front_over_direct']} [IQR {r['ratio_q1']}..{r['ratio_q3']}] ({r['pairs']} pairs)")  # fmt: skip
    return 0


# ---- worker-kill -------------------------------------------------------------------------------------------------
def kill_one_worker(client, model: str) -> int:
    """SIGKILL the first worker of ``model`` (its pid from the management API); returns the pid."""
    pid = int(client.model_info(model)[0]["workers"][0]["pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_workers_ready(client, model: str, old_pid: int, limit_s: float = 120) -> float | None:
    """Seconds until every worker is READY again with the killed one replaced, or None after ``limit_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        try:
            workers = client.model_info(model)[0]["workers"]
            pids = {int(w.get("pid") or -1) for w in workers}
            if workers and old_pid not in pids and all(w.get("status") == "READY" for w in workers):
                return time.monotonic() - t0
        except Exception:  # the management API is busy or between states
            pass
        time.sleep(0.1)
    return None


def load_with_a_kill(client, model: str, clients: int, n: int) -> dict:
    """``n`` one-image requests from ``clients`` threads; one worker SIGKILLed after n/3 answers."""
    statuses: Counter = Counter()
    samples: dict[str, str] = {}  # one answer per failing status, to say what it was
    done = 0
    lock = threading.Lock()
    killed = threading.Event()
    result: dict = {}

    def one(i: int) -> None:
        nonlocal done
        try:
            r = client.predict_raw(model, {"seeds": [i]})
            status, text = r.status_code, r.text
        except Exception as e:  # a connection the frontend dropped counts as lost too
            status, text = type(e).__name__, str(e)
        with lock:
            if status != 200:
                samples.setdefault(str(status), " ".join(text.split())[:200])
            statuses[status] += 1
            done += 1
            kill_now = done >= n // 3 and not killed.is_set()
            if kill_now:
                killed.set()
        if kill_now:
            pid = kill_one_worker(client, model)
            result["restart_s"] = wait_workers_ready(client, model, pid)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    result.update(requests=n, wall_s=round(time.perf_counter() - t0, 1),
                  statuses={str(k): v for k, v in sorted(statuses.items(), key=str)},
                  not_200=n - statuses.get(200, 0), failures=samples)  # fmt: skip
    if result.get("restart_s") is not None:
        result["restart_s"] = round(result["restart_s"], 1)
    return result


def run_worker_kill(args: argparse.Namespace) -> int:
    from ganserve.serving.store import ArchiveOptions

    checkpoint = resolve(args.model)
    name = checkpoint.stem
    rows = []
    for workers in [int(w) for w in (args.workers or "1,2").split(",")]:
        threads = args.threads
        options = ArchiveOptions(batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay,
                                 min_workers=workers, max_workers=workers, threads=threads)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp, _server(args, {name: checkpoint}, Path(tmp), options) as server:
            for retries in [int(r) for r in args.retries.split(",")]:
                client = server.client(retries=retries)
                row = load_with_a_kill(client, name, args.clients, args.requests)
                rows.append({"workers": workers, "threads": threads, "client_retries": retries, **row})
                if not args.json:
                    print(json.dumps(rows[-1]), flush=True)
    if args.json:
        print(json.dumps({"model": name, "clients": args.clients, "batch_size": args.batch_size, "rows": rows}))
    return 0
