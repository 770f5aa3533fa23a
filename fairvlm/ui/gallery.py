"""Sample pairs for the data page: a seeded pick of rows and a grid of cards drawing them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fairvlm.data import PairTable
from fairvlm.errors import DataError
from fairvlm.ui import cache
from fairvlm.ui.text import plain, shorten

NOTE_PREVIEW_CHARS = 200
LABEL_NAMES = {1: "positive (1)", 0: "negative (0)"}


def pick_samples(table: PairTable, *, n: int, seed: int, split: str | None = None,
                 attribute: str | None = None, code: int | None = None,
                 label: int | None = None) -> pd.DataFrame:
    """Up to ``n`` rows drawn without replacement, uniformly, from the rows that match.

    A filter left at ``None`` matches every row; ``code`` filters on ``attribute``'s group code.
    The same table, filters and ``seed`` always give the same rows, in table order.
    """
    frame = table.frame
    keep = np.ones(len(frame), dtype=bool)
    if split is not None:
        keep &= frame["split"].to_numpy() == split
    if attribute is not None and code is not None:
        keep &= table.group_codes(attribute) == code
    if label is not None:
        keep &= table.labels == label
    matching = np.flatnonzero(keep)
    chosen = np.random.default_rng(seed).choice(matching, size=min(n, matching.size),
                                                replace=False)
    return frame.iloc[np.sort(chosen)]


def attribute_line(table: PairTable, row: pd.Series) -> str:
    """``race Black · gender Female · ...``: the row's group in every attribute."""
    return " · ".join(f"{name} {table.attributes[name].group_name(int(row[name]))}"
                      for name in table.attributes)


def render_cards(table: PairTable, rows: pd.DataFrame, *, columns: int = 4) -> None:
    """A grid of cards: image, id, split and label, attributes, and the start of the note."""
    for start in range(0, len(rows), columns):
        for slot, (_, row) in zip(st.columns(columns), rows.iloc[start:start + columns].iterrows(),
                                  strict=False):
            with slot, st.container(border=True):
                _card(table, row)


def _card(table: PairTable, row: pd.Series) -> None:
    try:
        st.image(cache.thumbnail(str(row["image"]), table.fingerprint()), width="stretch")
    except DataError as error:
        st.warning(plain(str(error)), icon=":material/broken_image:")
    label = LABEL_NAMES[int(row["label"])]
    st.markdown(f"**{plain(row['id'])}** · {row['split']} · {label}")
    if table.attributes:
        st.caption(plain(attribute_line(table, row)))
    st.markdown(plain(shorten(row["text"], NOTE_PREVIEW_CHARS)) or "*(empty note)*")
