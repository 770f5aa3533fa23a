"""Store a data set uploaded through the app: a zip archive or a CSV manifest.

Every upload goes into a fresh folder under ``$FAIRVLM_HOME/uploads`` (:func:`uploads_dir`), so
an upload never overwrites anything. A zip is checked from its central directory BEFORE any
byte is extracted, and refused as a whole when any entry

- has an absolute path (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or a ``..`` component,
- is a symbolic link (Unix mode bits in the entry's external attributes),
- is encrypted,

or when it holds more than :data:`MAX_ENTRIES` entries (a bomb of empty files costs no bytes,
only inodes), or when the sum of the entries' uncompressed sizes exceeds the cap (default 2 GiB,
:data:`DEFAULT_MAX_BYTES`; ``$FAIRVLM_UPLOAD_MAX_BYTES`` or ``max_bytes`` change it). The cap is
also enforced while extracting: :mod:`zipfile` never yields more bytes than an entry declares
(and fails its CRC check if the data were cut), so a lying directory cannot inflate past it.
macOS ``__MACOSX/`` resource entries are skipped. Names are taken with ``/`` and ``\\`` both as
separators, so an archive made on Windows extracts into folders, not into odd file names.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from fairvlm import paths
from fairvlm.errors import ConfigError, DataError

DEFAULT_MAX_BYTES = 2 * 1024**3
MAX_ENTRIES = 100_000  # 10 times a Harvard-FairVLMed release (10,000 npz files and the CSVs)
MAX_BYTES_ENV = "FAIRVLM_UPLOAD_MAX_BYTES"
UPLOAD_SUFFIXES: tuple[str, ...] = (".zip", ".csv")
_SKIPPED_PREFIX = "__MACOSX"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_COPY_CHUNK = 1 << 20


def uploads_dir() -> Path:
    """Folder holding one sub-folder per upload."""
    return paths.home() / "uploads"


def max_upload_bytes() -> int:
    """The uncompressed-size cap: ``$FAIRVLM_UPLOAD_MAX_BYTES`` if set, else 2 GiB."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_BYTES_ENV}={raw!r}: expected a positive number of bytes")
    return value


def save_upload(name: str, content: BinaryIO, *, max_bytes: int | None = None,
                root: Path | None = None) -> Path:
    """Store an uploaded zip or CSV in a fresh folder and return the data set's path.

    Parameters
    ----------
    name
        The uploaded file's name; its suffix (``.zip`` or ``.csv``) decides how it is stored.
    content
        The file's bytes, as a readable, seekable binary stream.
    max_bytes
        Cap on the stored size (a zip: the sum of its uncompressed entries); default
        :func:`max_upload_bytes`.
    root
        Where the fresh folder is made; default :func:`uploads_dir`.

    Returns
    -------
    pathlib.Path
        A CSV: the stored manifest. A zip: the extracted folder, or its only sub-folder when
        the archive wraps everything in one top folder (``FairVLMed/Training/...``).

    Raises
    ------
    DataError
        One line naming the upload and what was expected: not a zip or CSV, too large, or a zip
        entry that is absolute, escapes the folder, is a link or is encrypted.
    """
    cap = max_upload_bytes() if max_bytes is None else max_bytes
    content.seek(0)
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DataError(f"upload {name!r}: not a zip archive or CSV manifest; expected a file "
                        f"ending in {' or '.join(UPLOAD_SUFFIXES)}")
    parent = root if root is not None else uploads_dir()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=parent))
    try:
        if suffix == ".csv":
            return _store_csv(name, content, folder, cap)
        _extract_zip(name, content, folder, cap)
        return dataset_root(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def discard_upload(stored: Path, *, root: Path | None = None) -> None:
    """Delete the upload folder holding ``stored`` (a path :func:`save_upload` returned).

    Only a folder directly inside ``root`` (default :func:`uploads_dir`) is ever deleted.
    """
    parent = (root if root is not None else uploads_dir()).resolve()
    for folder in (Path(stored).resolve(), *Path(stored).resolve().parents):
        if folder.parent == parent:
            shutil.rmtree(folder, ignore_errors=True)
            return


def dataset_root(folder: Path) -> Path:
    """``folder``, or its only sub-folder when it holds nothing else."""
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def _store_csv(name: str, content: BinaryIO, folder: Path, cap: int) -> Path:
    target = folder / _safe_file_name(name)
    with target.open("wb") as handle:
        written = _copy_capped(content, handle, cap, name)
    if written == 0:
        raise DataError(f"upload {name!r}: the file is empty; expected a CSV manifest")
    return target


def _safe_file_name(name: str) -> str:
    stem = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).stem).strip("._") or "manifest"
    return f"{stem}.csv"


def _extract_zip(name: str, content: BinaryIO, folder: Path, cap: int) -> None:
    try:
        archive = zipfile.ZipFile(content)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"upload {name!r}: not a readable zip archive ({error}); expected a "
                        "complete .zip file") from None
    with archive:
        members = [info for info in archive.infolist() if not _is_skipped(info.filename)]
        check_zip_members(name, members, cap)
        for info in members:
            target = folder.joinpath(*member_parts(name, info.filename))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, target.open("xb") as handle:
                    shutil.copyfileobj(source, handle, _COPY_CHUNK)
            except FileExistsError:
                raise DataError(f"upload {name!r}: entry {info.filename!r} appears twice; "
                                "expected unique file names") from None
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
                raise DataError(f"upload {name!r}: entry {info.filename!r} cannot be "
                                f"extracted ({error}); expected an intact zip") from None


def check_zip_members(name: str, members: Iterable[zipfile.ZipInfo], cap: int) -> None:
    """Refuse the archive if any entry is unsafe or the entries add up to more than ``cap``.

    Reads only the zip directory (names, modes, flags, declared sizes).
    """
    members = list(members)
    if len(members) > MAX_ENTRIES:
        raise DataError(f"upload {name!r}: {len(members):,} entries; expected at most "
                        f"{MAX_ENTRIES:,} files and folders")
    total = 0
    for info in members:
        member_parts(name, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"upload {name!r}: entry {info.filename!r} is a symbolic link; "
                            "expected plain files and folders only")
        if info.flag_bits & 0x1:
            raise DataError(f"upload {name!r}: entry {info.filename!r} is encrypted; expected "
                            "an archive without a password")
        total += info.file_size
        if total > cap:
            raise DataError(f"upload {name!r}: more than {_size(cap)} once extracted; expected "
                            f"at most {_size(cap)} (set {MAX_BYTES_ENV}, or put the data on "
                            "the server and load it by path)")


def member_parts(name: str, member: str) -> tuple[str, ...]:
    """The path components of zip entry ``member``, refusing absolute and escaping paths."""
    normalised = member.replace("\\", "/")
    drive = re.match(r"^[A-Za-z]:", normalised)
    parts = tuple(p for p in PurePosixPath(normalised).parts if p not in ("", "."))
    if normalised.startswith("/") or drive or ".." in parts or not parts:
        raise DataError(f"upload {name!r}: entry {member!r} has an absolute or escaping path; "
                        "expected paths relative to the archive's top, without '..'")
    return parts


def _is_skipped(member: str) -> bool:
    return member.replace("\\", "/").split("/", 1)[0] == _SKIPPED_PREFIX


def _copy_capped(source: BinaryIO, target: BinaryIO, cap: int, name: str) -> int:
    written = 0
    while chunk := source.read(_COPY_CHUNK):
        written += len(chunk)
        if written > cap:
            raise DataError(f"upload {name!r}: larger than {_size(cap)}; expected at most "
                            f"{_size(cap)} (set {MAX_BYTES_ENV}, or put the data on the server "
                            "and load it by path)")
        target.write(chunk)
    return written


def _size(n_bytes: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.3g} {unit}"
    return f"{n_bytes} bytes"
