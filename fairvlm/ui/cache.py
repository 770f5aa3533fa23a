"""Streamlit caches of what is slow to load: pair tables, thumbnails, summaries, models.

- Pair tables and models are cached with ``st.cache_resource`` (one shared object per key, no
  copy, no pickling of a DataFrame or a torch module). They are read-only: nothing in the app
  mutates them, and training loads its own model copy (DESIGN.md).
- Summaries and thumbnails are small values cached with ``st.cache_data``, keyed by the
  table's content fingerprint or the image reference.

A table's key is its path, the loader options, the allowed roots and a cheap stamp of the
files (:func:`path_stamp`), so editing or replacing the data set loads it again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import streamlit as st

from fairvlm.data import PairTable, load_with_attributes, read_image, summarize, to_pil
from fairvlm.errors import DataError
from fairvlm.paths import require_within_roots

if TYPE_CHECKING:
    from fairvlm.models import LoadedModel

THUMBNAIL_PX = 192
_TABLES_KEPT = 4
_MODELS_KEPT = 2


def path_stamp(path: Path) -> tuple[int, ...]:
    """Modification times (ns) of ``path`` and, for a folder, of its direct entries.

    Adding, removing or replacing a file in the folder or one of its split folders changes it.
    """
    entries = [path, *sorted(path.iterdir())] if path.is_dir() else [path]
    return tuple(entry.stat().st_mtime_ns for entry in entries if entry.exists())


@st.cache_resource(max_entries=_TABLES_KEPT, show_spinner=False)
def load_table(path: str, attributes: tuple[str, ...], stamp: tuple[int, ...],
               roots: tuple[str, ...]) -> PairTable:
    """The pair table at ``path`` (read-only), its images checked to lie inside ``roots``.

    ``stamp`` is :func:`path_stamp` of ``path`` and only keys the cache. The fingerprint is
    computed here, before the table is shared.
    """
    table = load_with_attributes(path, attributes)
    require_images_within(table, [Path(root) for root in roots])
    table.fingerprint()
    return table


def require_images_within(table: PairTable, roots: list[Path]) -> None:
    """Refuse a table whose image files lie outside ``roots`` (a manifest's ``../x``, or a
    symbolic link inside a root that points out of it).

    Each image folder is resolved once; within a folder, only the entries that are symbolic
    links (one directory listing, no stat per file) are resolved one by one.

    Raises
    ------
    DataError
        Naming the first image outside the roots (and where a link leads).
    """
    files_by_folder: dict[str, list[str]] = {}
    for ref in table.frame["image"]:
        folder, name = os.path.split(str(ref).partition("::")[0])
        files_by_folder.setdefault(folder, []).append(name)
    for folder in sorted(files_by_folder):
        first = os.path.join(folder, files_by_folder[folder][0])
        try:
            require_within_roots(folder, roots)
        except DataError:
            raise _outside(first, roots) from None
        for name in sorted(set(files_by_folder[folder]) & _symbolic_links(folder)):
            link = os.path.join(folder, name)
            target = os.path.realpath(link)
            try:
                require_within_roots(target, roots)
            except DataError:
                raise _outside(link, roots, target) from None


def _symbolic_links(folder: str) -> set[str]:
    """Names of the entries of ``folder`` that are symbolic links (none if unreadable)."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name for entry in entries if entry.is_symlink()}
    except OSError:
        return set()


def _outside(image: str, roots: list[Path], target: str | None = None) -> DataError:
    listing = ", ".join(str(root) for root in roots)
    where = f" (a link to {target})" if target else ""
    return DataError(f"{image}: image outside the allowed data roots{where}; expected images "
                     f"under one of: {listing}")


@st.cache_data(max_entries=16, show_spinner=False)
def table_summary(fingerprint: str, _table: PairTable) -> pd.DataFrame:
    """:func:`fairvlm.data.summarize` of the table with this fingerprint."""
    return summarize(_table)


@st.cache_data(max_entries=512, show_spinner=False)
def thumbnail(ref: str, fingerprint: str, size: int = THUMBNAIL_PX) -> np.ndarray:
    """The image ``ref`` as an 8-bit RGB array at most ``size`` pixels on its longer side.

    ``fingerprint`` (of the table holding ``ref``) only keys the cache, so a changed file is
    read again.
    """
    image = to_pil(read_image(ref))
    image.thumbnail((size, size))
    return np.asarray(image)


@st.cache_resource(show_spinner=False)
def available_devices() -> tuple[str, ...]:
    """``cpu`` and every CUDA device of this machine (``cuda:0`` ...)."""
    import torch

    return ("cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count())))


@st.cache_resource(show_spinner=False)
def device_name(device: str) -> str:
    """A readable name of ``device`` (``cpu``, or ``cuda:0 (NVIDIA H100 ...)``)."""
    import torch

    if not device.startswith("cuda"):
        return device
    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


@st.cache_resource(max_entries=_MODELS_KEPT, show_spinner=False)
def load_model(spec: str, device: str, arch: str | None = None) -> LoadedModel:
    """:func:`fairvlm.models.load_model` of ``spec`` on ``device`` with the architecture
    ``arch`` (None: read or inferred from the checkpoint); read-only once cached."""
    from fairvlm.models import load_model as load

    return load(spec, device=device, arch=arch)
