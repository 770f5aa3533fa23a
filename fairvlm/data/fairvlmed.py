"""Load a Harvard-FairVLMed folder (METHOD.md section 6) into a :class:`PairTable`.

Layout::

    <root>/Training/data_00001.npz      split "train"
    <root>/Validation/...               split "val"
    <root>/Test/... or <root>/Testing/  split "test" (releases differ; exactly one of them)
    <root>/gpt4_summarized_notes.csv    optional notes (or gpt-4_summarized_notes.csv,
                                        or original_notes.csv), keyed by npz file name
    <root>/data_summary.csv             optional, may hold string-valued attributes

Each npz holds the image under ``slo_fundus`` and 0-d fields ``glaucoma`` (the label),
``race``, ``gender``, ``ethnicity``, ``language``, ``maritalstatus`` (integer codes, -1 =
unknown, or their names as text), ``age``, ``md`` and, in some releases, ``note``.

Where each column comes from
----------------------------
- id: the npz file stem (``data_00001``); image: ``"<npz path>::slo_fundus"``, decoded later
  by :func:`fairvlm.data.images.read_image`. Loading reads only each archive's zip directory
  and its small fields, never the image (``strict=True`` decodes every image).
- label and attributes: the npz fields; ``data_summary.csv`` fills a field an npz lacks.
  Codes are mapped to names (race Asian 0 / Black 1 / White 2; gender Female 0 / Male 1;
  ethnicity non-Hispanic 0 / Hispanic 1; language English 0 / Spanish 1 / Other 2; marital
  status Married or partnered 0 / Single 1 / Divorced 2 / Widowed 3 / Legally separated 4);
  -1 stays the explicit unknown group. An attribute no file has is left out.
- text: the first notes CSV found (``notes_column`` names its note column; by default a
  column whose name says ``summary``, else ``note`` or ``text``), else each npz's ``note``.
  The full note is kept: truncation is the tokenizer's job (it cuts at the model's context).
  FairCLIP's own cut at 180 characters is not applied.
- ``age`` and ``md`` are carried as extra numeric columns.
The table's ``source`` says which files and columns were used.

Problems
--------
An npz that cannot be read (truncated, corrupt, no ``slo_fundus``) is skipped and listed in
``PairTable.warnings``; ``strict=True`` refuses it instead. Inconsistent content (a label that
is not 0/1, an unknown code, a missing note) is always refused with one line naming the file
and field, as are two npz files of the same name in different split folders (their ids would
clash) and a note longer than :data:`~fairvlm.data.table.MAX_NOTE_CHARS` characters. Text files
must be UTF-8 (see :func:`fairvlm.data.manifest.read_tabular`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairvlm.data.demo import read_demo_manifest
from fairvlm.data.images import DEFAULT_NPZ_KEY, REF_SEPARATOR, read_image, read_npz
from fairvlm.data.manifest import read_tabular, skip_warnings
from fairvlm.data.table import UNKNOWN_NAME, Attribute, PairTable, check_note_length
from fairvlm.data.text import decode_utf8
from fairvlm.errors import DataError

SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("Training",), "val": ("Validation",), "test": ("Test", "Testing"),
}
NOTES_FILES: tuple[str, ...] = (
    "gpt4_summarized_notes.csv", "gpt-4_summarized_notes.csv", "original_notes.csv",
)
SUMMARY_FILE = "data_summary.csv"
LABEL_FIELD = "glaucoma"
NOTE_FIELD = "note"
EXTRA_FIELDS: tuple[str, ...] = ("age", "md")
UNKNOWN_CODE = -1
ATTRIBUTES: dict[str, Attribute] = {
    "race": Attribute("race", {0: "Asian", 1: "Black", 2: "White"}),
    "gender": Attribute("gender", {0: "Female", 1: "Male"}),
    "ethnicity": Attribute("ethnicity", {0: "non-Hispanic", 1: "Hispanic"}),
    "language": Attribute("language", {0: "English", 1: "Spanish", 2: "Other"}),
    "maritalstatus": Attribute("maritalstatus", {
        0: "Married or partnered", 1: "Single", 2: "Divorced", 3: "Widowed",
        4: "Legally separated",
    }),
}
# Other spellings met in string-valued tables (lower case, spaces for separators) -> code.
NAME_ALIASES: dict[str, dict[str, int]] = {
    "race": {"black or african american": 1, "african american": 1, "white or caucasian": 2,
             "caucasian": 2},
    "gender": {"f": 0, "m": 1},
    "ethnicity": {"non hispanic": 0, "not hispanic": 0, "nonhispanic": 0},
    "language": {},
    "maritalstatus": {"married": 0, "partnered": 0, "marriage or partnered": 0,
                      "separated": 4, "widoled": 3},
}
LABEL_NAMES: dict[str, int] = {"no": 0, "yes": 1, "false": 0, "true": 1, "non glaucoma": 0,
                               "glaucoma": 1}
ID_COLUMNS: tuple[str, ...] = ("filename", "file", "filenames", "npz", "id")
NOTE_COLUMNS: tuple[str, ...] = ("gpt4summary", "summarizednote", "summary", "note", "text")
_FIELDS: tuple[str, ...] = (LABEL_FIELD, *ATTRIBUTES, *EXTRA_FIELDS)


def _normal(text: str) -> str:
    """Lower case with ``_`` and ``-`` as spaces and runs of spaces collapsed."""
    return re.sub(r"[\s_\-]+", " ", str(text)).strip().lower()


# Group name (normalised) -> code, per attribute: the names, their aliases and "unknown".
_CODES_BY_NAME: dict[str, dict[str, int]] = {
    name: {**{_normal(group): code for code, group in attribute.groups.items()},
           **NAME_ALIASES[name], UNKNOWN_NAME: UNKNOWN_CODE}
    for name, attribute in ATTRIBUTES.items()
}


def is_fairvlmed_root(path: Path) -> bool:
    """Whether ``path`` is a folder with at least one FairVLMed split folder in it."""
    names = {name.lower() for names in SPLIT_FOLDERS.values() for name in names}
    return path.is_dir() and any(child.is_dir() and child.name.lower() in names
                                 for child in path.iterdir())


def load_fairvlmed(
    root: str | os.PathLike[str],
    *,
    strict: bool = False,
    notes_column: str | None = None,
    image_key: str = DEFAULT_NPZ_KEY,
) -> PairTable:
    """Load a Harvard-FairVLMed folder (variants and policies in the module docstring).

    Parameters
    ----------
    root
        The folder holding Training/Validation/Test (or Testing).
    strict
        Refuse the data set on the first unreadable npz, decoding every image; otherwise
        skip such files and list them in ``PairTable.warnings``.
    notes_column
        The note column of the notes CSV (default: picked by name, see the module docstring).
    image_key
        The npz array holding the image.
    """
    root = Path(root).absolute()
    folders = _split_folders(root)
    files = [(split, path) for split, folder in folders.items()
             for path in sorted(folder.glob("*.npz"))]
    if not files:
        listing = ", ".join(folder.name for folder in folders.values())
        raise DataError(f"{root}: no .npz files in {listing}; expected data_XXXXX.npz files")
    records, problems = _read_records(files, image_key, strict=strict)
    if not records:
        raise DataError(f"{root}: none of the {len(files)} npz files can be used; first "
                        f"problem: {problems[0]}")
    _check_unique_ids(records, root)
    warnings = skip_warnings(problems, len(files), "npz files that cannot be read")
    warnings += [f"{folder.name} holds no usable npz files" for split, folder in folders.items()
                 if not any(record.split == split for record in records)]

    summary = _read_summary(root)
    frame, attributes, filled = _assemble(records, summary)
    texts, notes_statement, notes_warnings = _notes(root, records, notes_column)
    frame.insert(3, "text", texts)

    counts = Counter(record.split for record in records)
    parts = [
        f"Harvard-FairVLMed folder {root}: {len(records)} npz files, "
        + ", ".join(f"{folders[split].name} {counts[split]}" for split in SPLIT_FOLDERS),
        f"images: npz array {image_key!r}, decoded when used",
        f"label: npz field {LABEL_FIELD!r}",
        "attributes: " + (", ".join(attributes) or "none") + " (npz fields, codes mapped to "
        "names, -1 = unknown)",
        notes_statement,
    ]
    if filled:
        parts.append(f"{SUMMARY_FILE} filled " + ", ".join(
            f"{field} for {count} files" for field, count in sorted(filled.items())))
    return PairTable(frame, attributes, source="; ".join(parts), name=root.name,
                     warnings=warnings + notes_warnings,
                     synthetic=read_demo_manifest(root) is not None)


def _split_folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected a Harvard-FairVLMed folder with "
                        "Training, Validation and Test (or Testing)")
    children = {child.name.lower(): child for child in root.iterdir() if child.is_dir()}
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for split, names in SPLIT_FOLDERS.items():
        found = [children[name.lower()] for name in names if name.lower() in children]
        if len(found) > 1:
            raise DataError(f"{root}: both {' and '.join(f.name for f in found)} exist; "
                            "expected exactly one test folder")
        if found:
            folders[split] = found[0]
        else:
            missing.append(" or ".join(names))
    if missing:
        raise DataError(f"{root}: missing split folder(s) {', '.join(missing)}; expected "
                        "Training, Validation and Test (or Testing)")
    return folders


@dataclass(frozen=True, slots=True)
class _Record:
    """One readable npz: where it is, its image reference and its small fields, unconverted
    (one-value fields as Python scalars, others as arrays)."""

    id: str
    split: str
    path: Path
    image: str
    fields: dict[str, object]


def _read_records(files: list[tuple[str, Path]], image_key: str, *,
                  strict: bool) -> tuple[list[_Record], list[str]]:
    """One record per readable npz, and one problem line per other file."""
    records: list[_Record] = []
    problems: list[str] = []
    for split, path in files:
        try:
            record = _read_npz(path, split, image_key)
            if strict:
                read_image(record.image)
        except DataError as error:
            if strict:
                raise
            problems.append(str(error))
            continue
        records.append(record)
    return records, problems


def _check_unique_ids(records: list[_Record], root: Path) -> None:
    """Refuse two npz files with the same name (the id) in different split folders."""
    seen: dict[str, Path] = {}
    for record in records:
        if record.id in seen:
            raise DataError(f"{root}: field id: duplicate sample id {record.id!r} "
                            f"({seen[record.id].relative_to(root)} and "
                            f"{record.path.relative_to(root)}); expected each npz file name "
                            "once across the split folders")
        seen[record.id] = record.path


def _read_npz(path: Path, split: str, image_key: str) -> _Record:
    """The small fields of one npz and its image reference (the image is not read).

    One-value fields are kept as Python scalars: an array read from an archive is a view of
    the archive member's bytes, about 400 bytes a field that would otherwise stay alive with
    every record until the table is assembled."""
    names, fields = read_npz(path, (*_FIELDS, NOTE_FIELD))
    if image_key not in names:
        have = ", ".join(sorted(names)[:12]) or "no arrays"
        raise DataError(f"{path}: no array {image_key!r} (has: {have}); expected the fundus "
                        f"image under key {image_key!r}")
    return _Record(path.stem, split, path, f"{path}{REF_SEPARATOR}{image_key}",
                   {name: _unwrapped(value) for name, value in fields.items()})


def _read_summary(root: Path) -> dict[str, dict[str, object]]:
    """``data_summary.csv`` as id -> {field: value} for the known fields (empty if absent)."""
    path = root / SUMMARY_FILE
    if not path.is_file():
        return {}
    table = read_tabular(path)
    key = _id_column(table, path)
    by_name = _columns_by_name(table)
    columns = {field: by_name[field] for field in _FIELDS if field in by_name}
    rows: dict[str, dict[str, object]] = {}
    for row in table.to_dict("records"):
        rows[_normal_id(row[key])] = {field: row[column] for field, column in columns.items()
                                      if not pd.isna(row[column])}
    return rows


def _assemble(records: list[_Record], summary: dict[str, dict[str, object]]
              ) -> tuple[pd.DataFrame, dict[str, Attribute], Counter]:
    """Columns id, split, image, label, attributes and extras; the attributes; fill counts."""
    present = {name for record in records for name in record.fields}
    present |= {name for values in summary.values() for name in values}
    filled: Counter = Counter()

    def value_of(record: _Record, field: str) -> object:
        if field in record.fields:
            return record.fields[field]
        row = summary.get(record.id, {})
        if field in row:
            filled[field] += 1
            return row[field]
        raise DataError(f"{record.path}: no field {field!r} (nor a {SUMMARY_FILE} value); "
                        f"expected it as in the other files")

    frame = pd.DataFrame({
        "id": [record.id for record in records],
        "split": [record.split for record in records],
        "image": [record.image for record in records],
    })
    frame["label"] = np.array([_label(value_of(r, LABEL_FIELD), r.path) for r in records],
                              dtype=np.int8)
    attributes = {name: attribute for name, attribute in ATTRIBUTES.items() if name in present}
    for name, attribute in attributes.items():
        frame[name] = np.array([_code(attribute, value_of(r, name), r.path)
                                for r in records], dtype=np.int64)
    for name in EXTRA_FIELDS:
        if name in present:
            frame[name] = [_number(r.fields.get(name, summary.get(r.id, {}).get(name)),
                                   name, r.path) for r in records]
    return frame, attributes, filled


def _scalar(value: object, field: str, path: Path) -> object:
    """A Python scalar from a 0-d (or one-element) array, text decoded as UTF-8."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataError(f"{path}: field {field} has shape {value.shape}; expected a "
                            "single value")
        value = _unwrapped(value)
    if isinstance(value, bytes):
        value = decode_utf8(value, f"{path}: field {field}")
    return value


def _unwrapped(value: np.ndarray) -> object:
    """A one-element array's value as a Python scalar (``bytes`` stay undecoded); any other
    array as it is."""
    return value.reshape(()).item() if value.size == 1 else value


def _label(value: object, path: Path) -> int:
    value = _scalar(value, LABEL_FIELD, path)
    number = _as_number(value)
    code = int(number) if number in (0.0, 1.0) else LABEL_NAMES.get(_normal(str(value)))
    if code is None:
        raise DataError(f"{path}: field {LABEL_FIELD}: {value!r} is not binary; expected 0 "
                        "(non-glaucoma) or 1 (glaucoma)")
    return code


def _code(attribute: Attribute, value: object, path: Path) -> int:
    """The integer group code of ``value`` (a code, or a group name as text)."""
    value = _scalar(value, attribute.name, path)
    number = _as_number(value)
    text = _normal(str(value))
    if number is None and text in _CODES_BY_NAME[attribute.name]:
        return _CODES_BY_NAME[attribute.name][text]
    if number is not None and number.is_integer():
        code = int(number)
        if code == UNKNOWN_CODE or code in attribute.groups:
            return code
    expected = ", ".join(f"{code} ({name})" for code, name in attribute.groups.items())
    raise DataError(f"{path}: field {attribute.name}: {value!r}; expected one of {expected} "
                    f"or {UNKNOWN_CODE} ({UNKNOWN_NAME}), as codes or names")


def _number(value: object, field: str, path: Path) -> float:
    if value is None:
        return float("nan")
    value = _scalar(value, field, path)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: field {field}: {value!r}; expected a number") from None


def _notes(root: Path, records: list[_Record], notes_column: str | None
           ) -> tuple[list[str], str, list[str]]:
    """Note per record, the statement of where they came from, and warnings."""
    found = [root / name for name in NOTES_FILES if (root / name).is_file()]
    if found:
        return _notes_from_csv(found[0], records, notes_column)
    if notes_column is not None:
        raise DataError(f"{root}: notes_column {notes_column!r} given but no notes file; "
                        f"expected one of {', '.join(NOTES_FILES)}")
    texts = []
    for record in records:
        if NOTE_FIELD not in record.fields:
            raise DataError(f"{record.path}: no field {NOTE_FIELD!r} and no notes file in "
                            f"{root}; expected one of {', '.join(NOTES_FILES)} or a note in "
                            "every npz")
        texts.append(_note_text(_scalar(record.fields[NOTE_FIELD], NOTE_FIELD,
                                        record.path), record.path, NOTE_FIELD))
    return texts, f"notes: npz field {NOTE_FIELD!r}", []


def _notes_from_csv(path: Path, records: list[_Record], notes_column: str | None
                    ) -> tuple[list[str], str, list[str]]:
    table = read_tabular(path)
    key = _id_column(table, path)
    column = _note_column(table, path, notes_column)
    ids = table[key].map(_normal_id)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: field {key}: {duplicated.iloc[0]!r} appears more than once; "
                        "expected one note per npz file")
    notes = dict(zip(ids, table[column], strict=True))
    wanted = {record.id for record in records}
    matched = wanted & set(notes)
    if not matched:
        example = ids.iloc[0] if len(ids) else "(no rows)"
        raise DataError(f"{path}: field {key}: none of its {len(ids)} ids match an npz file "
                        f"(e.g. {example!r}); expected npz file names such as "
                        f"{sorted(wanted)[0]}.npz")
    lacking = sorted(wanted - matched)
    if lacking:
        raise DataError(f"{path}: no note for {len(lacking)} npz file(s), e.g. "
                        f"{lacking[0]}.npz; expected a row per npz file")
    texts = [_note_text(notes[record.id], path, f"{column} of {record.id}")
             for record in records]
    extra = len(set(notes) - wanted)
    warnings = ([f"{path.name}: {extra} rows match no usable npz file and were ignored"]
                if extra else [])
    return texts, f"notes: {path.name} column {column!r}, keyed by column {key!r}", warnings


def _note_text(value: object, path: Path, field: str) -> str:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    text = text.strip()
    if not text:
        raise DataError(f"{path}: field {field}: empty note; expected text")
    check_note_length(text, f"{path}: field {field}")
    return text


def _columns_by_name(table: pd.DataFrame) -> dict[str, str]:
    """Column names keyed by their lower-case form without spaces, ``_`` or ``-``."""
    return {_normal(column).replace(" ", ""): column for column in table.columns}


def _id_column(table: pd.DataFrame, path: Path) -> str:
    by_name = _columns_by_name(table)
    for candidate in ID_COLUMNS:
        if candidate in by_name:
            return by_name[candidate]
    raise DataError(f"{path}: no file-name column (found: {', '.join(map(str, table.columns))}); "
                    f"expected one of {', '.join(ID_COLUMNS)}")


def _note_column(table: pd.DataFrame, path: Path, requested: str | None) -> str:
    if requested is not None:
        if requested not in table.columns:
            raise DataError(f"{path}: no column {requested!r} (found: "
                            f"{', '.join(map(str, table.columns))}); expected the note column")
        return requested
    by_name = _columns_by_name(table)
    for candidate in NOTE_COLUMNS:
        if candidate in by_name:
            return by_name[candidate]
    summaries = [column for key, column in by_name.items() if "summar" in key]
    if summaries:
        return summaries[0]
    raise DataError(f"{path}: no note column (found: {', '.join(map(str, table.columns))}); "
                    "expected a column such as gpt4_summary or note, or pass notes_column")


def _as_number(value: object) -> float | None:
    """``value`` as a finite float (numbers and numeric text), else None."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def _normal_id(value: object) -> str:
    """An npz file stem from a file-name cell (``Training/data_00001.npz`` -> ``data_00001``)."""
    name = str(value).strip().replace("\\", "/").rsplit("/", 1)[-1]
    return name.removesuffix(".npz")
