"""Every table in the app is drawn one way: without the index column, and with a missing value
(``None``/``NaN``, e.g. an AUC that a one-class group leaves undefined) shown as :data:`MISSING`
instead of Streamlit's default text "None"."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

MISSING = "–"


def show(frame: pd.DataFrame | Any, *, where: DeltaGenerator | None = None,
         **options: Any) -> None:
    """Draw ``frame`` (a DataFrame or its Styler) with ``st.dataframe`` in ``where`` (a column
    or container; the page's main area by default); ``options`` go to ``st.dataframe``."""
    (where or st).dataframe(frame, hide_index=True, placeholder=MISSING, **options)
