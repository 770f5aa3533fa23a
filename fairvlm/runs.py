"""Run directories: the files a fine-tune or audit job writes and the UI reads (DESIGN.md).

One folder per run::

    config.json              the run's settings (written once, by :meth:`RunDir.create`)
    status.json              state, epoch, step, total, eta, error, pid, updated (atomic)
    metrics.jsonl            one JSON object per line, per step or epoch (append + fsync)
    memory.npz               DBPM loss memory (:class:`fairvlm.mining.LossMemory`, atomic)
    checkpoints/*.safetensors  e<epoch>-s<step>.safetensors, written atomically
    eval.json                validation and test metrics, selected epoch, test change from
                             the starting model (atomic)
    log.txt                  human-readable log lines

Only the worker writes; readers (the app, ``fairvlm`` commands) never see a half-written
JSON, checkpoint or memory file because each is written to a temporary file and renamed
(:func:`fairvlm.paths.atomic_write`). ``metrics.jsonl`` is appended; a crash can leave a
partial last line, which readers ignore and the next append removes. A worker killed mid-write
leaves only temporary files (``.<name>.<random>.tmp``), which no reader opens and the resumed
worker deletes (:meth:`RunDir.remove_temp_files`). One worker at a time writes a run: it holds
:meth:`RunDir.writer_lock`, which a second worker on the same folder is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fairvlm import paths
from fairvlm.errors import ConfigError, DataError, FairVLMError
from fairvlm.mining import MEMORY_FILE

try:
    import fcntl
except ImportError:  # Windows: no advisory locks (see RunDir.writer_lock)
    fcntl = None  # type: ignore[assignment]

STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
CHECKPOINT_PATTERN = re.compile(r"^e(\d+)-s(\d+)\.safetensors$")


@dataclass(frozen=True)
class RunStatus:
    """Contents of ``status.json``.

    ``state`` is one of :data:`STATES`; ``epoch``/``step`` count from 0 and ``total`` is the
    number of steps of the whole run; ``eta_s`` is the estimated seconds left; ``error`` the
    one-line reason of a failure; ``pid`` the worker's process id; ``updated`` an ISO-8601 UTC
    time stamp of the last write.
    """

    state: str = "queued"
    epoch: int = 0
    step: int = 0
    total: int | None = None
    eta_s: float | None = None
    error: str | None = None
    pid: int | None = None
    updated: str = ""

    def is_stale(self) -> bool:
        """``running`` but its worker process no longer exists (killed, machine restarted)."""
        return self.state == "running" and not process_alive(self.pid)


@dataclass(frozen=True)
class RunSummary:
    """One line of the run list.

    ``state`` is the status state, ``"interrupted"`` for a stale ``running`` run, or
    ``"unreadable"``; ``error`` is the status's error or why it could not be read.
    """

    name: str
    path: Path
    state: str
    epoch: int | None
    step: int | None
    total: int | None
    updated: str
    error: str | None = None


class RunDir:
    """The files of one run in folder ``path`` (nothing is touched until a write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def memory_path(self) -> Path:
        return self.path / MEMORY_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def eval_path(self) -> Path:
        return self.path / "eval.json"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    def create(self, config: Mapping[str, Any]) -> RunDir:
        """Start the run folder, or reopen it when it already holds this very config (resume).

        Raises
        ------
        ConfigError
            If the folder holds a run with a different config, or other files; nothing is
            written then.
        """
        wanted = _plain(dict(config))
        if self.config_path.exists():
            # A field added to the config after the run started, with a None default, was None.
            held = {**dict.fromkeys(wanted), **self.read_config()}
            if held != wanted:
                field = _first_difference(held, wanted)
                raise ConfigError(f"{self.path}: already holds another run (config.json field "
                                  f"{field} differs); choose a new run directory")
            return self
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise _not_a_run(self.path)
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config_path, wanted)
        write_json_atomic(self.status_path, asdict(RunStatus(updated=_now())))
        return self

    def read_config(self) -> dict[str, Any]:
        """The run's ``config.json``."""
        return _read_json(self.config_path)

    def read_status(self) -> RunStatus:
        """The run's ``status.json``; unknown keys are ignored (forward compatibility)."""
        raw = _read_json(self.status_path)
        known = {f.name for f in fields(RunStatus)}
        return RunStatus(**{key: value for key, value in raw.items() if key in known})

    def update_status(self, **changes: Any) -> RunStatus:
        """Change some status fields (``state=``, ``epoch=`` ...), stamp ``updated``, write."""
        if "state" in changes and changes["state"] not in STATES:
            raise ValueError(f"state {changes['state']!r}: expected one of {', '.join(STATES)}")
        current = self.read_status() if self.status_path.exists() else RunStatus()
        status = replace(current, **changes, updated=_now())
        write_json_atomic(self.status_path, asdict(status))
        return status

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one JSON line, flushed and fsynced.

        A partial last line left by a crash is cut off first, so it never glues onto this one.
        """
        line = json.dumps(_plain(dict(record)), allow_nan=False) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a+b") as handle:
            _drop_partial_last_line(handle)
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line of ``metrics.jsonl`` (a trailing partial line is ignored)."""
        if not self.metrics_path.exists():
            return []
        return self._parse_metrics(self.metrics_path.read_bytes())

    def _parse_metrics(self, raw: bytes) -> list[dict[str, Any]]:
        """The records of the complete lines of ``raw`` (the bytes of ``metrics.jsonl``)."""
        text = raw.decode("utf-8", errors="replace")
        complete = text[:text.rfind("\n") + 1]
        records = []
        for number, line in enumerate(complete.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise DataError(f"{self.metrics_path}: line {number} is not JSON; expected one "
                                "JSON object per line") from None
        return records

    def truncate_metrics(self, step: int) -> None:
        """Keep the complete lines of ``metrics.jsonl`` up to ``step`` (a resumed run redoes
        the steps after its checkpoint) and drop a partial last line; rewritten atomically,
        and only if a line goes. The file is read once."""
        if not self.metrics_path.exists():
            return
        raw = self.metrics_path.read_bytes()
        records = self._parse_metrics(raw)
        kept = [record for record in records if record["step"] <= step]
        if len(kept) == len(records) and raw.endswith(b"\n"):
            return
        with paths.atomic_write(self.metrics_path) as handle:
            for record in kept:
                handle.write((json.dumps(record, allow_nan=False) + "\n").encode())

    def checkpoint_path(self, epoch: int, step: int) -> Path:
        """Where the checkpoint of ``epoch``/``step`` goes: ``checkpoints/e0003-s000001200...``."""
        return self.checkpoints_dir / f"e{epoch:04d}-s{step:09d}.safetensors"

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest (epoch, step); temp files never match."""
        if not self.checkpoints_dir.is_dir():
            return None
        found = []
        for path in self.checkpoints_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(path.name)
            if match and path.is_file():
                found.append(((int(match[1]), int(match[2])), path))
        return max(found)[1] if found else None

    def remove_temp_files(self) -> None:
        """Delete the temporary files a killed worker left for the run's own files (status,
        metrics, memory, evaluation). Checkpoint leftovers are the training loop's to clean."""
        for target in (self.status_path, self.metrics_path, self.memory_path, self.eval_path):
            for temp in paths.temp_files(target):
                temp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[RunDir]:
        """Hold the run for writing, so that two workers never write one run folder at once.

        An exclusive advisory lock (``flock``) on the run folder itself, which is created if
        missing (and removed again at the end if it is still empty). The operating system
        releases the lock when the block ends or the process dies, ``kill -9`` included, so a
        killed run can be resumed at once. Without ``fcntl`` (Windows) nothing is locked.

        Raises
        ------
        ConfigError
            If another process holds the lock (a worker is writing this run), or the path is
            a file.
        """
        if self.path.exists() and not self.path.is_dir():
            raise _not_a_run(self.path)
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ConfigError(f"{self.path}: another process is writing this run "
                                      f"(worker pid {self._status_pid()}); wait for it to end "
                                      "or cancel it, then resume") from None
            yield self
        finally:
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only succeeds while empty: nothing was written

    def _status_pid(self) -> int | str:
        try:
            return self.read_status().pid or "unknown"
        except FairVLMError:
            return "unknown"

    def log(self, line: str) -> None:
        """Append a time-stamped line to ``log.txt``."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{_now()} {line.rstrip()}\n")
            handle.flush()

    def summary(self) -> RunSummary:
        """The run's line in :func:`list_runs`."""
        try:
            status = self.read_status()
        except FairVLMError as error:
            return RunSummary(self.path.name, self.path, "unreadable", None, None, None, "",
                              error=str(error))
        state = "interrupted" if status.is_stale() else status.state
        return RunSummary(self.path.name, self.path, state, status.epoch, status.step,
                          status.total, status.updated, error=status.error)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunSummary]:
    """Runs in the sub-folders of ``root`` (default the home's ``runs`` folder), newest first.

    A sub-folder is a run when it holds ``config.json``.
    """
    folder = Path(root) if root is not None else paths.runs_dir()
    if not folder.is_dir():
        return []
    runs = [RunDir(sub).summary() for sub in folder.iterdir()
            if sub.is_dir() and (sub / "config.json").is_file()]
    return sorted(runs, key=lambda run: (run.updated, run.name), reverse=True)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` all or nothing (temp file, fsync, ``os.replace``).

    numpy scalars and arrays become numbers and lists; NaN and infinities become ``null``.
    """
    text = json.dumps(_plain(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    with paths.atomic_write(path) as handle:
        handle.write(text.encode())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; expected a fairvlm run file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{path}: not valid JSON; expected a fairvlm run file") from None


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy/tensor values to Python, non-finite floats to None, Paths to str."""
    if isinstance(obj, Mapping):
        return {str(key): _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(value) for value in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _not_a_run(path: Path) -> ConfigError:
    return ConfigError(f"{path}: exists and is not an empty folder or a fairvlm run; choose a "
                       "new run directory")


def _first_difference(held: Any, wanted: Any, prefix: str = "") -> str:
    """Dotted name of the first config field that differs (``<root>`` for the whole config)."""
    if isinstance(held, dict) and isinstance(wanted, dict):
        for key in sorted(set(held) | set(wanted)):
            if key not in held or key not in wanted or held[key] != wanted[key]:
                return _first_difference(held.get(key), wanted.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "<root>"


def _drop_partial_last_line(handle: Any) -> None:
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return
    handle.seek(0)
    content = handle.read()
    handle.truncate(content.rfind(b"\n") + 1)
    handle.seek(0, os.SEEK_END)


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists on this machine (assumed on Windows, where signal 0 kills)."""
    if pid is None:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
