"""The CLI's OpenMP default: passive waiting unless the user chose, set before torch (libgomp) loads."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "import os, sys; import ganserve.cli as cli; "
    "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules); "
    "cli.build_parser(); cli._restore_environment(); print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
)


def _probe(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[:2]


def test_passive_before_torch_loads_then_out_of_the_environment():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    before, after = _probe(env)
    assert before == "PASSIVE False"  # set while torch is not loaded yet: libgomp reads it when it loads
    assert after == "None True"  # torch has read it; child processes keep their own defaults


def test_the_users_value_wins():
    before, after = _probe({**os.environ, "OMP_WAIT_POLICY": "ACTIVE"})
    assert before == "ACTIVE False" and after == "ACTIVE True"
