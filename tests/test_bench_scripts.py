"""Every benchmark script starts and answers ``--help``.

Benchmarks are not run in CI (they take minutes and measure speed), but a script that cannot even start
is a broken tool: a file named ``bench/cuda.py`` once shadowed the ``cuda`` package that torch imports,
and every script in ``bench/`` died at ``import torch``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(path.name for path in BENCH.glob("*.py")))
def test_benchmark_script_starts(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
