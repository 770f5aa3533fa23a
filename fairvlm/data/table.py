"""The pair table: one in-memory representation of a data set of image-text pairs.

Every loader (Harvard-FairVLMed folders, CSV/Parquet manifests, the synthetic demo) returns a
:class:`PairTable`. Everything downstream (scoring, metrics, training, the app) reads only this.

Columns of ``PairTable.frame``
------------------------------
``id``      str, unique, stable across loads (e.g. the npz file stem); never contains a path
            separator.
``split``   one of ``"train"``, ``"val"``, ``"test"``.
``image``   str, a reference that :func:`fairvlm.data.images.read_image` decodes lazily
            (a file path, optionally ``path::array_key`` for npz members).
``text``    str, the clinical note paired with the image.
``label``   int8, 0 or 1.
one int column per protected attribute, holding integer group codes; the attribute's
:class:`Attribute` maps codes to human-readable names and names the code meaning "unknown".
Other columns (``age`` ...) may follow; they are carried but not treated as attributes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairvlm.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
REQUIRED_COLUMNS: tuple[str, ...] = ("id", "split", "image", "text", "label")
UNKNOWN_NAME = "unknown"
# An id that is not a plain name: a path separator anywhere, or "." / "..".
NOT_PLAIN_ID = r"[/\\]|^\.\.?$"
# Longest note a loader accepts. A clinical note runs to a few thousand characters; anything
# near this is another column or a file pasted into a cell, and would make the tokenizer and
# every export crawl.
MAX_NOTE_CHARS = 100_000
# Most groups a protected attribute may have. More is an id, a measurement or a free-text
# column, whose per-group metrics would all be noise.
MAX_GROUPS = 100
_FINGERPRINT_SAMPLE_BYTES = 65536


@dataclass(frozen=True)
class Attribute:
    """A protected attribute: integer group codes and their names.

    Parameters
    ----------
    name
        Column name in the pair table (``"race"``).
    groups
        Code -> human-readable group name, e.g. ``{0: "Asian", 1: "Black", 2: "White"}``.
        The unknown code need not be listed.
    unknown_code
        The code that means "not recorded" (``-1`` in FairVLMed). It is always its own
        labelled group (``"unknown"``) or excluded by an explicit setting; never mixed in.
    """

    name: str
    groups: Mapping[int, str]
    unknown_code: int = -1

    def group_name(self, code: int) -> str:
        """Name of ``code``; the unknown code is called ``"unknown"``."""
        if code == self.unknown_code:
            return UNKNOWN_NAME
        return self.groups.get(int(code), str(code))

    def names(self, codes: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`group_name` (object array of names)."""
        lookup = {**{int(k): v for k, v in self.groups.items()}, self.unknown_code: UNKNOWN_NAME}
        return np.array([lookup.get(int(c), str(int(c))) for c in codes], dtype=object)


@dataclass
class PairTable:
    """A data set of image-text pairs with binary labels and protected attributes.

    Parameters
    ----------
    frame
        One row per pair; see the module docstring for the columns.
    attributes
        Protected attributes by column name.
    source
        Where the data came from, in words: which files and columns a loader used.
    name
        A short display name (``"demo"``, a folder name).
    warnings
        One line per thing a loader skipped or counted (an unreadable file, a notes row
        matching no image), so a caller can show what was left out.
    synthetic
        True for data fairvlm generated (the demo, marked by its ``demo_config.json``): the
        audit records it and its reports say so.
    """

    frame: pd.DataFrame
    attributes: dict[str, Attribute]
    source: str = ""
    name: str = "data"
    warnings: list[str] = field(default_factory=list)
    synthetic: bool = False
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.frame = self.frame.reset_index(drop=True)
        validate(self)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> np.ndarray:
        return self.frame["id"].to_numpy()

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy(dtype=np.int64)

    def split_indices(self, split: str) -> np.ndarray:
        """Row positions of ``split`` (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in SPLITS:
            raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.frame["split"].to_numpy() == split)

    def subset(self, split: str) -> PairTable:
        """A new table holding only ``split``'s rows."""
        rows = self.frame.iloc[self.split_indices(split)]
        return PairTable(rows, dict(self.attributes), source=self.source, name=self.name,
                         synthetic=self.synthetic,
                         warnings=list(self.warnings))

    def attribute(self, name: str) -> Attribute:
        """The attribute called ``name``, or a one-line error listing the available ones."""
        if name not in self.attributes:
            have = ", ".join(self.attributes) or "none"
            raise DataError(f"attribute {name!r} is not in the data; available: {have}")
        return self.attributes[name]

    def group_codes(self, name: str) -> np.ndarray:
        """Integer group codes of attribute ``name`` for every row."""
        self.attribute(name)
        return self.frame[name].to_numpy(dtype=np.int64)

    def fingerprint(self) -> str:
        """Content fingerprint used as a cache key (hex, 16 characters).

        Hashes ids, splits, texts, labels and attribute codes, and for every image file its
        size and the first and last 64 KiB of its bytes (an npz's zip directory at the end
        holds each member's CRC, so an edit inside an npz changes the fingerprint). Loading the
        same files twice, or regenerating the demo with the same seed, gives the same value.
        """
        if self._fingerprint is None:
            self._fingerprint = _fingerprint(self)
        return self._fingerprint


def validate(table: PairTable) -> None:
    """Check the schema of ``table``; raise :class:`DataError` with one line on the first fault."""
    frame, where = table.frame, table.name
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; "
                        f"expected {', '.join(REQUIRED_COLUMNS)}")
    if len(frame) == 0:
        raise DataError(f"{where}: the data set is empty; expected at least one image-text pair")
    ids = frame["id"].astype(str)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(f"{where}: field id: duplicate sample id {dup.iloc[0]!r}; "
                        "expected unique ids")
    bad_id = ids[ids.str.contains(NOT_PLAIN_ID, regex=True)]
    if len(bad_id):
        raise DataError(f"{where}: field id: {bad_id.iloc[0]!r} contains a path separator; "
                        "expected a plain name")
    bad_split = ~frame["split"].isin(SPLITS)
    if bad_split.any():
        value = frame.loc[bad_split, "split"].iloc[0]
        raise DataError(f"{where}: field split: '{value}'; expected one of {', '.join(SPLITS)}")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad_label = ~labels.isin([0, 1])
    if bad_label.any():
        value = frame.loc[bad_label, "label"].iloc[0]
        raise DataError(f"{where}: field label: '{value}' is not binary; expected 0 or 1")
    for name, attr in table.attributes.items():
        if name not in frame.columns:
            raise DataError(f"{where}: attribute column {name!r} is missing")
        codes = pd.to_numeric(frame[name], errors="coerce")
        if codes.isna().any():
            raise DataError(f"{where}: field {name}: missing or non-numeric group code; "
                            f"expected integer codes with {attr.unknown_code} for unknown")
        if (codes != codes.round()).any():
            raise DataError(f"{where}: field {name}: non-integer group code; "
                            "expected integer codes")
    if not frame["text"].map(lambda t: isinstance(t, str)).all():
        raise DataError(f"{where}: field text: a note is not a string; expected text")


def check_note_length(text: str, where: str) -> None:
    """Refuse a note longer than :data:`MAX_NOTE_CHARS`; ``where`` names file, field and row.

    Raises
    ------
    DataError
        ``<where>: a note of N characters; expected at most 100,000 ...``.
    """
    if len(text) > MAX_NOTE_CHARS:
        raise DataError(f"{where}: a note of {len(text):,} characters; expected at most "
                        f"{MAX_NOTE_CHARS:,} (check that this column holds the notes)")


def _fingerprint(table: PairTable) -> str:
    digest = hashlib.blake2b(digest_size=8)
    frame = table.frame
    columns = [*REQUIRED_COLUMNS[:2], "text", "label", *sorted(table.attributes)]
    for column in columns:
        digest.update(column.encode())
        digest.update("\x1f".join(map(str, frame[column].tolist())).encode("utf-8", "replace"))
    for name in sorted(table.attributes):
        attr = table.attributes[name]
        digest.update(repr((name, sorted(attr.groups.items()), attr.unknown_code)).encode())
    for ref in frame["image"].tolist():
        digest.update(_file_signature(str(ref)))
    return digest.hexdigest()


def _file_signature(ref: str) -> bytes:
    path_part, _, key = ref.partition("::")
    path = Path(path_part)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(_FINGERPRINT_SAMPLE_BYTES)
            if size > 2 * _FINGERPRINT_SAMPLE_BYTES:
                handle.seek(size - _FINGERPRINT_SAMPLE_BYTES)
            tail = handle.read(_FINGERPRINT_SAMPLE_BYTES)
    except OSError:
        return f"missing:{path.name}:{key}".encode()
    return f"{path.name}:{key}:{size}:".encode() + hashlib.blake2b(head + tail).digest()
