"""How big a check worker is, and how many checks one of its invocations takes: pure arithmetic (issue 13).

A worker's memory buys its CPU (Lambda: 1 vCPU at 1,769 MB), and an invocation is held, and billed, for its whole
minute whatever it runs.  So its cost per check is its memory over the checks it runs, and two things waste it:

1. **A CPU figure that is not the worker's.**  Until the deployed workers have measured their own CPU per check
   (the worker records it, :mod:`chalicelib.monitors.load`), the figure is :data:`ASSUMED_CPU_MS`: the bench's
   worst x86_64 measurement, times an assumed arm64 factor (``infra/build.py`` says where they come from).
2. **Lanes that are not full.**  A region's minute of N checks is dealt to ``m`` messages (*lanes*), one
   invocation each.  With the memory fixed for 2,000 checks, 4,896 checks took three lanes each 82 % full.

So the scheduler sizes both from what it knows (:mod:`chalicelib.scheduler.sizing`): the lanes from the memory the
worker has now (:func:`capacity`), and that memory from the region's peak minute and its measured CPU
(:func:`plan`): the fewest lanes that take it, each sized for its share.
"""

from __future__ import annotations

import math

LAMBDA_MB_PER_VCPU = 1769
# At most this share of its CPU busy over the minute: above it, a capped worker measures its targets slower
# (tests/load/test_bench_checker.py: at 448 MB 61-67 % busy measured 6.8-9.4 ms at p95 where a free CPU measured
# 6.7-6.9; at 416 MB 75 % and 26 ms).
CPU_SHARE = 0.70
X86_CPU_MS_PER_CHECK = 4.0  # assumed until measured (infra/build.py: the bench's slowest machine)
ARM64_CPU_FACTOR = 1.3  # assumed: Graviton2 runs CPython and OpenSSL somewhat slower per core
ASSUMED_CPU_MS = X86_CPU_MS_PER_CHECK * ARM64_CPU_FACTOR
# No lane below this: a smaller share of a CPU stalls a check's handshake for the rest of its throttling period
# (the capped bench: 220 MB at 64 % busy measured a 6.2 ms target at 101 ms p95).  Also above the worker's
# resident memory (160 MB at the bench's peak, with 32 checks' bodies besides).
MIN_MEMORY_MB = 439
MAX_MEMORY_MB = LAMBDA_MB_PER_VCPU  # one vCPU: one Python process uses no more
# And at most this many checks a lane, whatever its CPU: its 48 check threads (functions.checker.worker) then have
# 0.96 s each per check on average, as 2,000 checks had on 32 threads — room for targets that answer slowly.
MAX_LANE_CHECKS = 3000
HEADROOM = 1.05  # the peak minute's checks, and this much more, fit the lanes planned for it
DEFAULT_CHECKS = 2000  # the deployed worker's first size: one message of 2,000 checks, before any is measured


def memory_for(checks: float, cpu_ms: float) -> int:
    """Memory (MB, Lambda's 1 MB steps) whose CPU runs ``checks`` checks of ``cpu_ms`` in a minute at
    :data:`CPU_SHARE` busy."""
    vcpu = checks * cpu_ms / 1000 / 60 / CPU_SHARE
    return math.ceil(round(vcpu * LAMBDA_MB_PER_VCPU, 6))


def capacity(memory_mb: int, cpu_ms: float) -> int:
    """Checks one invocation of ``memory_mb`` runs in its minute: at :data:`CPU_SHARE` busy, and at most
    :data:`MAX_LANE_CHECKS` (at least 1)."""
    fits = math.floor(round(memory_mb / LAMBDA_MB_PER_VCPU * 60 * CPU_SHARE * 1000 / cpu_ms, 6))
    return max(1, min(MAX_LANE_CHECKS, fits))


def plan(peak: int, cpu_ms: float) -> int:
    """The worker's memory for a region whose busiest minute holds ``peak`` checks of ``cpu_ms`` each: the fewest
    lanes that take its checks (and :data:`HEADROOM`) at most :data:`MAX_LANE_CHECKS` and one vCPU each, each sized
    for its share, never below :data:`MIN_MEMORY_MB`."""
    checks = math.ceil(peak * HEADROOM)
    count = max(1, math.ceil(checks / MAX_LANE_CHECKS), math.ceil(memory_for(checks, cpu_ms) / MAX_MEMORY_MB))
    return min(MAX_MEMORY_MB, max(MIN_MEMORY_MB, memory_for(math.ceil(checks / count), cpu_ms)))


def lanes(checks: int, memory_mb: int, cpu_ms: float) -> int:
    """Messages a region's ``checks`` of one minute are dealt to, for a worker of ``memory_mb``."""
    return math.ceil(checks / capacity(memory_mb, cpu_ms)) if checks else 0


def assumed_memory_mb(checks: int) -> int:
    """The memory for ``checks`` checks a minute at the assumed CPU, never below the floor: the deployed size."""
    return max(MIN_MEMORY_MB, memory_for(checks, ASSUMED_CPU_MS))


DEFAULT_MEMORY_MB = assumed_memory_mb(DEFAULT_CHECKS)
