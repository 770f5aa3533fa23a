"""Run directories: atomic files, metrics lines, refusal of foreign folders, run listing."""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from fairvlm import paths
from fairvlm.errors import ConfigError, DataError
from fairvlm.runs import RunDir, list_runs, write_json_atomic

CONFIG = {"model": "demo", "attribute": "race", "lambda": 0.1, "epochs": 3}


def _snapshot(folder):
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_create_writes_config_queued_status_and_checkpoint_folder(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    assert json.loads(run.config_path.read_text()) == CONFIG
    status = run.read_status()
    assert status.state == "queued" and status.updated
    assert run.checkpoints_dir.is_dir()
    assert RunDir(run.path).create(dict(CONFIG)).read_config() == CONFIG  # same run reopens


def test_create_refuses_another_run_and_touches_nothing(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    run.append_metrics({"step": 0, "loss": 1.0})
    before = _snapshot(run.path)
    with pytest.raises(ConfigError, match=r"already holds another run .*field lambda") as err:
        RunDir(run.path).create({**CONFIG, "lambda": 1.0})
    assert "\n" not in str(err.value)
    assert _snapshot(run.path) == before


def test_a_run_from_before_a_new_null_field_reopens_but_not_with_a_value(tmp_path):
    """config.json written before a field with a None default existed (e.g. arch) holds it as
    None: the same run reopens; a value for the field is another run."""
    run = RunDir(tmp_path / "run").create(CONFIG)
    assert RunDir(run.path).create({**CONFIG, "arch": None}).read_config() == CONFIG
    with pytest.raises(ConfigError, match=r"already holds another run .*field arch"):
        RunDir(run.path).create({**CONFIG, "arch": "ViT-B-16"})


def test_create_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder or a fairvlm run"):
        RunDir(folder).create(CONFIG)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_crash_inside_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "status.json"
    write_json_atomic(target, {"state": "running"})
    with pytest.raises(RuntimeError), paths.atomic_write(target) as handle:
        handle.write(b'{"state": "do')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_crash_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "eval.json"
    write_json_atomic(target, {"auc": 0.5})

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json_atomic(target, {"auc": 0.9})
    assert json.loads(target.read_text()) == {"auc": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_readers_never_see_a_partial_json(tmp_path):
    target = tmp_path / "status.json"
    big = {"values": list(range(20_000))}
    write_json_atomic(target, big)
    stop, failures = threading.Event(), []

    def read_repeatedly():
        while not stop.is_set():
            try:
                json.loads(target.read_text())
            except (json.JSONDecodeError, FileNotFoundError) as error:
                failures.append(error)

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    for step in range(30):
        write_json_atomic(target, {**big, "step": step})
    stop.set()
    reader.join()
    assert failures == []


def test_status_updates_and_json_conversion(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    run.update_status(state="running", epoch=1, step=7, total=30, eta_s=12.5, pid=os.getpid())
    status = run.read_status()
    assert (status.state, status.epoch, status.step, status.total) == ("running", 1, 7, 30)
    assert not status.is_stale()
    with pytest.raises(ValueError, match="state 'paused'"):
        run.update_status(state="paused")
    write_json_atomic(run.eval_path, {"auc": np.float32(0.75), "groups": np.array([1, 2]),
                                      "undefined": float("nan")})
    assert json.loads(run.eval_path.read_text()) == {"auc": 0.75, "groups": [1, 2],
                                                     "undefined": None}


def test_partial_trailing_metrics_line_is_ignored_then_cut(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    for step in range(3):
        run.append_metrics({"step": step, "loss": 1.0 / (step + 1)})
    with open(run.metrics_path, "ab") as handle:
        handle.write(b'{"step": 3, "lo')  # the worker died mid-line
    assert [r["step"] for r in run.read_metrics()] == [0, 1, 2]
    run.append_metrics({"step": 3, "loss": 0.2, "distance": float("nan")})
    records = run.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2, 3] and records[-1]["distance"] is None
    assert run.metrics_path.read_text().count("\n") == 4


def test_truncate_metrics_reads_the_file_once_and_rewrites_only_to_cut(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run").create(CONFIG)
    for step in range(4):
        run.append_metrics({"step": step, "loss": 1.0})
    reads = []
    real_open = io.open

    def counting_open(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and os.fspath(file) == os.fspath(run.metrics_path) \
                and "r" in mode:
            reads.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    before = run.metrics_path.stat()
    run.truncate_metrics(3)  # nothing to cut: the file stays as it is
    after = run.metrics_path.stat()
    assert len(reads) == 1
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    reads.clear()
    run.truncate_metrics(1)
    assert len(reads) == 1
    monkeypatch.undo()
    assert run.metrics_path.read_text() == '{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 1.0}\n'


def test_corrupt_metrics_line_is_a_one_line_data_error(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    run.metrics_path.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        run.read_metrics()


def test_latest_checkpoint_only_matches_complete_files(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    assert run.latest_checkpoint() is None
    for epoch, step in ((1, 40), (2, 9), (0, 500)):
        run.checkpoint_path(epoch, step).write_bytes(b"weights")
    (run.checkpoints_dir / "best.safetensors").write_bytes(b"weights")
    with pytest.raises(RuntimeError), paths.atomic_write(run.checkpoint_path(3, 0)) as handle:
        handle.write(b"half")
        raise RuntimeError("killed")
    (run.checkpoints_dir / f".{run.checkpoint_path(4, 0).name}.x1.tmp").write_bytes(b"half")
    assert run.latest_checkpoint() == run.checkpoint_path(2, 9)


def test_log_appends_time_stamped_lines(tmp_path):
    run = RunDir(tmp_path / "run").create(CONFIG)
    run.log("epoch 0 done")
    run.log("epoch 1 done\n")
    lines = run.log_path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["epoch 0 done", "epoch 1 done"]


def test_list_runs_newest_first_with_derived_states(tmp_path):
    done = RunDir(tmp_path / "a-done").create(CONFIG)
    done.update_status(state="done", epoch=2, step=30, total=30)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    killed = RunDir(tmp_path / "b-killed").create({**CONFIG, "seed": 1})
    killed.update_status(state="running", pid=int(finished.stdout))
    broken = RunDir(tmp_path / "c-broken").create({**CONFIG, "seed": 2})
    broken.status_path.write_text("{")
    (tmp_path / "not-a-run").mkdir()
    write_json_atomic(done.status_path, {**json.loads(done.status_path.read_text()),
                                         "updated": "2099-01-01T00:00:00+00:00"})
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["a-done", "b-killed", "c-broken"]
    assert [r.state for r in runs] == ["done", "interrupted", "unreadable"]
    assert runs[0].total == 30 and "not valid JSON" in runs[2].error
    assert list_runs(tmp_path / "absent") == []
