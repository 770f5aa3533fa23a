"""The data set and model the user chose, loaded (and, for the demo, prepared) on demand.

Every page gets its data through :func:`current_table` and its model through
:func:`current_model`; both read the choice from session state, use the caches of
:mod:`fairvlm.ui.cache`, and record what is loaded for the sidebar. Preparing the built-in demo
(generating its data, training its model) runs the ``fairvlm`` command in a child process with
an ``st.progress`` bar; one preparation at a time per server process.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from fairvlm import paths
from fairvlm.data import PairTable
from fairvlm.data.demo import read_demo_manifest
from fairvlm.ui import cache, state
from fairvlm.ui.cli_jobs import ProgressCallback, run_fairvlm
from fairvlm.ui.feedback import user_errors
from fairvlm.ui.state import AUTO_DEVICE, DataChoice, LoadedData, LoadedModelInfo, ModelChoice
from fairvlm.ui.text import plain
from fairvlm.uploads import uploads_dir

if TYPE_CHECKING:
    from fairvlm.models import LoadedModel

DEMO_NAME = "Built-in demo"
_PREPARE_LOCK = threading.Lock()


def current_table() -> PairTable:
    """The chosen data set (read-only), recorded as the loaded one."""
    return load_choice(state.data_choice())


def load_choice(choice: DataChoice) -> PairTable:
    """Load the data set ``choice`` names and record it as the loaded one.

    Raises
    ------
    DataError
        The path is outside the allowed roots, or the data cannot be loaded.
    """
    path, roots = _resolve(choice)
    with st.spinner(f"Loading {plain(path.name)} ..."):
        table = cache.load_table(str(path), choice.attributes, cache.path_stamp(path),
                                 tuple(str(root) for root in roots))
    name = choice.origin or (DEMO_NAME if choice.kind == "demo" else table.name)
    state.set_loaded_data(LoadedData(name=name, n_pairs=len(table),
                                     fingerprint=table.fingerprint(), path=str(path),
                                     synthetic=table.synthetic))
    return table


def _resolve(choice: DataChoice) -> tuple[Path, list[Path]]:
    """The path to load and the roots its images may come from."""
    roots = paths.data_roots()
    if choice.kind == "demo":
        folder = paths.demo_data_dir()
        ensure_demo_data(folder)
        return folder, [*roots, folder]
    if choice.kind == "upload":
        roots = [*roots, uploads_dir()]
    return paths.require_within_roots(choice.path, roots), roots


def ensure_demo_data(folder: Path) -> None:
    """Generate the default demo in ``folder`` unless a demo is already there."""
    with _PREPARE_LOCK:
        if read_demo_manifest(folder) is not None:
            return
        bar = st.progress(0.0, text="Generating the SYNTHETIC demo data set ...")
        run_fairvlm(["demo", "--out", str(folder)],
                    on_progress=_progress_text(bar, "Generating the SYNTHETIC demo data set",
                                               "subjects"))
        bar.empty()


def current_model() -> LoadedModel:
    """The chosen model, loaded (read-only), recorded as the loaded one.

    The demo model is trained first if it does not exist yet (about two minutes on two CPU
    cores), with a progress bar.

    Raises
    ------
    ModelError
        The spec is malformed, its file is missing or outside the allowed roots, or the
        checkpoint cannot be loaded.
    """
    choice = state.model_choice()
    loaded = load_spec(choice.spec, choice.device, choice.arch)
    state.set_loaded_model(LoadedModelInfo(spec=choice.spec, arch=loaded.arch,
                                           device=loaded.device,
                                           fingerprint=loaded.fingerprint))
    return loaded


def use_model(choice: ModelChoice) -> LoadedModel:
    """Load ``choice`` and make it the model in use; on failure the model in use stays.

    The choice keeps its architecture only where the loader used it (a checkpoint file); a
    spec that names its own architecture is recorded without it.

    Raises
    ------
    ModelError
        As :func:`current_model`.
    """
    loaded = load_spec(choice.spec, choice.device, choice.arch)
    if choice.arch not in (None, loaded.arch):
        choice = replace(choice, arch=None)
    state.set_model_choice(choice)
    return current_model()


def table_and_model() -> tuple[PairTable, LoadedModel] | None:
    """The chosen data set and model, or None after showing why they could not be loaded.

    A :class:`~fairvlm.errors.FairVLMError` from either is shown as one ``st.error`` line with
    its hint (:func:`fairvlm.ui.feedback.user_errors`); the page then draws nothing that needs
    them.
    """
    with user_errors():
        return current_table(), current_model()
    return None


def load_spec(spec: str, device: str, arch: str | None = None) -> LoadedModel:
    """The model ``spec`` on ``device`` (or ``auto``), checked and cached like the chosen one,
    without making it the model in use (e.g. a checkpoint to compare with it).

    ``arch`` is the open_clip architecture of a checkpoint file (None: read or inferred from
    the file); other specs name their own, so it is dropped for them (and from the cache key).

    Raises
    ------
    ModelError
        As :func:`current_model`.
    """
    device = resolve_device(device)
    is_file = _check_spec(spec)
    with st.spinner(f"Loading model {plain(spec)} on {device} ..."):
        return cache.load_model(spec, device, arch if is_file else None)


def resolve_device(device: str) -> str:
    """``auto`` becomes the first CUDA device if there is one, else ``cpu``."""
    if device != AUTO_DEVICE:
        return device
    devices = cache.available_devices()
    return devices[1] if len(devices) > 1 else devices[0]


def _check_spec(spec: str) -> bool:
    """Prepare the demo model, or keep a checkpoint file inside the allowed roots; return
    whether ``spec`` is a checkpoint file."""
    from fairvlm.models import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind == "demo":
        ensure_demo_model()
    elif parsed.kind == "file":
        paths.require_within_roots(parsed.path, [*paths.data_roots(), paths.runs_dir()])
    return parsed.kind == "file"


def ensure_demo_model() -> None:
    """Train the demo model on the demo data unless it exists."""
    from fairvlm.models.demo_model import demo_model_info

    with _PREPARE_LOCK:
        if demo_model_info() is not None:
            return
        bar = st.progress(0.0, text="Training the demo model (about 2 minutes on 2 CPU cores)")
        run_fairvlm(["prepare-demo-model"],
                    on_progress=_progress_text(bar, "Training the demo model", "steps"))
        bar.empty()


def _progress_text(bar: DeltaGenerator, what: str, unit: str) -> ProgressCallback:
    """A progress callback that moves ``bar`` and says ``what: done / total unit``."""

    def update(done: int, total: int) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"{what}: {done} / {total} {unit}")

    return update
