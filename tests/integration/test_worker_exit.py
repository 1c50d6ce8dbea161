"""a check message still waiting for a start when the process exits (make dev's Ctrl-C, the local stack's
SIGTERM) hangs the interpreter forever: concurrent.futures joins every pool thread at exit and refuses new
submissions; Worker._run counted the check (writer.expect()) before checks.submit raised, so wait_collected()
waits for a callback that never comes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import threading, time
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta
    from chalicelib.checks.jobs import Job
    from chalicelib.checks.model import CheckSpec
    from functions.checker.worker import Tally, Worker, _Packer

    worker = Worker.for_invocation("us-east-1", allow_private=True, remaining_s=120)
    checks = ThreadPoolExecutor(4)       # as Worker.start makes them: the batch's check pool
    messages = ThreadPoolExecutor(1)     # and its message pool
    start = datetime.now(UTC) + timedelta(seconds=2)   # the message's next start, two seconds away
    jobs = [Job("t", "m", "us-east-1", start, CheckSpec(url="http://127.0.0.1:9/"))]
    messages.submit(worker._run, iter(jobs), checks, Tally(), {}, _Packer(worker, "m.1"))
    time.sleep(0.5)
    print("main thread done; interpreter exiting", flush=True)
    """
)


def test_the_process_can_exit_while_a_message_waits_for_a_start():
    root = Path(__file__).resolve().parents[2]
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the interpreter never exited (30 s): {exc.stdout!r}") from None
    assert "interpreter exiting" in done.stdout
