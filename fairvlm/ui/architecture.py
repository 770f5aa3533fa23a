"""The Architecture field: the open_clip architecture of a checkpoint file, for a file that
does not name it and whose tensors do not tell it (the app's ``--arch``)."""

from __future__ import annotations

import streamlit as st

INFER = "infer"
INFER_LABEL = "infer from the checkpoint"


def architecture_options() -> list[str]:
    """:data:`INFER`, then every registered open_clip architecture name, sorted."""
    from fairvlm.models.architectures import known_architectures

    return [INFER, *known_architectures()]


def architecture_input(chosen: str | None, *, key: str) -> str | None:
    """Draw the Architecture select box (``chosen`` preselected, else :data:`INFER`); return
    the architecture picked, or None to read or infer it from the checkpoint."""
    options = architecture_options()
    picked = st.selectbox(
        "Architecture", options, index=options.index(chosen) if chosen in options else 0,
        format_func=lambda option: INFER_LABEL if option == INFER else option, key=key,
        help="The open_clip architecture of a checkpoint file (e.g. ViT-B-16). By default it "
             "is read from the file (checkpoints fairvlm writes name it) or inferred from its "
             "tensors; choose it when neither works. Specs such as ViT-B-16:openai name their "
             "own.")
    return None if picked == INFER else picked
