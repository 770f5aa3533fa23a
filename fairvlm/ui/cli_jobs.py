"""Run a ``fairvlm`` command in a child process and follow its progress bar.

Preparing the demo (data generation, demo-model training) runs ``python -m fairvlm ...`` as a
separate process, as DESIGN.md asks of heavy jobs: the Streamlit process never trains, and the
command's own progress bar (tqdm on stderr, ``... 450/1000 [00:10<00:12, ...]``) is turned into
``on_progress(done, total)`` calls for an ``st.progress`` bar. The command's ``error:`` and
``hint:`` lines become a :class:`~fairvlm.errors.FairVLMError`. If the caller is interrupted
(the user leaves the page), the child gets SIGINT, so it cleans up its partial output.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

from fairvlm.errors import FairVLMError

ProgressCallback = Callable[[int, int], None]
_PROGRESS = re.compile(rb"(\d+)/(\d+) \[")
_SEGMENT_END = re.compile(rb"[\r\n]")
_ERROR_PREFIX, _HINT_PREFIX = "error: ", "hint: "
_INTERRUPT_GRACE_S = 15.0


def run_fairvlm(args: Sequence[str], *, on_progress: ProgressCallback) -> str:
    """Run ``python -m fairvlm ARGS``; call ``on_progress`` as its progress bar moves.

    Returns
    -------
    str
        What the command printed on stdout (its one-line summary).

    Raises
    ------
    FairVLMError
        The command reported a user error (exit status 2 with an ``error:`` line).
    RuntimeError
        The command failed otherwise (a bug): the message holds its last stderr lines.
    """
    command = [sys.executable, "-m", "fairvlm", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    try:
        _follow(process, on_progress, lines)
        stdout = process.stdout.read().decode("utf-8", "replace") if process.stdout else ""
        status = process.wait()
    except BaseException:
        _interrupt(process)
        raise
    if status != 0:
        raise _failure(args, status, lines)
    return stdout.strip()


def _follow(process: subprocess.Popen, on_progress: ProgressCallback, lines: list[str]) -> None:
    """Read stderr until it closes, reporting progress and keeping the finished lines."""
    pending = b""
    while chunk := process.stderr.read1(4096):
        pending += chunk
        *segments, pending = _SEGMENT_END.split(pending)
        for segment in segments:
            _take(segment, on_progress, lines)
    _take(pending, on_progress, lines)


def _take(segment: bytes, on_progress: ProgressCallback, lines: list[str]) -> None:
    matches = _PROGRESS.findall(segment)
    if matches:
        done, total = matches[-1]
        on_progress(int(done), int(total))
    elif segment.strip():
        lines.append(segment.decode("utf-8", "replace").strip())


def _failure(args: Sequence[str], status: int, lines: list[str]) -> Exception:
    message = next((line[len(_ERROR_PREFIX):] for line in lines
                    if line.startswith(_ERROR_PREFIX)), None)
    if message is not None:
        hint = next((line[len(_HINT_PREFIX):] for line in lines
                     if line.startswith(_HINT_PREFIX)), None)
        return FairVLMError(message, hint=hint)
    tail = " | ".join(lines[-5:]) or "no output"
    return RuntimeError(f"`fairvlm {' '.join(args)}` failed with exit status {status}: {tail}")


def _interrupt(process: subprocess.Popen) -> None:
    """Ask the child to stop (SIGINT, so it removes partial files), then make sure it has."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=_INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
