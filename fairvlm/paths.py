"""Where fairvlm reads and writes.

Everything fairvlm writes (demo data, demo model, embedding cache, runs, decisions) lives under
one home folder: ``$FAIRVLM_HOME``, default ``~/.cache/fairvlm``. Server-side data roots the app
may read from are ``$FAIRVLM_DATA_ROOTS`` (``os.pathsep``-separated), default the home folder
and the current directory. Files that readers may open at any moment (run status, checkpoints,
the DBPM memory) are written with :func:`atomic_write`.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from fairvlm.errors import DataError


def home() -> Path:
    """Return the fairvlm home folder, creating it if needed."""
    root = os.environ.get("FAIRVLM_HOME") or str(Path.home() / ".cache" / "fairvlm")
    path = Path(root).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_data_dir() -> Path:
    """Folder of the built-in demo data set (FairVLMed layout)."""
    return home() / "demo" / "data"


def demo_model_dir() -> Path:
    """Folder of the built-in demo model checkpoint."""
    return home() / "demo" / "model"


def cache_dir() -> Path:
    """Folder of content-keyed caches (embeddings)."""
    return home() / "cache"


def runs_dir() -> Path:
    """Folder holding one sub-folder per fine-tune or audit run."""
    return home() / "runs"


def data_roots() -> list[Path]:
    """Server-side folders the app may read data from."""
    raw = os.environ.get("FAIRVLM_DATA_ROOTS")
    if raw:
        return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]
    return [home(), Path.cwd().resolve()]


def require_within_roots(path: str | os.PathLike[str], roots: list[Path] | None = None) -> Path:
    """Resolve ``path`` and refuse it unless it lies inside one of the allowed data roots.

    Raises
    ------
    DataError
        If the resolved path (symlinks followed) is outside every root.
    """
    allowed = data_roots() if roots is None else roots
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError) as error:  # NUL byte, symlink loop
        raise DataError(f"{path!r}: not a usable path ({error}); expected a file or folder "
                        "path") from None
    for root in allowed:
        if resolved == root or root in resolved.parents:
            return resolved
    listing = ", ".join(str(r) for r in allowed)
    raise DataError(
        f"{path}: outside the allowed data roots; expected a path under one of: {listing} "
        "(set FAIRVLM_DATA_ROOTS to change them)"
    )


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Write ``path`` all or nothing: readers see the old file or the complete new one.

    Yields a binary handle on a temporary file in the same folder (named ``.<name>.<random>.tmp``,
    so globs for ``*.json``/``*.safetensors`` never match it). When the block ends normally the
    data are flushed and fsynced, the temporary file is renamed over ``path`` (``os.replace``,
    atomic on POSIX and Windows) and the folder is fsynced. If the block raises, the temporary
    file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary files :func:`atomic_write` left for ``path`` when its process was killed
    mid-write (``.<name>.<random>.tmp`` in the same folder); never valid data."""
    target = Path(path)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
