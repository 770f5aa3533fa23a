"""Driving the app under Streamlit's AppTest, shared by the page tests (tests/app and others).

``tests/support`` is on pytest's ``pythonpath`` (pyproject.toml), so test modules import this
as ``from app_driver import open_app, open_page, run``.
"""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from fairvlm.ui.data_table import MISSING
from fairvlm.ui.state import MODEL_KEY, ModelChoice

APP = Path(__file__).resolve().parents[2] / "app.py"
TIMEOUT_S = 120
# CommonMark: a backslash before an ASCII punctuation character shows that character as is.
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def run(app: AppTest) -> AppTest:
    """Rerun ``app``, asserting that no exception reached the page and that every table on it
    shows a missing value as a dash (:func:`fairvlm.ui.data_table.show`), not as "None"."""
    app.run(timeout=TIMEOUT_S)
    assert not app.exception, [e.message for e in app.exception]
    assert all(table.proto.placeholder == MISSING for table in app.dataframe)
    return app


def open_app() -> AppTest:
    """The app's first page, run once."""
    return run(AppTest.from_file(str(APP), default_timeout=TIMEOUT_S))


def open_page(home: Path, page: str, checkpoint: str = "tiny.safetensors",
              arch: str | None = None) -> AppTest:
    """``page`` (e.g. ``"pages/audit.py"``) with the model ``home / checkpoint`` on the CPU
    (``arch``: its architecture as chosen in the app; None: read from the file)."""
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    app.session_state[MODEL_KEY] = ModelChoice(str(home / checkpoint), "cpu", arch)
    run(app)
    app.switch_page(page)
    return run(app)


def shown(body: str) -> str:
    """The text a Markdown element with ``body`` shows, for a body whose Markdown syntax is all
    backslash-escaped (as :func:`fairvlm.ui.text.plain` writes it): the escapes removed."""
    return _MARKDOWN_ESCAPE.sub(r"\1", body)
