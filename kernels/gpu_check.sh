#!/usr/bin/env bash
# The prepared GPU run for ganserve's kernels (issue 11): one command on an H100/H200, under 8 minutes, JSON in $OUT.
#
#   bash kernels/gpu_check.sh            # from the repository root; OUT defaults to a new temporary folder
#
# Needs: python3 with torch + triton (the device image: torch 2.11, triton 3.6); the wheels pydantic, pydantic-core,
# annotated-types, typing-inspection, typing_extensions in .whl/ (kernels/README.md says how to download them);
# optionally the official code in .official/stylegan2-ada-pytorch (then its fp32 and mixed synthesis is timed too).
# Writes at most 8 files (what the device tool brings back): log.txt, correctness.json, tuning.json,
# bench/results.{json,md}, generator/results.{json,md}, official.json.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
START=$SECONDS
stamp() { echo "== [$((SECONDS - START)) s] $*"; }
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1

stamp "install"
if ls "$ROOT"/.whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$ROOT"/.whl/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# the package as installed: kernels/, export/, handlers/, checkpoints/ live under ganserve/
SRC=$(mktemp -d)
cp -r "$ROOT/ganserve" "$SRC/ganserve"
for d in kernels export handlers checkpoints; do
    [ -d "$ROOT/$d" ] && cp -r "$ROOT/$d" "$SRC/ganserve/$d"
done
export PYTHONPATH=$SRC${PYTHONPATH:+:$PYTHONPATH}
export GANSERVE_KERNELS_CACHE=$OUT/tuning.json  # the dispatch table this run measures comes back with the results
export TORCH_EXTENSIONS_DIR=/tmp/torch_extensions TORCH_CUDA_ARCH_LIST=9.0
cd "$SRC" || exit 1
python3 - <<'EOF'
import torch, triton, ganserve.kernels as K
print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
EOF
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>/dev/null

OFFICIAL="$ROOT/.official/stylegan2-ada-pytorch"
BUILD_PID=
if [ -d "$OFFICIAL" ]; then  # build the official CUDA plugins on the CPUs while the correctness checks run
    stamp "building the official plugins in the background"
    timeout 200 python3 -m ganserve.benchmarks.gpu_check official --repo "$OFFICIAL" --build-only \
        > /tmp/official-build.log 2>&1 &
    BUILD_PID=$!
fi

stamp "compiling the bench's Triton variants in 6 background processes (Triton's disk cache)"
WARM_PIDS=()
for i in 0 1 2 3 4 5; do
    timeout 120 python3 -m ganserve.benchmarks.gpu_check warm --shard $i --shards 6 > "/tmp/warm-$i.log" 2>&1 &
    WARM_PIDS+=($!)
done

stamp "correctness (every candidate vs the fp32 reference on CUDA)"
timeout 80 python3 -m ganserve.benchmarks.gpu_check correctness --out "$OUT/correctness.json"
echo "correctness exit $?"

stamp "waiting for the compile workers"
wait "${WARM_PIDS[@]}"; cat /tmp/warm-*.log | grep -v Warning | tail -6
if [ -n "$BUILD_PID" ]; then
    stamp "waiting for the plugin build"
    wait "$BUILD_PID"; tail -3 /tmp/official-build.log
fi

stamp "ganserve bench kernels --tune: modulated conv (fp16, fp32 ieee, tf32) and VQ (fp16, bf16)"
timeout 150 python3 -m ganserve.cli bench kernels --tune --only modconv --dtypes float16,float32,tf32 \
    --batch-sizes 8,32 --budget 120 --out "$OUT/bench"
timeout 50 python3 -m ganserve.cli bench kernels --tune --only vq --dtypes float16,bfloat16 --batch-sizes 8,32 \
    --budget 30 --out "$OUT/bench_vq"
# one results file per part would exceed the 8 files that come back: merge VQ into bench/
python3 - "$OUT" <<'EOF'
import json, sys, pathlib, shutil
out = pathlib.Path(sys.argv[1])
a, b = out / "bench" / "results.json", out / "bench_vq" / "results.json"
if b.exists():
    main = json.loads(a.read_text()) if a.exists() else {"tables": {}}
    main["tables"].update(json.loads(b.read_text())["tables"])
    a.parent.mkdir(exist_ok=True)
    a.write_text(json.dumps(main, indent=1))
    md = out / "bench" / "results.md"
    md.write_text((md.read_text() if md.exists() else "") + "\n" + (out / "bench_vq" / "results.md").read_text())
shutil.rmtree(out / "bench_vq", ignore_errors=True)
EOF

stamp "whole generator: fp32 / tf32 / fp16 / mixed, kernels off / on / on + upsampling, CUDA graph, torch.compile fp16"
timeout 130 python3 -m ganserve.cli bench kernels --tune --only generator --batch-sizes 8,32 \
    --precisions fp16,mixed,fp32,tf32 --graphs --compile fp16 --budget 100 --out "$OUT/generator"

if [ -d "$OFFICIAL" ] && [ $((SECONDS - START)) -lt 420 ]; then
    stamp "official stylegan2-ada-pytorch synthesis"
    timeout $((460 - (SECONDS - START))) python3 -m ganserve.benchmarks.gpu_check official --repo "$OFFICIAL" \
        --out "$OUT/official.json"
fi

stamp "summary"
python3 -m ganserve.benchmarks.gpu_check summary "$OUT"
stamp "done; results in $OUT"
