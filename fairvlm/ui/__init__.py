"""The Streamlit side of fairvlm: session state, cached loaders, the sidebar, error display.

Pages in ``pages/`` stay thin: they call :mod:`fairvlm.ui.current` for the data set and model
the user chose, draw what the core returns, and wrap every core call in
:func:`fairvlm.ui.feedback.user_errors` so a user error shows as one line with a hint.
"""
