"""The reviewer's decision on each flagged pair: keep it, exclude it, or mark its note wrong.

One file per data set, ``FAIRVLM_HOME/decisions/<data fingerprint>.csv``, one row per decided
pair (its latest decision)::

    id, decision, time, model_fingerprint, data_fingerprint

``decision`` is one of :data:`DECISIONS`; ``time`` is the ISO-8601 UTC time it was made;
``model_fingerprint`` and ``data_fingerprint`` are the score version: the checkpoint and data
whose scores the reviewer saw. Every change rewrites the whole file atomically
(:func:`fairvlm.paths.atomic_write`), so a reader never sees half a file.

The next fine-tune leaves out :meth:`DecisionFile.exclusions`: pairs marked ``exclude`` and
pairs marked ``wrong_note`` (their note does not describe their image, so they cannot be
trained on as they are).
"""

from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from fairvlm import paths
from fairvlm.errors import DataError

DECISIONS: tuple[str, ...] = ("keep", "exclude", "wrong_note")
EXCLUDING: tuple[str, ...] = ("exclude", "wrong_note")
COLUMNS: tuple[str, ...] = ("id", "decision", "time", "model_fingerprint", "data_fingerprint")
FOLDER = "decisions"
_FINGERPRINT = re.compile(r"[0-9a-f]{8,64}")
_WRITE_LOCK = threading.Lock()


def decisions_path(data_fingerprint: str) -> Path:
    """``FAIRVLM_HOME/decisions/<data fingerprint>.csv``.

    Raises
    ------
    ValueError
        If ``data_fingerprint`` is not a hex fingerprint (it becomes a file name).
    """
    if not _FINGERPRINT.fullmatch(data_fingerprint):
        raise ValueError(f"data fingerprint {data_fingerprint!r}: expected 8-64 hex digits")
    return paths.home() / FOLDER / f"{data_fingerprint}.csv"


class DecisionFile:
    """The decisions on the pairs of the data set with fingerprint ``data_fingerprint``."""

    def __init__(self, data_fingerprint: str) -> None:
        self.data_fingerprint = data_fingerprint
        self.path = decisions_path(data_fingerprint)

    def read(self) -> pd.DataFrame:
        """All decisions (columns :data:`COLUMNS`, sorted by id); empty when none were made.

        Raises
        ------
        DataError
            The file is not a decisions file: a column is missing, a decision is not one of
            :data:`DECISIONS`, or an id repeats.
        """
        if not self.path.is_file():
            return pd.DataFrame({column: pd.Series(dtype=str) for column in COLUMNS})
        try:
            frame = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            raise DataError(f"{self.path}: not a readable CSV; expected the columns "
                            f"{', '.join(COLUMNS)}") from None
        _check(frame, self.path)
        return frame[list(COLUMNS)].sort_values("id", ignore_index=True)

    def decisions(self) -> dict[str, str]:
        """Pair id -> decision."""
        frame = self.read()
        return dict(zip(frame["id"], frame["decision"], strict=True))

    def set(self, pair_id: str, decision: str | None, *, model_fingerprint: str,
            time: datetime | None = None) -> None:
        """Record ``decision`` on ``pair_id`` (``None`` forgets it) and rewrite the file.

        ``time`` defaults to now (UTC). The score version is ``model_fingerprint`` and this
        file's data fingerprint.

        Raises
        ------
        ValueError
            For a decision not in :data:`DECISIONS`.
        """
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision {decision!r}: expected one of {', '.join(DECISIONS)}")
        stamp = (time or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        with _WRITE_LOCK:
            frame = self.read()
            frame = frame[frame["id"] != str(pair_id)]
            if decision is not None:
                row = pd.DataFrame([{"id": str(pair_id), "decision": decision, "time": stamp,
                                     "model_fingerprint": model_fingerprint,
                                     "data_fingerprint": self.data_fingerprint}])
                frame = pd.concat([frame, row], ignore_index=True)
            with paths.atomic_write(self.path) as handle:
                handle.write(_csv(frame.sort_values("id")).encode("utf-8"))

    def exclusions(self) -> list[str]:
        """Ids of the pairs the next fine-tune leaves out (``exclude`` or ``wrong_note``)."""
        frame = self.read()
        return frame.loc[frame["decision"].isin(EXCLUDING), "id"].tolist()

    def to_csv(self) -> str:
        """The decisions as CSV text (the file's contents; a header only when none)."""
        return _csv(self.read())


def _csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame[list(COLUMNS)].to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def _check(frame: pd.DataFrame, path: Path) -> None:
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected "
                        f"{', '.join(COLUMNS)}")
    wrong = ~frame["decision"].isin(DECISIONS)
    if wrong.any():
        row = int(wrong.to_numpy().argmax())
        raise DataError(f"{path}: field decision: {frame['decision'].iloc[row]!r} in row "
                        f"{row + 1}; expected one of {', '.join(DECISIONS)}")
    repeated = frame["id"][frame["id"].duplicated()]
    if len(repeated):
        raise DataError(f"{path}: field id: {repeated.iloc[0]!r} appears twice; expected one "
                        "decision per pair")
