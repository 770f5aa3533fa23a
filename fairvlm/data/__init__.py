"""Pair tables of images, notes, labels and protected attributes, and their loaders.

:func:`load_dataset` opens whatever a user points at: a Harvard-FairVLMed folder
(:func:`load_fairvlmed`), a CSV/Parquet manifest (:func:`load_manifest`), or a folder holding
``manifest.csv`` / ``manifest.parquet``. Every loader returns a :class:`PairTable`.
:class:`PairDataset` (the torch view) is imported on first use, so importing this package
never imports torch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairvlm.data.fairvlmed import is_fairvlmed_root, load_fairvlmed
from fairvlm.data.images import read_image, to_pil
from fairvlm.data.manifest import CSV_SUFFIXES, PARQUET_SUFFIXES, load_manifest
from fairvlm.data.summary import small_group_warnings, summarize
from fairvlm.data.table import Attribute, PairTable
from fairvlm.errors import ConfigError, DataError

if TYPE_CHECKING:
    from fairvlm.data.torch_dataset import PairDataset

__all__ = [
    "Attribute",
    "PairDataset",
    "PairTable",
    "load_dataset",
    "load_fairvlmed",
    "load_manifest",
    "load_with_attributes",
    "read_image",
    "small_group_warnings",
    "summarize",
    "to_pil",
]

MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv", "manifest.parquet")


def load_dataset(path: str | os.PathLike[str], **options: Any) -> PairTable:
    """Load a data set, detecting its kind.

    ``path`` may be a Harvard-FairVLMed folder (it has Training/Validation/Test folders), a
    folder with ``manifest.csv`` or ``manifest.parquet``, or a ``.csv``/``.parquet``/``.pq``
    manifest. ``options`` go to the chosen loader; one it does not take is refused.
    """
    path = Path(path)
    manifest = _manifest_file(path)
    if manifest is not None:
        return _call(load_manifest, manifest, options)
    if path.is_dir():
        if is_fairvlmed_root(path):
            return _call(load_fairvlmed, path, options)
        raise DataError(f"{path}: neither a Harvard-FairVLMed folder nor a manifest folder; "
                        "expected Training/Validation/Test folders, or "
                        f"{' or '.join(MANIFEST_NAMES)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; expected a data folder or manifest")
    raise DataError(f"{path}: not a data set; expected a Harvard-FairVLMed folder or a "
                    ".csv/.parquet manifest")


def _manifest_file(path: Path) -> Path | None:
    """The manifest ``path`` names: itself (by suffix), or a folder's ``manifest.csv`` /
    ``manifest.parquet``; ``None`` for anything else."""
    if path.is_dir():
        return next((path / name for name in MANIFEST_NAMES if (path / name).is_file()), None)
    return path if path.suffix.lower() in CSV_SUFFIXES | PARQUET_SUFFIXES else None


def load_with_attributes(path: str | os.PathLike[str], attributes: Sequence[str],
                         **options: Any) -> PairTable:
    """:func:`load_dataset` with ``attributes`` as a manifest's protected columns.

    A manifest's attribute columns are whatever the caller names (its other columns are
    carried along); a Harvard-FairVLMed folder brings its own, and must hold every name.

    Raises
    ------
    DataError
        A named attribute the data set does not have (listing the ones it has).
    """
    path = Path(path)
    names = list(dict.fromkeys(attributes))
    if names and _manifest_file(path) is not None:
        options = {**options, "attributes": names}
    table = load_dataset(path, **options)
    for name in names:
        table.attribute(name)  # raises, listing the available ones, if absent
    return table


def _call(loader, path: Path, options: dict[str, Any]) -> PairTable:
    accepted = [name for name, parameter in inspect.signature(loader).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} do not apply to {path.name} "
                          f"({loader.__name__}); expected some of {', '.join(accepted)}")
    return loader(path, **options)


def __getattr__(name: str) -> Any:
    if name == "PairDataset":
        from fairvlm.data.torch_dataset import PairDataset

        return PairDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
