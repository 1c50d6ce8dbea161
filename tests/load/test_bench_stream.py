"""Bench: the rollups handler's CPU and wall time per batch of 100 results, in a process of its own.

Its tables are on a moto server in another process, a few milliseconds a request away, as DynamoDB is from
Lambda.  `.chalice/config.json` gives the results-stream handlers 512 MB (0.29 vCPU) because they mostly wait
(docs/decisions.md); the bench fails when the handler's CPU outgrows that: when a batch would take more than
3 s at that share, or its memory would not fit 256 MB.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from tests.load.conftest import process_env

BATCHES = 5
MB_PER_VCPU = 1769
MAX_BATCH_S_AT_CONFIGURED_SHARE = 3.0


def test_the_rollups_handler_mostly_waits_on_its_writes(aws_endpoint: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.load.rollups_run", str(BATCHES)],
        cwd=Path(__file__).resolve().parents[2],
        env=process_env(aws_endpoint),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.splitlines()[-1])
    cpu = statistics.median(c for c, _ in run["batches"])
    wall = statistics.median(w for _, w in run["batches"])
    memory = json.loads((Path(__file__).resolve().parents[2] / ".chalice" / "config.json").read_text())
    share = memory["lambda_functions"]["rollups"]["lambda_memory_size"] / MB_PER_VCPU
    # Waiting stays as long at any share; the CPU stretches by 1 / share.
    at_share = wall - cpu + cpu / share
    print(
        f"\nrollups, {run['records']} new results a batch (median of {BATCHES}):\n"
        f"  {cpu * 1000 / run['records']:.2f} ms CPU and {wall * 1000 / run['records']:.1f} ms wall a record"
        f" ({cpu / wall:.0%} busy at a whole core); {at_share:.2f} s a batch at {share:.2f} vCPU\n"
        f"  memory: {run['rss_loaded_mb']:.0f} MB loaded, {run['rss_peak_mb']:.0f} MB at the peak"
    )
    assert at_share <= MAX_BATCH_S_AT_CONFIGURED_SHARE
    assert run["rss_peak_mb"] <= 200
