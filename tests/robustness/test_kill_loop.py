"""Crash safety and concurrency of fine-tunes: ``kill -9`` at chosen and at random moments, then
``--resume``; several fine-tunes at once.

Workers are forked from the test process (``os.fork``: torch is imported once, not per worker)
and run the real command, ``fairvlm train --run-dir DIR --resume --quiet``, single-threaded. A
kill is a real SIGKILL: either the worker's test hook sends it to itself at the n-th point of a
phase (:func:`fairvlm.train.worker.kill_point`, ``$FAIRVLM_TEST_KILL_AT="<phase>:<n>"``:
after a step's optimiser update, inside a checkpoint write, inside an evaluation), or this
process sends it after a seeded random delay. After every kill the run folder must read
cleanly and its newest complete checkpoint must load; after the last resume the run must equal
an uninterrupted one bit for bit (weights, DBPM memory, eval.json, per-step losses).

The 20-plus-trial loop is marked slow::

    OMP_NUM_THREADS=1 .venv/bin/pytest -q -m slow tests/robustness/test_kill_loop.py
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from run_waits import wait_until_ended
from safetensors.torch import load_file

from fairvlm import jobs, paths
from fairvlm.cli import main
from fairvlm.errors import ConfigError
from fairvlm.mining import LossMemory
from fairvlm.models import demo_model as demo_model_module
from fairvlm.models import load_model
from fairvlm.runs import CHECKPOINT_PATTERN, RunDir, process_alive
from fairvlm.train import state
from fairvlm.train.config import TrainConfig
from fairvlm.train.scope import parameter_groups, select_trainable
from fairvlm.train.worker import KILL_AT_ENV

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork and SIGKILL")

WORKER_TIMEOUT_S = 120.0
LAUNCH_TIMEOUT_S = 240.0
# 2 epochs of 6 steps; checkpoints at steps 4, 6 (epoch end), 8 and 12 (epoch end).
SETTINGS: dict[str, object] = {
    "attribute": "race", "scope": "projections", "epochs": 2, "lr": 1e-3, "warmup": 1,
    "beta_np": 1.0, "beta_fp": 1.0, "lam": 0.5, "dbpm": "drop", "eval_min_n": 1,
    "n_bootstrap": 20, "device": "cpu", "checkpoint_every": 4,
}
TOTAL_STEPS = 12
# Kill points an uninterrupted run passes: 12 steps; 4 checkpoints with 2 points each; the
# baseline, 2 epoch-end validations and the final validation and test reports.
HITS = {"step": 12, "checkpoint": 8, "eval": 5}
PHASES = ("step", "checkpoint", "eval", "random")
SLOW_TRIALS = 24
SEED = 20250506
TEMP_SUFFIX = ".tmp"
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "memory.npz", "eval.json",
             "log.txt")


@dataclass(frozen=True)
class Reference:
    """The uninterrupted run and how long its worker took."""

    run: RunDir
    seconds: float


@pytest.fixture(scope="module")
def kill_config(small_demo_dir: Path, tiny_checkpoint: Path) -> TrainConfig:
    return TrainConfig(data=str(small_demo_dir), model=str(tiny_checkpoint), **SETTINGS)


@pytest.fixture(scope="module")
def reference(kill_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The run without kills, trained by a forked worker like the trials (same threads)."""
    run = RunDir(tmp_path_factory.mktemp("kill-reference") / "run").create(kill_config.to_dict())
    started = time.monotonic()
    assert run_worker(run) == 0, worker_output(run)
    seconds = time.monotonic() - started
    assert run.read_status().state == "done"
    return Reference(run, seconds)


# --- the worker ----------------------------------------------------------------------------

def worker_output(run: RunDir) -> str:
    """What the forked workers of ``run`` printed (kept next to the run folder, not in it)."""
    path = _output_path(run)
    return path.read_text()[-3000:] if path.is_file() else ""


def _output_path(run: RunDir) -> Path:
    return run.path.with_name(run.path.name + ".out")


def run_worker(run: RunDir, *, kill_at: str | None = None,
               kill_after_s: float | None = None) -> int:
    """``fairvlm train --run-dir RUN --resume --quiet`` in a forked child; its exit code
    (``-9`` when it died of SIGKILL).

    ``kill_at`` arms the worker's kill hook (``"<phase>:<n>"``); ``kill_after_s`` makes this
    process send SIGKILL that many seconds after the fork.
    """
    output = _output_path(run)
    pid = os.fork()
    if pid == 0:  # the worker: never returns into pytest
        code = 70
        try:
            out = open(output, "a", buffering=1)  # noqa: SIM115 (closed by os._exit)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            sys.stdout = sys.stderr = out
            torch.set_num_threads(1)  # also keeps OpenMP from reusing the parent's threads
            os.environ.pop(KILL_AT_ENV, None)
            if kill_at is not None:
                os.environ[KILL_AT_ENV] = kill_at
            code = main(["train", "--run-dir", str(run.path), "--resume", "--quiet"])
        except BaseException:  # reported by exit code 70
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    started = time.monotonic()
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        if kill_after_s is not None and not killed and elapsed >= kill_after_s:
            os.kill(pid, signal.SIGKILL)
            killed = True
        if elapsed > WORKER_TIMEOUT_S:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"worker on {run.path} ran over {WORKER_TIMEOUT_S} s:\n"
                        f"{worker_output(run)}")
        time.sleep(0.005)


# --- what must hold after a kill and after the last resume ---------------------------------

def step_numbers(run: RunDir) -> list[int]:
    return [r["step"] for r in run.read_metrics() if r["kind"] == "step"]


def check_after_kill(run: RunDir, config: TrainConfig) -> int | None:
    """Every run file reads cleanly, nothing half-written counts, the newest complete
    checkpoint loads; returns its step (None before the first checkpoint)."""
    assert run.read_config() == config.to_dict()
    status = run.read_status()
    assert status.state in ("queued", "running"), status  # SIGKILL leaves no time to write
    assert run.summary().state == ("interrupted" if status.state == "running" else "queued")
    assert not process_alive(status.pid) or status.pid is None
    # a torn last line (as a crash inside write() would leave) is not read
    steps_before = step_numbers(run)
    with open(run.metrics_path, "ab") as handle:
        handle.write(b'{"kind": "step", "step": 99, "lo')
    assert step_numbers(run) == steps_before == list(range(1, len(steps_before) + 1))
    if run.memory_path.exists():
        LossMemory.load(run.memory_path)
    if run.eval_path.exists():
        assert json.loads(run.eval_path.read_text())["checkpoint"]
    if run.log_path.exists():
        run.log_path.read_text(encoding="utf-8")

    complete = state.complete_checkpoints(run.checkpoints_dir)
    for path in run.checkpoints_dir.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(TEMP_SUFFIX), path  # a write never renamed
            assert not CHECKPOINT_PATTERN.match(path.name)
    assert run.latest_checkpoint() == (complete[-1].model_path if complete else None)
    if not complete:
        return None
    progress = _restore(complete[-1], config)
    assert progress.step <= len(steps_before)
    return progress.step


def _restore(checkpoint: state.Checkpoint, config: TrainConfig) -> state.Progress:
    """Load the checkpoint into a fresh model and optimizer as the worker would."""
    with torch.random.fork_rng(devices=[]):
        model = load_model(config.model, device="cpu").model
        select_trainable(model, config.scope, last_k=config.last_k)
        optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr)
        memory, progress = state.restore(checkpoint, model=model, optimizer=optimizer)
    assert memory.epochs_recorded >= progress.epoch
    assert checkpoint.model_path.name == f"e{progress.epoch:04d}-s{progress.step:09d}.safetensors"
    return progress


def assert_same_as_uninterrupted(run: RunDir, reference: RunDir) -> None:
    """Finished, and bit for bit the reference: weights, memory, eval.json, metrics, files."""
    status = run.read_status()
    assert (status.state, status.step, status.total, status.error) == ("done", TOTAL_STEPS,
                                                                       TOTAL_STEPS, None)
    ours, theirs = load_file(run.latest_checkpoint()), load_file(reference.latest_checkpoint())
    assert run.latest_checkpoint().name == reference.latest_checkpoint().name
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    with np.load(run.memory_path) as a, np.load(reference.memory_path) as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert json.loads(run.eval_path.read_text()) == json.loads(reference.eval_path.read_text())

    def losses(folder: RunDir) -> list[tuple]:
        return [(r["kind"], r["step"], r.get("loss"), r.get("clip"), r.get("fairness"),
                 r.get("flagged")) for r in folder.read_metrics()]

    assert losses(run) == losses(reference)
    assert run.metrics_path.read_bytes().endswith(b"\n")  # the torn lines are gone
    assert _files(run) == _files(reference)  # no temporary or partial checkpoint file left


def _files(run: RunDir) -> list[str]:
    return sorted(str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file())


# --- the trials ------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the trials did (printed at the end of the loop for the report)."""

    kills: Counter
    no_kill: Counter
    resumes_done: int = 0
    resumed_from_checkpoint: int = 0
    seconds: float = 0.0


def run_trial(folder: Path, config: TrainConfig, reference: Reference,
              kills: list[str | float], tally: Tally) -> None:
    """One trial: a worker per entry of ``kills`` (a hook spec ``"<phase>:<n>"`` or a delay in
    seconds), each killed and checked; then one more worker must finish the run."""
    run = RunDir(folder).create(config.to_dict())
    for kill in kills:
        phase = kill.split(":")[0] if isinstance(kill, str) else "random"
        if isinstance(kill, str):
            code = run_worker(run, kill_at=kill)
        else:
            code = run_worker(run, kill_after_s=kill)
        if code == 0:  # the kill point lay past the end of this (resumed) worker
            tally.no_kill[phase] += 1
            break
        assert code == -signal.SIGKILL, worker_output(run)
        tally.kills[phase] += 1
        check_after_kill(run, config)
    else:
        assert run_worker(run) == 0, worker_output(run)
    tally.resumes_done += 1
    tally.resumed_from_checkpoint += run.log_path.read_text().count("resumed from")
    assert_same_as_uninterrupted(run, reference.run)


def test_kill_during_step_checkpoint_and_eval_then_resume(kill_config, reference, tmp_path):
    """The fast variant: one trial per phase, the second trial killed twice (the second time
    while the resumed worker writes its first checkpoint, with every file but the weights)."""
    tally = Tally(Counter(), Counter())
    trials = [["step:5"], ["checkpoint:3", "checkpoint:2"], ["eval:2"]]
    started = time.monotonic()
    for number, kills in enumerate(trials):
        run_trial(tmp_path / f"trial-{number}", kill_config, reference, kills, tally)
    tally.seconds = time.monotonic() - started
    assert tally.kills == Counter({"step": 1, "checkpoint": 2, "eval": 1})
    assert tally.no_kill == Counter() and tally.resumes_done == 3
    # step 5 and the epoch-0 end (kills 1 and 2) fall back to the step-4 checkpoint; the kill
    # in the epoch-0 validation comes before the epoch-end checkpoint: also step 4
    assert tally.resumed_from_checkpoint == 4
    print(f"\nkill trials: {tally}")


def test_partial_checkpoint_and_temp_files_are_never_read(kill_config, reference, tmp_path):
    """Killed in the first checkpoint before its weights: three of its four files and no
    model file; the run is not resumable from it and a resume starts over and cleans up."""
    run = RunDir(tmp_path / "run").create(kill_config.to_dict())
    assert run_worker(run, kill_at="checkpoint:2") == -signal.SIGKILL
    left = sorted(p.name for p in run.checkpoints_dir.iterdir())
    stem = "e0000-s000000004"
    assert left == [f"{stem}.memory.npz", f"{stem}.optimizer.safetensors", f"{stem}.state.json"]
    assert check_after_kill(run, kill_config) is None
    (run.path / ".status.json.x1y2z3.tmp").write_bytes(b'{"state": "do')  # killed mid-write
    assert run.read_status().state == "running"
    assert run_worker(run) == 0, worker_output(run)
    assert "resumed from" not in run.log_path.read_text()
    assert_same_as_uninterrupted(run, reference.run)


@pytest.mark.slow
def test_kill_loop(kill_config, reference, tmp_path):
    """Seeded kill -9 trials cycling through the phases, one or two kills each; a random
    trial's kill comes from this process at a uniformly drawn moment of a worker's run."""
    rng = random.Random(SEED)
    tally = Tally(Counter(), Counter())
    started = time.monotonic()
    for number in range(SLOW_TRIALS):
        phase = PHASES[number % len(PHASES)]
        kills: list[str | float] = []
        for _ in range(rng.choice((1, 1, 2))):
            if phase == "random":
                kills.append(rng.uniform(0.0, reference.seconds))
            else:
                kills.append(f"{phase}:{rng.randint(1, HITS[phase])}")
        run_trial(tmp_path / f"trial-{number:02d}", kill_config, reference, kills, tally)
    tally.seconds = time.monotonic() - started
    print(f"\nkill loop: {SLOW_TRIALS} trials in {tally.seconds:.1f} s "
          f"(reference run {reference.seconds:.1f} s): {tally}")
    assert tally.resumes_done == SLOW_TRIALS
    assert all(tally.kills[phase] >= 3 for phase in PHASES), tally


def test_truncate_metrics_cuts_lines_past_the_checkpoint_and_a_torn_tail(tmp_path):
    run = RunDir(tmp_path / "run").create({"epochs": 1})
    for step in range(4):
        run.append_metrics({"kind": "step", "step": step})
    with open(run.metrics_path, "ab") as handle:
        handle.write(b'{"kind": "step", "st')
    run.truncate_metrics(3)  # nothing past step 3, but the torn line goes
    assert run.metrics_path.read_bytes().count(b"\n") == 4
    assert run.metrics_path.read_bytes().endswith(b'{"kind": "step", "step": 3}\n')
    run.truncate_metrics(1)
    assert [r["step"] for r in run.read_metrics()] == [0, 1]
    assert paths.temp_files(run.metrics_path) == []


# --- concurrency -------------------------------------------------------------------------------

def test_a_second_worker_on_a_run_being_written_is_refused(kill_config, reference, tmp_path):
    """While one process holds the run (as a worker does), a second worker on the same folder
    exits with a one-line error and writes nothing; once the lock is gone it resumes."""
    run = RunDir(tmp_path / "run").create(kill_config.to_dict())
    before = {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}
    with run.writer_lock():
        assert run_worker(run) == 2
        assert {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()} == before
    assert ("error: " + f"{run.path}: another process is writing this run (worker pid unknown)"
            in worker_output(run))
    assert run_worker(run) == 0, worker_output(run)
    assert_same_as_uninterrupted(run, reference.run)


def test_a_lock_on_a_missing_folder_leaves_nothing_behind(tmp_path):
    run = RunDir(tmp_path / "new" / "run")
    with run.writer_lock():
        assert run.path.is_dir()
    assert not run.path.exists()
    (tmp_path / "file").write_text("x")
    with (pytest.raises(ConfigError, match="file: exists and is not an empty folder"),
          RunDir(tmp_path / "file").writer_lock()):
        pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_launches_with_one_name_share_neither_folder_nor_model(
        small_demo_dir, tiny_checkpoint, tmp_path, monkeypatch):
    """Two app sessions fine-tune the cached demo model at the same second with the same
    attribute (so the same run-name stem) and, forced here, the same random suffix: the second
    gets its own folder, both finish there, and the demo model file is untouched."""
    monkeypatch.setenv("FAIRVLM_HOME", str(tmp_path / "home"))  # inherited by the workers
    demo = demo_model_module.demo_model_path()
    demo.parent.mkdir(parents=True)
    demo.write_bytes(tiny_checkpoint.read_bytes())
    (demo.parent / demo_model_module.INFO_FILE).write_text(json.dumps({"note": "test"}))
    before = {p.name: _sha256(p) for p in demo.parent.iterdir()}
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])
    monkeypatch.setattr(jobs.secrets, "token_hex", lambda _n: next(suffixes))

    frozen = jobs.datetime(2025, 5, 6, 12, 0, 0, tzinfo=jobs.UTC)

    class FrozenClock:
        @staticmethod
        def now(tz):
            return frozen.astimezone(tz)

    monkeypatch.setattr(jobs, "datetime", FrozenClock)
    config = TrainConfig(data=str(small_demo_dir), model="demo",
                         **{**SETTINGS, "epochs": 1, "checkpoint_every": 0})
    first, second = jobs.launch(config), jobs.launch(config)
    assert first.path.parent == second.path.parent == paths.runs_dir()
    assert (first.path.name, second.path.name) == ("20250506-120000-race-aaaaaa",
                                                   "20250506-120000-race-bbbbbb")
    assert [wait_until_ended(run, LAUNCH_TIMEOUT_S) for run in (first, second)] == ["done", "done"]
    weights = {}
    for run in (first, second):
        other = second if run is first else first
        assert run.read_config() == config.to_dict()
        assert step_numbers(run) == list(range(1, 7))  # each run's 6 steps, once
        assert str(other.path) not in run.log_path.read_text()
        checkpoint, _ = jobs.selected_checkpoint(run)
        assert checkpoint.parent == run.checkpoints_dir
        weights[run.path.name] = load_file(checkpoint)
        assert sorted(p.name for p in run.path.iterdir() if p.is_file()) == sorted(
            [*RUN_FILES, jobs.JOB_FILE])
    a, b = weights.values()
    assert all(torch.equal(a[name], b[name]) for name in a)  # same config, same result
    assert {p.name: _sha256(p) for p in demo.parent.iterdir()} == before
