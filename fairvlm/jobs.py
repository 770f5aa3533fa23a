"""Fine-tunes as background jobs: launch, follow, cancel, and pick up their results.

A job is ``python -m fairvlm train --run-dir DIR --resume`` started in its own process session
(:func:`launch`). The launcher writes the run's ``config.json`` first (:meth:`RunDir.create`,
state ``queued``), so the run is listed at once and the worker takes its settings from that
file (``--resume`` on a run without checkpoints starts it from the beginning). The worker's
stdout and stderr are appended to the run's ``log.txt``, next to its own log lines, and its
process id is written to ``job.json``.

Everything else is read from the run folder, so a run outlives page reloads, navigation and
the browser: the app only reads the folder. Cancelling (:func:`cancel`) sends SIGTERM to the
job's process group; the worker checkpoints, marks the run ``cancelled`` and exits.

A worker that dies before it can write its state (a bad data path refused before training
starts, a kill by signal) would leave ``status.json`` at ``queued`` or ``running``. While the
launching server lives, a watcher thread waits for the process (so it leaves no zombie) and
then records the end: ``cancelled`` for SIGTERM/SIGINT, otherwise ``failed`` with the
command's ``error:`` line from the log. After a server restart, :func:`job_state` calls such a
run ``interrupted``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fairvlm import paths
from fairvlm.errors import FairVLMError
from fairvlm.runs import RunDir, RunSummary, list_runs, process_alive, write_json_atomic
from fairvlm.train.config import TrainConfig

JOB_FILE = "job.json"
ACTIVE_STATES: tuple[str, ...] = ("queued", "running")
STOP_SIGNALS: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)
_ERROR_LINE = re.compile(r"^error: (.+)$", re.MULTILINE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class FinishedRun:
    """A run in state ``done`` and the checkpoint its model selection chose.

    ``epoch`` is the selected epoch (from 0), ``metric`` the validation metric that chose it, and
    ``attribute`` the run's protected attribute.
    """

    name: str
    path: Path
    checkpoint: Path
    epoch: int
    metric: str
    attribute: str

    @property
    def label(self) -> str:
        """``run NAME (epoch 3 by validation es_auc)``, epochs counted from 1."""
        return f"run {self.name} (epoch {self.epoch + 1} by validation {self.metric})"


def launch(config: TrainConfig, *, root: str | os.PathLike[str] | None = None) -> RunDir:
    """Start fine-tuning ``config`` in a new run folder under ``root`` (default the runs folder).

    The data and model paths are made absolute, so ``config.json`` records where they were.

    Returns
    -------
    RunDir
        The new run (state ``queued`` until the worker has loaded the data and the model).
    """
    run = RunDir(_new_run_folder(Path(root) if root is not None else paths.runs_dir(), config))
    run.create(_with_absolute_paths(config).to_dict())
    command = [sys.executable, "-m", "fairvlm", "train", "--run-dir", str(run.path), "--resume",
               "--quiet"]
    try:
        with open(run.log_path, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        run.update_status(state="failed", error=f"could not start the fine-tune: {error}")
        raise
    write_json_atomic(run.path / JOB_FILE, {"pid": process.pid, "command": command,
                                            "started": _now()})
    threading.Thread(target=_watch, args=(process, run), daemon=True,
                     name=f"fairvlm-job-{run.path.name}").start()
    return run


def cancel(run_dir: str | os.PathLike[str]) -> bool:
    """Ask the run's worker to stop: SIGTERM to the process group :func:`launch` started, or
    to the worker process itself for a run started otherwise (``fairvlm train`` in a shell).

    Returns
    -------
    bool
        Whether a signal was sent (False when the run is not active or its process is gone).
    """
    run = RunDir(run_dir)
    status = run.read_status()
    group = job_pid(run)
    pid = group if group is not None else status.pid
    if status.state not in ACTIVE_STATES or not process_alive(pid):
        return False
    try:
        if group is not None:
            os.killpg(group, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def job_pid(run: RunDir) -> int | None:
    """The worker's process id from ``job.json``; None for a run not started by
    :func:`launch` (or a ``job.json`` that cannot be read)."""
    try:
        return int(json.loads((run.path / JOB_FILE).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def job_state(summary: RunSummary) -> str:
    """The run's state as listed: ``interrupted`` also for a ``queued`` run whose worker died."""
    if summary.state == "queued":
        pid = job_pid(RunDir(summary.path))
        if pid is not None and not process_alive(pid):
            return "interrupted"
    return summary.state


def log_tail(run: RunDir, lines: int = 40) -> str:
    """The last ``lines`` lines of the run's ``log.txt`` (empty when there is none)."""
    if not run.log_path.is_file():
        return ""
    with open(run.log_path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def read_evaluation(run: RunDir) -> dict[str, Any] | None:
    """The run's ``eval.json``: selection, checkpoint, validation and test reports, the
    starting model's test summary and the change from it (``change_from_start``).

    None until the run is done (or when the file cannot be read).
    """
    try:
        evaluation = json.loads(run.eval_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return evaluation if isinstance(evaluation, dict) else None


def selected_checkpoint(run: RunDir) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint model selection chose and the selection record (``eval.json``).

    None while the run has no readable ``eval.json`` or when its checkpoint file is gone.
    """
    evaluation = read_evaluation(run)
    try:
        checkpoint = run.path / evaluation["checkpoint"]
        selection = dict(evaluation["selection"])
    except (KeyError, TypeError, ValueError):
        return None
    return (checkpoint, selection) if checkpoint.is_file() else None


def finished_runs(root: str | os.PathLike[str] | None = None) -> list[FinishedRun]:
    """Every ``done`` run under ``root`` whose selected checkpoint exists, newest first.

    A run whose files cannot be read is left out (the run list says why).
    """
    found = (finished_run(summary.path) for summary in list_runs(root)
             if summary.state == "done")
    return [run for run in found if run is not None]


def finished_run(path: str | os.PathLike[str]) -> FinishedRun | None:
    """The run folder ``path`` as a :class:`FinishedRun`; None unless its ``eval.json`` and
    selected checkpoint exist and its config can be read."""
    run = RunDir(path)
    selected = selected_checkpoint(run)
    if selected is None:
        return None
    checkpoint, selection = selected
    try:
        attribute = str(run.read_config().get("attribute", ""))
    except FairVLMError:
        return None
    return FinishedRun(run.path.name, run.path, checkpoint, int(selection["epoch"]),
                       str(selection["metric"]), attribute)


def _new_run_folder(root: Path, config: TrainConfig) -> Path:
    """Create and return an empty folder ``<UTC time>-<attribute>-<6 hex>`` under ``root``.

    ``mkdir`` without ``exist_ok`` is atomic, so two launches at once never share a folder.
    """
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{_NAME_UNSAFE.sub('_', config.attribute)}"
    while True:
        folder = root / f"{stem}-{secrets.token_hex(3)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def _with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its data path, and its model when that is a file, made absolute."""
    model = Path(config.model).expanduser()
    return replace(config, data=str(Path(config.data).expanduser().resolve()),
                   model=str(model.resolve()) if model.is_file() else config.model)


def _watch(process: subprocess.Popen, run: RunDir) -> None:
    """Wait for the worker; record an end it could not record itself."""
    status = process.wait()
    try:
        state = run.read_status().state
    except FairVLMError:
        return
    if state not in ACTIVE_STATES:
        return
    if -status in STOP_SIGNALS or status - 128 in STOP_SIGNALS:
        run.update_status(state="cancelled", eta_s=None)
        run.log(f"cancelled before training started (exit status {status})")
        return
    run.update_status(state="failed", eta_s=None, error=_failure_reason(run, status))


def _failure_reason(run: RunDir, status: int) -> str:
    """The last ``error:`` line the command wrote to the log, else the exit status."""
    errors = _ERROR_LINE.findall(log_tail(run, lines=200))
    if errors:
        return errors[-1].strip()
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    return f"the fine-tune stopped ({how}) before recording its state; see the log"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

