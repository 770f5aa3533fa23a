"""Running the ``fairvlm`` command line in the test process, shared by tests/cli and
tests/robustness (``from cli_runner import Outcome, run_fairvlm``)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from fairvlm.cli import main


@dataclass(frozen=True)
class Outcome:
    """Exit status, stdout and stderr of one in-process ``fairvlm`` command."""

    status: int
    out: str
    err: str


def run_fairvlm(*argv: object) -> Outcome:
    """``run_fairvlm("inspect", "--data", path)``: ``fairvlm.cli.main`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in argv])
    return Outcome(status, out.getvalue(), err.getvalue())
