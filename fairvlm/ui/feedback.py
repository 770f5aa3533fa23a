"""Show user errors in the app: one ``st.error`` line and a hint, never a traceback.

A :class:`~fairvlm.errors.FairVLMError` carries a one-line message and sometimes its own hint;
without one, a hint for its kind (data, model, option) is shown. Any other exception is a bug
and keeps Streamlit's traceback display.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from fairvlm.errors import ConfigError, DataError, FairVLMError, ModelError
from fairvlm.ui.text import plain

DEFAULT_HINTS: dict[type[FairVLMError], str] = {
    DataError: "Check the path and the data format: a Harvard-FairVLMed folder "
               "(Training/Validation/Test), or a CSV/Parquet manifest with image, text and "
               "label columns.",
    ModelError: "Check the model spec: demo, ARCH:TAG (e.g. ViT-B-16:openai), "
                "hf-hub:ORG/NAME, or the path of a checkpoint file.",
    ConfigError: "Check the option's value against the range given in the message.",
}


def hint_for(error: FairVLMError) -> str | None:
    """The error's own hint, else the default hint of its kind."""
    if error.hint:
        return error.hint
    for kind, hint in DEFAULT_HINTS.items():
        if isinstance(error, kind):
            return hint
    return None


def show_error(error: FairVLMError) -> None:
    """Draw ``error`` as one ``st.error`` line followed by its hint, both shown as written
    (:func:`~fairvlm.ui.text.plain`: a path's ``*`` or ``__`` is not Markdown)."""
    st.error(plain(str(error)), icon=":material/error:")
    hint = hint_for(error)
    if hint:
        st.caption(f"Hint: {plain(hint)}")


@contextmanager
def user_errors() -> Iterator[None]:
    """Run the block; a :class:`FairVLMError` it raises is shown with :func:`show_error`.

    The block stops at the error; code after the ``with`` statement runs as usual.
    """
    try:
        yield
    except FairVLMError as error:
        show_error(error)
