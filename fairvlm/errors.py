"""User-facing errors.

Every mistake a user can make (a bad file, a wrong field, an impossible setting) raises a
:class:`FairVLMError` whose message is one line naming the file, the field and what was
expected. The CLI prints it as ``error: <message>`` and exits with status 2; the app shows it
with ``st.error``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FairVLMError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        one_line = " ".join(str(message).split())
        super().__init__(one_line)
        self.hint = hint


class DataError(FairVLMError):
    """A data set, manifest, image or notes file is missing or malformed."""


class ModelError(FairVLMError):
    """A model spec or checkpoint cannot be used."""


class ConfigError(FairVLMError):
    """An option or configuration value is out of range or inconsistent."""
