"""Background fine-tunes: real ``python -m fairvlm train`` processes on the small demo and the
tiny checkpoint (scope projections, one epoch: about six steps)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from run_waits import wait_until_ended

from fairvlm import jobs
from fairvlm.runs import RunDir, list_runs
from fairvlm.train.config import TrainConfig

TIMEOUT_S = 150.0
TINY_RUN = {"attribute": "race", "scope": "projections", "epochs": 1, "lr": 1e-3,
            "eval_min_n": 1, "n_bootstrap": 20, "device": "cpu"}


@pytest.fixture()
def tiny_config(small_demo_dir: Path, tiny_checkpoint: Path) -> TrainConfig:
    return TrainConfig(data=str(small_demo_dir), model=str(tiny_checkpoint), **TINY_RUN)


def test_two_launches_at_once_finish_in_their_own_run_folders(tmp_path, tiny_config) -> None:
    first = jobs.launch(tiny_config, root=tmp_path)
    second = jobs.launch(tiny_config, root=tmp_path)
    assert first.path != second.path
    assert {first.path.parent, second.path.parent} == {tmp_path}
    assert jobs.job_pid(first) != jobs.job_pid(second)
    assert [wait_until_ended(run, TIMEOUT_S) for run in (first, second)] == ["done", "done"]

    for run in (first, second):
        assert TrainConfig.from_dict(run.read_config()) == tiny_config
        status = run.read_status()
        assert status.step == status.total == 6  # 168 training pairs in batches of 32
        log = run.log_path.read_text()
        assert str(run.path) in log and "done: epoch 1 selected by validation" in log
        other = second if run is first else first
        assert str(other.path) not in log
        checkpoint, selection = jobs.selected_checkpoint(run)
        assert checkpoint.parent == run.checkpoints_dir and checkpoint.is_file()
        assert selection["epoch"] == 0
    finished = jobs.finished_runs(tmp_path)
    assert sorted(run.path for run in finished) == sorted([first.path, second.path])
    assert all(run.attribute == "race" and run.label.startswith(f"run {run.name} (epoch 1 ")
               for run in finished)


def test_a_run_refused_before_training_is_marked_failed_with_the_command_error(
        tmp_path, tiny_config) -> None:
    missing = tmp_path / "no-such-data"
    run = jobs.launch(TrainConfig.from_dict({**tiny_config.to_dict(), "data": str(missing)}),
                      root=tmp_path / "runs")
    assert wait_until_ended(run, TIMEOUT_S) == "failed"
    error = run.read_status().error
    assert str(missing) in error and not error.startswith("error:")
    assert f"error: {error}" in jobs.log_tail(run)
    summary = list_runs(tmp_path / "runs")[0]
    assert jobs.job_state(summary) == "failed" and summary.error == error
    assert jobs.selected_checkpoint(run) is None and jobs.finished_runs(tmp_path / "runs") == []


def test_cancel_before_training_starts_marks_the_run_cancelled(tmp_path, tiny_config) -> None:
    run = jobs.launch(tiny_config, root=tmp_path)
    assert jobs.cancel(run.path)
    assert wait_until_ended(run, timeout=30) == "cancelled"
    assert not jobs.cancel(run.path)  # nothing left to stop
    assert "cancelled before training started" in jobs.log_tail(run)


def test_a_queued_run_whose_worker_is_gone_is_interrupted(tmp_path, tiny_config) -> None:
    run = RunDir(tmp_path / "run").create(tiny_config.to_dict())
    summary = list_runs(tmp_path)[0]
    assert jobs.job_state(summary) == "queued"  # not started by launch: nothing to check
    (run.path / jobs.JOB_FILE).write_text(json.dumps({"pid": _finished_process_id()}))
    assert jobs.job_state(list_runs(tmp_path)[0]) == "interrupted"
    assert not jobs.cancel(run.path)


def _finished_process_id() -> int:
    """The id of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_log_tail_keeps_the_last_lines(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    assert jobs.log_tail(run) == ""
    run.path.mkdir()
    run.log_path.write_text("".join(f"line {i}\n" for i in range(100)))
    assert jobs.log_tail(run, lines=3).splitlines() == ["line 97", "line 98", "line 99"]
