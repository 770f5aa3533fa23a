"""Load a generic manifest: a CSV or Parquet table of image-text pairs.

One row per pair. Columns (names configurable):

``image``  path of the image, relative to the manifest's folder (or absolute); PNG, JPEG,
           NPY, NPZ (``file.npz::key`` picks an array) or DICOM.
``text``   the note paired with the image.
``label``  0 or 1.
``split``  optional: ``train``/``val``/``test`` (``training``, ``validation``, ``valid``,
           ``dev``, ``testing`` are accepted, any case). Without the column, a seeded split
           stratified by label puts 70/10/20 % of each class in train/val/test.
``id``     optional: a stable sample id, unique, a plain name (no ``/`` or ``\\``, not ``.``
           or ``..``). Without it, ids are the image file stems (or, when stems repeat, the
           image paths relative to the manifest with ``/`` replaced by ``__``).

A note longer than :data:`~fairvlm.data.table.MAX_NOTE_CHARS` (100,000) characters is refused:
it is another column or a file pasted into a cell, not a clinical note.

Attribute columns are the ones the caller names. Their values become integer group codes:
integer values are kept as codes (named by their digits); any other values are coded
0, 1, ... in sorted order and keep their text as the group name. The literal ``unknown`` (any
case) and ``-1`` are the unknown code -1. A blank cell is refused, naming the column and row,
unless ``missing_as_unknown=True`` counts blanks as unknown too: silently guessing a group
would corrupt every fairness number. Non-integer numbers (an age of 45.5) are refused: bin
continuous values first. So is an attribute of more than
:data:`~fairvlm.data.table.MAX_GROUPS` (100) groups: an id or a measurement, whose per-group
metrics would all be noise.

DICOM tags can fill columns: ``dicom_tags={"sex": "PatientSex"}`` reads the tag from each
DICOM image's header into column ``sex`` for every row whose cell is blank or whose column is
absent. PatientSex ``F``/``M``/``O`` become ``Female``/``Male``/``Other``; PatientAge
(``045Y``, ``006M``, ``003W``, ``010D``) becomes years. A filled column is an attribute if it
is also named in ``attributes``, otherwise it is carried as an extra column.

Text encoding policy: CSV files must be UTF-8 (a byte-order mark is allowed). Anything else is
refused with the byte offset and line of the first bad byte, never guessed as Latin-1: a
silently mis-decoded note would change what the model reads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairvlm.data.images import check_image, image_format, read_image, split_ref
from fairvlm.data.table import (
    MAX_GROUPS,
    NOT_PLAIN_ID,
    UNKNOWN_NAME,
    Attribute,
    PairTable,
    check_note_length,
)
from fairvlm.data.text import decode_utf8
from fairvlm.errors import ConfigError, DataError

CSV_SUFFIXES = frozenset({".csv"})
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
UNKNOWN_CODE = -1
DICOM_SEX_NAMES: dict[str, str] = {"F": "Female", "M": "Male", "O": "Other"}
_AGE_UNITS_IN_YEARS: dict[str, float] = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25,
                                         "D": 1.0 / 365.25}
_MAX_REPORTED_SKIPS = 10


def read_tabular(path: Path) -> pd.DataFrame:
    """Read a CSV (UTF-8, every cell as text) or Parquet file into a data frame.

    Raises
    ------
    DataError
        If the file is missing, not UTF-8 (naming the byte offset and line), or unparsable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected a CSV or Parquet table")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise DataError(f"{path}: cannot read Parquet ({error}); expected a Parquet "
                            "table") from None
    if suffix not in CSV_SUFFIXES:
        raise DataError(f"{path}: unsupported table type {suffix or '(none)'}; expected "
                        ".csv, .parquet or .pq")
    raw = path.read_bytes()
    decode_utf8(raw, str(path))  # the check, with its one-line message; pandas parses the bytes
    try:  # (parsing a str buffer held about four times the text's size)
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=True,
                           encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header row and at least "
                        "one data row") from None
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: malformed CSV ({error}); expected comma-separated rows "
                        "with a header") from None


def load_manifest(
    path: str | os.PathLike[str],
    *,
    image_column: str = "image",
    text_column: str = "text",
    label_column: str = "label",
    split_column: str = "split",
    id_column: str | None = None,
    attributes: Sequence[str] | None = None,
    dicom_tags: Mapping[str, str] | None = None,
    missing_as_unknown: bool = False,
    seed: int = 0,
    strict: bool = False,
) -> PairTable:
    """Load a CSV or Parquet manifest of image-text pairs (format in the module docstring).

    Parameters
    ----------
    path
        The manifest file; image paths in it are relative to its folder.
    image_column, text_column, label_column
        Required columns.
    split_column
        Used when present; otherwise a split stratified by label with ``seed``.
    id_column
        Sample ids; ``None`` uses a column ``id`` if present, else image file stems.
    attributes
        Columns to treat as protected attributes.
    dicom_tags
        Column name -> DICOM keyword, filled from each DICOM image's header where blank.
    missing_as_unknown
        Count blank attribute cells as the unknown group instead of refusing them.
    seed
        Seed of the generated split.
    strict
        Refuse the whole manifest on the first unreadable image (every image is decoded).
        Otherwise images get a cheap integrity check, and rows whose image is missing or
        broken are skipped and listed in ``PairTable.warnings``.
    """
    path = Path(path)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed {seed!r}: expected an integer >= 0 (it seeds the split of a "
                          "manifest without a split column)")
    frame = read_tabular(path)
    attributes = list(attributes or [])
    tags = dict(dicom_tags or {})
    _check_dicom_keywords(tags)
    if id_column is None and "id" in frame.columns:
        id_column = "id"
    required = [image_column, text_column, label_column, *([id_column] if id_column else [])]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected columns "
                        f"{', '.join(required)} (found: {', '.join(map(str, frame.columns))})")
    absent = [a for a in attributes if a not in frame.columns and a not in tags]
    if absent:
        raise DataError(f"{path}: attribute column(s) {', '.join(absent)} not found; expected "
                        f"columns of the manifest (found: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise DataError(f"{path}: no rows; expected at least one image-text pair")

    images = _image_refs(frame[image_column], path, image_column)
    labels = _binary_labels(frame[label_column], path, label_column)
    texts = _texts(frame[text_column], path, text_column)
    ids = (_column_ids(frame[id_column], path, id_column) if id_column
           else _image_ids(images, path))
    if split_column in frame.columns:
        splits = _named_splits(frame[split_column], path, split_column)
        split_note = f"splits from column {split_column!r}"
    else:
        splits = stratified_split(ids, labels, seed=seed)
        split_note = (f"no column {split_column!r}: seeded split (seed {seed}) stratified by "
                      "label, 70/10/20 % train/val/test")

    keep, problems = _usable_images(images, strict=strict)
    if not keep.any():
        raise DataError(f"{path}: none of the {len(frame)} rows has a usable image; first "
                        f"problem: {problems[0]}")
    table_frame = pd.DataFrame({
        "id": ids[keep], "split": splits[keep], "image": images[keep], "text": texts[keep],
        "label": labels[keep].astype(np.int8),
    })
    rows = frame.loc[keep].reset_index(drop=True)
    for column, keyword in tags.items():
        rows[column] = _fill_from_dicom(rows, column, keyword, table_frame["image"])
    coded: dict[str, Attribute] = {}
    for name in attributes:
        table_frame[name], coded[name] = code_attribute(
            rows[name], name, path, missing_as_unknown=missing_as_unknown)
    for column in tags:
        if column not in coded:
            table_frame[column] = rows[column].to_numpy()

    source = "; ".join([
        f"manifest {path}: {len(table_frame)} of {len(frame)} rows",
        f"images from column {image_column!r} (relative to {path.parent})",
        f"text from column {text_column!r}", f"labels from column {label_column!r}",
        f"ids from column {id_column!r}" if id_column else "ids from image file names",
        split_note,
        "attributes " + (", ".join(repr(a) for a in attributes) if attributes else "none"),
        *([f"DICOM tags {', '.join(f'{k}={v}' for k, v in tags.items())}"] if tags else []),
    ])
    warnings = skip_warnings(problems, len(frame), "rows whose image is missing or unreadable")
    return PairTable(table_frame, coded, source=source, name=path.stem, warnings=warnings)


def stratified_split(ids: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Assign ``train``/``val``/``test`` with 70/10/20 % of each label class, seeded.

    Within each class the rows are ordered by id, then permuted by
    ``numpy.random.default_rng(seed)``; the first ``floor(0.7 n + 0.5)`` go to train, the next
    ``floor(0.1 n + 0.5)`` to val, the rest to test. The result depends only on the ids,
    labels and seed, not on the row order of the manifest.
    """
    rng = np.random.default_rng(seed)
    ids = np.asarray(ids).astype(str)
    splits = np.empty(len(ids), dtype=object)
    for label in (0, 1):
        members = np.flatnonzero(np.asarray(labels) == label)
        members = rng.permutation(members[np.argsort(ids[members], kind="stable")])
        n_train = int(np.floor(SPLIT_FRACTIONS[0] * len(members) + 0.5))
        n_val = int(np.floor(SPLIT_FRACTIONS[1] * len(members) + 0.5))
        splits[members[:n_train]] = "train"
        splits[members[n_train:n_train + n_val]] = "val"
        splits[members[n_train + n_val:]] = "test"
    return splits


def code_attribute(values: pd.Series, name: str, path: Path, *,
                   missing_as_unknown: bool = False) -> tuple[np.ndarray, Attribute]:
    """Integer group codes and the :class:`Attribute` of one attribute column.

    Integer values are kept as codes; other values are coded 0, 1, ... in sorted order of their
    text. ``unknown`` (any case) and -1 give the unknown code -1; blank cells are refused
    unless ``missing_as_unknown``.
    """
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.any() and not missing_as_unknown:
        row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise DataError(f"{path}: field {name}: {int(blank.sum())} blank value(s), first in "
                        f"data row {row}; expected a group for every row (or pass "
                        "missing_as_unknown=True to count blanks as unknown)")
    said_unknown = text.str.lower().isin([UNKNOWN_NAME, str(UNKNOWN_CODE)]).fillna(False)
    unknown = (blank | said_unknown).to_numpy(dtype=bool)
    known = text[~unknown]
    numbers = pd.to_numeric(known, errors="coerce")
    codes = np.full(len(values), UNKNOWN_CODE, dtype=np.int64)
    if len(known) and numbers.notna().all():
        whole = numbers.to_numpy(dtype=np.float64)
        if not np.array_equal(whole, np.round(whole)):
            example = known[(numbers != numbers.round()).to_numpy(dtype=bool)].iloc[0]
            raise DataError(f"{path}: field {name}: value {example!r} is not an integer "
                            "code; expected categories (bin continuous values first)")
        codes[~unknown] = whole.astype(np.int64)
        groups = {int(code): str(int(code)) for code in np.unique(whole) if code != UNKNOWN_CODE}
    else:
        names = sorted(set(known.tolist()))
        lookup = {group: code for code, group in enumerate(names)}
        codes[~unknown] = [lookup[value] for value in known.tolist()]
        groups = dict(enumerate(names))
    if len(groups) > MAX_GROUPS:
        raise DataError(f"{path}: field {name}: {len(groups)} groups; expected at most "
                        f"{MAX_GROUPS} per protected attribute (merge rare values or bin "
                        "them; an id or a measurement is not a protected attribute)")
    return codes, Attribute(name, groups, unknown_code=UNKNOWN_CODE)


def _check_dicom_keywords(tags: Mapping[str, str]) -> None:
    if not tags:
        return
    from pydicom.datadict import tag_for_keyword

    for column, keyword in tags.items():
        if tag_for_keyword(keyword) is None:
            raise ConfigError(f"dicom_tags: {keyword!r} (for column {column!r}) is not a DICOM "
                              "keyword; expected e.g. PatientSex or PatientAge")


def _image_refs(values: pd.Series, path: Path, column: str) -> np.ndarray:
    blank = values.isna() | (values.astype("string").str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise DataError(f"{path}: field {column}: blank in data row {row}; expected an image "
                        "path")
    refs = []
    for value in values.astype(str).str.strip():
        file_part, separator, key = value.partition("::")
        resolved = Path(os.path.abspath(path.parent / file_part))
        refs.append(f"{resolved}{separator}{key}")
    return np.array(refs, dtype=object)


def _binary_labels(values: pd.Series, path: Path, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = ~numbers.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: field {column}: '{values.iloc[row]}' in data row {row + 1} "
                        "is not binary; expected 0 or 1")
    return numbers.to_numpy(dtype=np.int64)


def _texts(values: pd.Series, path: Path, column: str) -> np.ndarray:
    text = values.astype("string").str.strip()
    blank = text.isna() | (text == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise DataError(f"{path}: field {column}: empty text in data row {row}; expected a "
                        "note for every pair")
    notes = text.to_numpy(dtype=object)
    longest = int(text.str.len().to_numpy().argmax())
    check_note_length(notes[longest], f"{path}: field {column} in data row {longest + 1}")
    return notes


def _column_ids(values: pd.Series, path: Path, column: str) -> np.ndarray:
    ids = values.astype("string").str.strip()
    blank = ids.isna() | (ids == "")
    if blank.any():
        row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
        raise DataError(f"{path}: field {column}: blank id in data row {row}; expected an id "
                        "for every row")
    repeated = ids.duplicated(keep=False).to_numpy()
    if repeated.any():
        first = ids.iloc[int(np.flatnonzero(repeated)[0])]
        rows = np.flatnonzero((ids == first).to_numpy()) + 1
        raise DataError(f"{path}: field {column}: {first!r} in data rows {rows[0]} and "
                        f"{rows[1]}; expected a unique id per row")
    not_plain = ids.str.contains(NOT_PLAIN_ID, regex=True).to_numpy()
    if not_plain.any():
        row = int(np.flatnonzero(not_plain)[0])
        raise DataError(f"{path}: field {column}: {ids.iloc[row]!r} in data row {row + 1} is "
                        "not a plain name; expected an id without / or \\, other than . "
                        "and ..")
    return ids.to_numpy(dtype=object)


def _image_ids(images: np.ndarray, path: Path) -> np.ndarray:
    files = [split_ref(ref)[0] for ref in images]
    stems = np.array([file.stem for file in files], dtype=object)
    if len(set(stems)) == len(stems):
        return stems
    relative = np.array([os.path.relpath(file.with_suffix(""), path.parent).replace(os.sep, "__")
                         for file in files], dtype=object)
    if len(set(relative)) == len(relative):
        return relative
    repeated = pd.Series(relative).value_counts().index[0]
    raise DataError(f"{path}: image {repeated!r} is used by several rows; expected one row per "
                    "image, or an id column naming each pair")


def _named_splits(values: pd.Series, path: Path, column: str) -> np.ndarray:
    names = values.astype("string").str.strip().str.lower()
    splits = names.map(SPLIT_ALIASES)
    bad = splits.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}: field {column}: '{values.iloc[row]}' in data row {row + 1}; "
                        "expected train, val or test")
    return splits.to_numpy(dtype=object)


def _usable_images(images: np.ndarray, *, strict: bool) -> tuple[np.ndarray, list[str]]:
    """Mask of rows whose image passes the check, and one problem line per other row."""
    keep = np.ones(len(images), dtype=bool)
    problems: list[str] = []
    for row, ref in enumerate(images):
        try:
            read_image(ref) if strict else check_image(ref)
        except DataError as error:
            if strict:
                raise
            keep[row] = False
            problems.append(f"data row {row + 1}: {error}")
    return keep, problems


def skip_warnings(problems: Sequence[str], total: int, what: str) -> list[str]:
    """Warning lines for skipped items: a count, then up to ten of the problems."""
    if not problems:
        return []
    lines = [f"skipped {len(problems)} of {total} {what} (strict=True refuses them instead)"]
    lines += list(problems[:_MAX_REPORTED_SKIPS])
    if len(problems) > _MAX_REPORTED_SKIPS:
        lines.append(f"... and {len(problems) - _MAX_REPORTED_SKIPS} more")
    return lines


def _fill_from_dicom(rows: pd.DataFrame, column: str, keyword: str,
                     images: pd.Series) -> np.ndarray:
    """The column with blank cells of DICOM rows filled from the tag ``keyword``."""
    import pydicom

    current = rows[column] if column in rows.columns else pd.Series([None] * len(rows))
    values = np.array(current.astype(object), dtype=object)
    for row, ref in enumerate(images):
        cell = values[row]
        if not (cell is None or pd.isna(cell) or str(cell).strip() == ""):
            continue
        file = split_ref(ref)[0]
        if image_format(file) != "dicom":
            continue
        header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=[keyword])
        values[row] = _dicom_value(header.get(keyword), keyword, file)
    return values


def _dicom_value(value: object, keyword: str, file: Path) -> object:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if keyword == "PatientSex":
        return DICOM_SEX_NAMES.get(text.upper(), text)
    if keyword == "PatientAge":
        unit = text[-1:].upper()
        if unit not in _AGE_UNITS_IN_YEARS or not text[:-1].isdigit():
            raise DataError(f"{file}: field PatientAge: {text!r}; expected nnnY, nnnM, nnnW "
                            "or nnnD")
        return int(text[:-1]) * _AGE_UNITS_IN_YEARS[unit]
    return text
