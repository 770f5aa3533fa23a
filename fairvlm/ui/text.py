"""Show user-supplied text (notes, file names) in Markdown elements exactly as written."""

from __future__ import annotations

import re

# Inline Markdown, HTML, Streamlit's ``:colour[...]``/emoji shortcodes and ``$`` math.
_INLINE_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$:])")
# A list item or heading marker at the start of the text (``- x``, ``+ x``, ``1. x``).
_LEADING_MARKER = re.compile(r"^(\d+)([.)])|^([-+=])")


def plain(text: str) -> str:
    """``text`` on one line, with Markdown syntax escaped so ``st.markdown`` shows it literally."""
    flat = _INLINE_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return _LEADING_MARKER.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", flat)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters (``…``)."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 1].rsplit(" ", 1)[0]
    return f"{cut}…"
