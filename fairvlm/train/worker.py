"""Turning SIGTERM and SIGINT into "save, mark the run cancelled, exit".

The app cancels a background fine-tune by sending SIGTERM to its process (``torchrun``
forwards it to every rank); Ctrl-C sends SIGINT. Inside :class:`StopSignals` neither kills the
process: the first one is recorded, the training loop sees :attr:`StopSignals.requested`
before its next step, writes a checkpoint, marks the run ``cancelled`` and returns.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


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
