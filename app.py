"""fairvlm's Streamlit app: ``make run`` (or ``streamlit run app.py``) serves it on 127.0.0.1.

Pages live in ``pages/`` and stay thin (DESIGN.md); the sidebar block with the loaded data
set, model and device is drawn on every page after the page has run, so it shows what the
page just loaded.
"""

from pathlib import Path

import streamlit as st

from fairvlm.ui.sidebar import render_sidebar

ICON = Path(__file__).parent / "assets" / "fairvlm-icon.png"

st.set_page_config(page_title="fairvlm", page_icon=str(ICON), layout="wide")
st.logo(str(ICON), size="large")

PAGES = [
    st.Page("pages/data.py", title="Data & model", icon=":material/dataset:", default=True),
    st.Page("pages/audit.py", title="Audit", icon=":material/balance:"),
    st.Page("pages/bad_pairs.py", title="Bad pairs", icon=":material/link_off:"),
    st.Page("pages/fine_tune.py", title="Fine-tune", icon=":material/model_training:"),
    st.Page("pages/compare.py", title="Compare & report", icon=":material/compare_arrows:"),
]

page = st.navigation(PAGES)
try:
    page.run()
finally:
    render_sidebar()
