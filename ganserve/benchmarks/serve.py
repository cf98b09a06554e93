"""ganserve bench serve: a bounded load generator on loopback against a real TorchServe.

For batching off (batchSize 1) and on (batchSize B, maxBatchDelay D), it starts a server, sends a fixed number of
one-image requests at each concurrency level from a thread pool, and reports p50 / p99 latency and images/s; beside
it, the in-process time of the same requests through SampleService (the server's overhead is the difference).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ganserve.loading import resolve


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="latency and throughput of a real TorchServe on loopback, batching on and off")
    p.add_argument("--model", default="stylegan2-fashion-32")
    p.add_argument("--concurrency", default="1,8,16,32")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level (bounded)")
    p.add_argument("--batch-size", type=int, default=8, help="TorchServe batchSize when batching is on")
    p.add_argument("--max-batch-delay", type=int, default=20, help="ms")
    p.add_argument("--modes", default="off,on", help="batching modes to run")
    p.add_argument("--json", action="store_true")
    return p


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def _in_process(checkpoint: Path, n: int) -> float:
    """Median ms for one one-image request through the serving core, no HTTP."""
    from ganserve.serving.service import SampleService

    service = SampleService.from_checkpoint(str(checkpoint))
    service.handle_batch([{"seeds": [0]}])  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        (r,) = service.handle_batch([{"seeds": [i]}])
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200
    return statistics.median(times)


def _load(client, model: str, concurrency: int, n: int) -> dict:
    def one(i: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        r = client.predict_raw(model, {"seeds": [i]})
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        return (time.perf_counter() - t0) * 1000, float(r.headers.get("X-Ganserve-Generator-Ms", "nan"))

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up: connections and workers
        t0 = time.perf_counter()
        timed = list(pool.map(one, range(n)))
        wall = time.perf_counter() - t0
    lat = [t for t, _ in timed]
    return {
        "concurrency": concurrency,
        "p50_ms": round(_percentile(lat, 50), 1),
        "p99_ms": round(_percentile(lat, 99), 1),
        "images_per_s": round(n / wall, 2),
        # per request: latency minus the generator time of its batch (queueing, HTTP, frontend, IPC, encoding)
        "non_generator_p50_ms": round(_percentile([t - g for t, g in timed], 50), 1),
    }


def _probe(client, model: str, n: int = 32) -> dict:
    """p50 of requests that never reach the generator: the frontend alone, and frontend + worker + validation."""

    def p50(fn) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(times), 1)

    auth = client._auth(client.inference_key)
    ping = p50(lambda: client.session.get(f"{client.inference_url}/ping", headers=auth, timeout=30))
    invalid = p50(lambda: client.predict_raw(model, {"seeds": [1], "truncation_psi": 99}))
    return {"ping_p50_ms": ping, "invalid_request_p50_ms": invalid}


def run(args: argparse.Namespace) -> int:
    from ganserve.serving.launcher import Server
    from ganserve.serving.store import ArchiveOptions

    checkpoint = resolve(args.model)
    name = checkpoint.stem
    levels = [int(c) for c in args.concurrency.split(",")]
    report: dict = {"model": name, "requests_per_level": args.requests}
    report["in_process_p50_ms"] = round(_in_process(checkpoint, 16), 1)
    for mode in args.modes.split(","):
        bs = args.batch_size if mode == "on" else 1
        options = ArchiveOptions(batch_size=bs, max_batch_delay_ms=args.max_batch_delay if bs > 1 else 1,
                                 generator_batch_size=max(bs, 1))  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp, Server({name: checkpoint}, Path(tmp), archive=options) as server:
            client = server.client()
            rows = [_load(client, name, c, args.requests) for c in levels]
            probe = _probe(client, name) if mode == "off" else None
        report[f"batching_{mode}"] = {"batch_size": bs, "rows": rows}
        if probe:
            report["overhead_probe_batching_off"] = probe
    if "batching_off" in report:
        p50_1 = report["batching_off"]["rows"][0]["p50_ms"]
        report["server_overhead_p50_ms_at_concurrency_1"] = round(p50_1 - report["in_process_p50_ms"], 1)
    if "batching_on" in report and "batching_off" in report:
        ratios = {}
        for on, off in zip(report["batching_on"]["rows"], report["batching_off"]["rows"]):
            ratios[str(on["concurrency"])] = round(on["images_per_s"] / off["images_per_s"], 2)
        report["throughput_on_over_off"] = ratios
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"model {name}: in-process p50 {report['in_process_p50_ms']} ms per one-image request")
    for mode in ("off", "on"):
        block = report.get(f"batching_{mode}")
        if not block:
            continue
        print(f"batching {mode} (batchSize {block['batch_size']}):")
        for r in block["rows"]:
            print(f"  concurrency {r['concurrency']:>3}: p50 {r['p50_ms']:>8} ms  p99 {r['p99_ms']:>8} ms  "
                  f"{r['images_per_s']:>8} images/s  non-generator p50 {r['non_generator_p50_ms']} ms")  # fmt: skip
    for key in ("server_overhead_p50_ms_at_concurrency_1", "overhead_probe_batching_off", "throughput_on_over_off"):
        if key in report:
            print(f"{key}: {report[key]}")
    return 0
