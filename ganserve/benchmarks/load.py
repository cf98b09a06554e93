"""Cold load: a fresh process imports ganserve and loads models, its meta skeleton built either plainly under
``torch.device("meta")`` (torch's Python meta kernels, which import torch._dynamo, sympy and triton) or through
``ganserve.skeleton.shape_only`` (what ``ganserve.load`` does). Each call is a whole process, as for a CLI call or a
TorchServe worker; the two are alternated call by call (``timing.compare``).

python3 -m ganserve.benchmarks.load [--models all|NAME,NAME] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from ganserve.benchmarks.timing import command_line, compare

CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(int(sys.argv[3]))
import ganserve, ganserve.loading as loading
if sys.argv[1] == "plain":
    def plain(build):
        with torch.device("meta"):
            return build()
    loading.build_on_meta = plain
names = list(ganserve.available_models()) if sys.argv[2] == "all" else sys.argv[2].split(",")
for name in names:
    ganserve.load(name)
print(json.dumps({"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "heavy": [m for m in ("torch._dynamo", "sympy", "triton") if m in sys.modules]}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m ganserve.benchmarks.load", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="stylegan2-fashion-32", help="'all' (every bundled model) or NAME,NAME")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    seen: dict[str, list[dict]] = {"plain": [], "shape_only": []}

    def child(kind: str) -> None:
        proc = subprocess.run([sys.executable, "-c", CHILD, kind, args.models, str(args.threads)],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        if proc.returncode:
            raise SystemExit(f"the {kind} load failed: {proc.stderr.strip().splitlines()[-1:]}")
        seen[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))

    c = compare({k: (lambda k=k: child(k)) for k in seen}, args.repeats, baseline="plain", warmup=0)
    print(command_line("python3 -m ganserve.benchmarks.load", argv))
    for kind, runs in seen.items():
        rss = statistics.median(r["max_rss_mib"] for r in runs)
        print(f"{kind:10s} median {c.median(kind):.2f} s per process, max RSS {rss:.0f} MiB, "
              f"imports {', '.join(runs[0]['heavy']) or 'none of torch._dynamo/sympy/triton'}")  # fmt: skip
    print(f"shape_only vs plain: {c.speedup('shape_only')} ({args.repeats} rounds, {args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
