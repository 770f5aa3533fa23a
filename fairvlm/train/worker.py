"""Turning SIGTERM and SIGINT into "save, mark the run cancelled, exit".

The app cancels a background fine-tune by sending SIGTERM to its process (``torchrun``
forwards it to every rank); Ctrl-C sends SIGINT. Inside :class:`StopSignals` neither kills the
process: the first one is recorded, the training loop sees :attr:`StopSignals.requested`
before its next step, writes a checkpoint, marks the run ``cancelled`` and returns.

:func:`kill_point` is a test hook for the crash-safety tests (``tests/robustness``): inert
unless ``$FAIRVLM_TEST_KILL_AT`` is set, it lets a test kill the worker with SIGKILL at a
chosen moment of a step, a checkpoint write or an evaluation.
"""

from __future__ import annotations

import os
import signal
from types import FrameType, TracebackType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
KILL_AT_ENV = "FAIRVLM_TEST_KILL_AT"
_kill_point_hits: dict[str, int] = {}


def kill_point(phase: str) -> None:
    """Test hook: SIGKILL this process at the ``n``-th ``phase`` point when
    ``$FAIRVLM_TEST_KILL_AT`` is ``"<phase>:<n>"`` (``n`` from 1); does nothing otherwise.

    The points: ``step`` after the optimiser update of a step, before anything is written;
    ``checkpoint`` twice per checkpoint, once with the optimiser file written to its temporary
    name but not renamed and once with every file but the model weights in place; ``eval``
    in every evaluation, between the embeddings and the report.
    """
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != phase:
        return
    _kill_point_hits[phase] = _kill_point_hits.get(phase, 0) + 1
    if str(_kill_point_hits[phase]) == count:
        os.kill(os.getpid(), signal.SIGKILL)


class StopSignals:
    """Context manager that records SIGTERM/SIGINT instead of dying on them.

    Attributes
    ----------
    signal_number
        The first stop signal received, or None.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signal_number is not None

    @property
    def exit_status(self) -> int:
        """The conventional status of a process stopped by the signal (128 + its number)."""
        return 128 + self.signal_number if self.signal_number is not None else 0

    def __enter__(self) -> StopSignals:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _record(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is None:
            self.signal_number = number
