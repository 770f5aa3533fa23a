"""Group definitions: integer codes -> named groups, unknown codes, intersections of attributes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fairvlm.errors import ConfigError, DataError

UNKNOWN_NAME = "unknown"  # the same label as fairvlm.data.table.Attribute uses
UNKNOWN_POLICIES = ("group", "exclude")
INTERSECTION_UNKNOWN_CODE = -1


@dataclass(frozen=True)
class GroupIndex:
    """Rows assigned to groups.

    Attributes
    ----------
    names, codes
        One entry per group, in report order: listed codes ascending, then codes present in
        the data but missing from ``group_names`` (named by their number), then ``unknown``.
    row_group
        Per input row, the position of its group in ``names``, or -1 for an excluded row.
    notes
        Plain-language remarks about unknown or unlisted codes.
    """

    names: tuple[str, ...]
    codes: tuple[int, ...]
    row_group: np.ndarray
    notes: tuple[str, ...]


def index_groups(
    codes: np.ndarray,
    group_names: Mapping[int, str],
    *,
    unknown_code: int,
    unknown: str,
) -> GroupIndex:
    """Assign every row to a named group.

    Every code listed in ``group_names`` is a group, even with no rows (reported with n = 0).
    Rows with ``unknown_code`` form the group ``"unknown"`` (or the name ``group_names`` gives
    that code) with ``unknown="group"``, or are dropped (``unknown="exclude"``); either way a
    note says how many rows it concerned.
    """
    if unknown not in UNKNOWN_POLICIES:
        raise ConfigError(f"unknown={unknown!r}: expected one of {', '.join(UNKNOWN_POLICIES)}")
    listed = {int(code): str(name) for code, name in group_names.items()}
    unknown_name = listed.pop(unknown_code, UNKNOWN_NAME)
    present = set(np.unique(codes).tolist())
    unlisted = sorted(present - set(listed) - {unknown_code})
    group_codes = [*sorted(listed), *unlisted]
    names = [listed[c] for c in sorted(listed)] + [str(c) for c in unlisted]
    notes = []
    if unlisted:
        counts = ", ".join(f"{c} ({int(np.sum(codes == c))} rows)" for c in unlisted)
        notes.append(f"codes not in group_names, reported under their number: {counts}")
    n_unknown = int(np.sum(codes == unknown_code))
    if n_unknown and unknown == "group":
        group_codes.append(unknown_code)
        names.append(unknown_name)
        notes.append(f"{n_unknown} rows with unknown code {unknown_code} form the group "
                     f"'{unknown_name}'")
    elif n_unknown:
        notes.append(f"{n_unknown} rows with unknown code {unknown_code} are excluded")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"group_names: the name {repeated[0]!r} is given to several codes; "
                          "expected one distinct name per group")
    distinct, inverse = np.unique(codes, return_inverse=True)
    position = {code: i for i, code in enumerate(group_codes)}
    row_group = np.array([position.get(int(c), -1) for c in distinct], dtype=np.intp)[inverse]
    return GroupIndex(tuple(names), tuple(group_codes), row_group.reshape(-1), tuple(notes))


def intersect_groups(
    codes: Sequence[np.ndarray],
    group_names: Sequence[Mapping[int, str]],
    *,
    unknown_codes: int | Sequence[int] = -1,
    separator: str = " & ",
) -> tuple[np.ndarray, dict[int, str]]:
    """Combine several attributes into intersection groups such as ``"Black & Female"``.

    Parameters
    ----------
    codes
        One integer code array per attribute, all of the same length.
    group_names
        One ``code -> name`` mapping per attribute.
    unknown_codes
        Each attribute's unknown code (one value for all, or one per attribute).
    separator
        Joins the component names.

    Returns
    -------
    tuple
        ``(combined_codes, combined_names)``, ready for :func:`audit_attribute`. A row whose
        code is unknown in any attribute gets code -1 (pass ``unknown_code=-1``). Every
        combination of listed codes is named, so empty intersections show up with n = 0.
    """
    if len(codes) != len(group_names) or not codes:
        raise ConfigError(f"intersect_groups: got {len(codes)} code arrays and "
                          f"{len(group_names)} name mappings; expected the same non-zero number")
    if isinstance(unknown_codes, int):
        unknown_codes = [unknown_codes] * len(codes)
    arrays = [np.asarray(c).astype(np.int64, copy=False) for c in codes]
    if len({a.shape for a in arrays}) != 1:
        raise DataError("intersect_groups: the code arrays differ in length; expected one "
                        "code per pair in every attribute")
    combined = np.zeros(arrays[0].shape, dtype=np.int64)
    is_unknown = np.zeros(arrays[0].shape, dtype=bool)
    labels: list[str] = [""]
    for array, names, unknown_code in zip(arrays, group_names, unknown_codes, strict=True):
        listed = {int(code): str(name) for code, name in names.items()}
        known = sorted((set(listed) | set(np.unique(array).tolist())) - {unknown_code})
        if not known:
            raise DataError("intersect_groups: an attribute has only unknown codes and no "
                            "listed groups; expected at least one known group")
        is_unknown |= array == unknown_code
        position = np.searchsorted(np.array(known, dtype=np.int64), array)
        combined = combined * len(known) + np.clip(position, 0, len(known) - 1)
        component = [listed.get(c, str(c)) for c in known]
        labels = [f"{head}{separator}{tail}" if head else tail
                  for head in labels for tail in component]
    combined[is_unknown] = INTERSECTION_UNKNOWN_CODE
    return combined, dict(enumerate(labels))
