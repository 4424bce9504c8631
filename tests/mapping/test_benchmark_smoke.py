"""The transform benchmark runs and prints its RESULT line (the figures are checked by hand, not here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transform.py"


def test_transform_benchmark_smoke_prints_the_result_line():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke"], capture_output=True, text=True, timeout=120, check=True
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"RESULT rows_per_s=\d+ naive_rows_per_s=\d+ ratio=[\d.]+ peak_mem_ratio=-?[\d.]+", last
    )
    assert "run 1" in proc.stderr
