"""The sidebar block every page shows: the loaded data set, the model and the device."""

from __future__ import annotations

import streamlit as st

from fairvlm.report import SYNTHETIC_NOTE
from fairvlm.ui import cache, state
from fairvlm.ui.current import resolve_device
from fairvlm.ui.text import plain


def render_sidebar() -> None:
    """Draw the data set (name, pairs, fingerprint), model spec and device in the sidebar."""
    with st.sidebar:
        st.divider()
        _data_block()
        _model_block()


def _data_block() -> None:
    data = state.loaded_data()
    if data is None:
        st.markdown("**Data set** · none loaded")
        st.caption("Choose one on the Data & model page.")
        return
    st.markdown(f"**Data set** · {plain(data.name)}")
    st.caption(f"{data.n_pairs:,} pairs · fingerprint `{data.fingerprint}`")
    if data.synthetic:
        st.info(SYNTHETIC_NOTE, icon=":material/science:")


def _model_block() -> None:
    choice = state.model_choice()
    loaded = state.loaded_model()
    st.markdown(f"**Model** · {plain(choice.spec)}")
    device = resolve_device(choice.device)
    if (loaded is not None and (loaded.spec, loaded.device) == (choice.spec, device)
            and choice.arch in (None, loaded.arch)):
        st.caption(f"{plain(loaded.arch)} · weights `{loaded.fingerprint[:16]}`")
    else:
        st.caption("not loaded yet")
    st.markdown(f"**Device** · {cache.device_name(device)}")
