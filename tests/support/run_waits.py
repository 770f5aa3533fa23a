"""Waiting for a launched fine-tune (``fairvlm.jobs``) to end, for tests."""

from __future__ import annotations

import time

import pytest

from fairvlm import jobs
from fairvlm.runs import RunDir, process_alive


def wait_until_ended(run: RunDir, timeout: float) -> str:
    """Poll until the run's state is no longer queued/running and its process has exited;
    its final state. Fails the test with the log's tail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run.read_status().state
        if state not in jobs.ACTIVE_STATES and not process_alive(jobs.job_pid(run)):
            return state
        time.sleep(0.5)
    pytest.fail(f"{run.path} still {run.read_status().state} after {timeout} s:\n"
                f"{jobs.log_tail(run)}")
