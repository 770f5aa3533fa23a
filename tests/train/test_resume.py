"""SIGTERM, kill -9 and --resume: a resumed run ends exactly like an uninterrupted one (CPU)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fairvlm.cli import main
from fairvlm.runs import RunDir
from fairvlm.train import state
from fairvlm.train.loop import train

TIMEOUT_S = 300


def assert_same_run(resumed: RunDir, reference: RunDir) -> None:
    """Same final weights, DBPM memory, evaluation and per-step losses, bit for bit."""
    assert resumed.read_status().state == "done"
    assert resumed.latest_checkpoint().name == reference.latest_checkpoint().name
    ours, theirs = load_file(resumed.latest_checkpoint()), load_file(reference.latest_checkpoint())
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    with np.load(resumed.memory_path) as a, np.load(reference.memory_path) as b:
        for name in ("ids", "loss_history", "loss_count", "noisy", "faulty", "mu", "sigma"):
            np.testing.assert_array_equal(a[name], b[name])
    assert json.loads(resumed.eval_path.read_text()) == json.loads(
        reference.eval_path.read_text())

    def steps(run: RunDir) -> list[tuple]:
        return [(r["step"], r["loss"], r["clip"], r["fairness"], r["flagged"])
                for r in run.read_metrics() if r["kind"] == "step"]

    assert steps(resumed) == steps(reference)


class _StopAfter:
    """A stop request that turns on after ``steps`` steps (an in-process SIGTERM)."""

    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    @property
    def requested(self) -> bool:
        return self.seen >= self.steps

    def count(self, step: int, total: int, record: dict) -> None:
        self.seen = step


def test_stop_mid_epoch_then_resume_equals_uninterrupted(reference_config, reference_run,
                                                         tmp_path):
    run = RunDir(tmp_path / "stopped")
    stop = _StopAfter(3)
    result = train(reference_config(), run.path, stop=stop, on_step=stop.count)
    assert (result.state, result.step) == ("cancelled", 3)
    assert run.read_status().state == "cancelled"
    (checkpoint,) = state.complete_checkpoints(run.checkpoints_dir)
    progress = json.loads(checkpoint.state_path.read_text())
    assert (progress["epoch"], progress["epoch_step"], progress["epoch_end"]) == (0, 3, False)
    assert train(reference_config(), run.path, resume=True).state == "done"
    assert_same_run(run, reference_run)


def _start(flags: list[str], run: RunDir) -> subprocess.Popen:
    command = [sys.executable, "-m", "fairvlm", "train", *flags, "--run-dir", str(run.path),
               "--quiet"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _signal_when(process: subprocess.Popen, run: RunDir, ready, number: int) -> None:
    """Send signal ``number`` to ``process`` as soon as ``ready(metrics records)`` holds."""
    deadline = time.monotonic() + TIMEOUT_S
    while not ready(run.read_metrics()):
        if process.poll() is not None:
            pytest.fail(f"the run ended first: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)
    process.send_signal(number)


def test_sigterm_then_kill_9_then_resume_equals_uninterrupted(reference_flags, reference_run,
                                                              tmp_path):
    run = RunDir(tmp_path / "interrupted")
    # 1. SIGTERM once a step is logged: checkpoint, cancelled, exit status 128 + 15
    worker = _start(reference_flags, run)
    _signal_when(worker, run, lambda records: any(r["kind"] == "step" for r in records),
                 signal.SIGTERM)
    out, err = worker.communicate(timeout=TIMEOUT_S)
    assert worker.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert b"--resume" in out
    cancelled = run.read_status()
    assert cancelled.state == "cancelled" and 1 <= cancelled.step < cancelled.total
    checkpoint = state.complete_checkpoints(run.checkpoints_dir)[-1]
    assert json.loads(checkpoint.state_path.read_text())["step"] == cancelled.step
    # 2. resumed, then killed with SIGKILL after its first step: no chance to update status
    worker = _start(["--resume"], run)
    try:
        _signal_when(worker, run,
                     lambda records: any(r["kind"] == "step" and r["step"] > cancelled.step
                                         for r in records), signal.SIGKILL)
        worker.communicate(timeout=TIMEOUT_S)
    finally:
        worker.kill()
    assert worker.returncode == -signal.SIGKILL
    assert run.read_status().state == "running"
    # 3. resumed again (in this process): the same result as an uninterrupted run
    assert main(["train", "--run-dir", str(run.path), "--resume", "--quiet"]) == 0
    assert_same_run(run, reference_run)
    log = run.log_path.read_text()
    assert log.count("resumed from") == 2 and log.count("cancelled at epoch") == 1
