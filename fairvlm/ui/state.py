"""What the user chose and what is loaded, kept in ``st.session_state`` under ``fairvlm.*`` keys.

Choices (:class:`DataChoice`, :class:`ModelChoice`) are small frozen records; the heavy objects
they name (the pair table, the model) live in Streamlit's resource cache
(:mod:`fairvlm.ui.cache`) and are looked up from them. :class:`LoadedData` and
:class:`LoadedModelInfo` describe what was last loaded, for the sidebar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import streamlit as st

DATA_KEY = "fairvlm.data"
MODEL_KEY = "fairvlm.model"
LOADED_DATA_KEY = "fairvlm.loaded_data"
LOADED_MODEL_KEY = "fairvlm.loaded_model"

DataKind = Literal["demo", "server", "upload"]
DEMO_SPEC = "demo"
AUTO_DEVICE = "auto"


@dataclass(frozen=True)
class DataChoice:
    """The data set to use.

    ``kind`` is ``"demo"`` (the built-in synthetic demo; ``path`` empty, resolved at use),
    ``"server"`` (a folder or manifest on the server, inside the data roots) or ``"upload"``
    (a stored upload). ``attributes`` names a manifest's protected-attribute columns;
    ``origin`` says in words where the data came from (an upload's file name).
    """

    kind: DataKind = "demo"
    path: str = ""
    attributes: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class ModelChoice:
    """The model to use: a spec string (``demo``, ``ARCH:TAG``, ...), a device or ``auto``, and
    the open_clip architecture of a checkpoint file (None: read or inferred from the file)."""

    spec: str = DEMO_SPEC
    device: str = AUTO_DEVICE
    arch: str | None = None


@dataclass(frozen=True)
class LoadedData:
    """The data set in use: display name, size, fingerprint, folder or file, synthetic or not."""

    name: str
    n_pairs: int
    fingerprint: str
    path: str
    synthetic: bool


@dataclass(frozen=True)
class LoadedModelInfo:
    """The model in use: its spec, open_clip architecture, device and weights fingerprint."""

    spec: str
    arch: str
    device: str
    fingerprint: str


def data_choice() -> DataChoice:
    """The chosen data set (the built-in demo until the user picks another)."""
    return st.session_state.get(DATA_KEY, DataChoice())


def set_data_choice(choice: DataChoice) -> None:
    st.session_state[DATA_KEY] = choice


def model_choice() -> ModelChoice:
    """The chosen model (the demo model on the best device until the user picks another)."""
    return st.session_state.get(MODEL_KEY, ModelChoice())


def set_model_choice(choice: ModelChoice) -> None:
    st.session_state[MODEL_KEY] = choice


def loaded_data() -> LoadedData | None:
    return st.session_state.get(LOADED_DATA_KEY)


def set_loaded_data(info: LoadedData) -> None:
    st.session_state[LOADED_DATA_KEY] = info


def loaded_model() -> LoadedModelInfo | None:
    return st.session_state.get(LOADED_MODEL_KEY)


def set_loaded_model(info: LoadedModelInfo | None) -> None:
    st.session_state[LOADED_MODEL_KEY] = info
