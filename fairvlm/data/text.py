"""Decoding user files as UTF-8, with a one-line message that points at the first bad byte."""

from __future__ import annotations

from fairvlm.errors import DataError


def decode_utf8(raw: bytes, where: str) -> str:
    """``raw`` decoded as UTF-8 (a leading byte-order mark dropped).

    Raises
    ------
    DataError
        ``{where}: not UTF-8 text (byte 0x.. at offset N, line L); expected UTF-8, ...``.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(f"{where}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
                        f"{error.start}, line {line}); expected UTF-8, re-save the file as "
                        "UTF-8") from None
