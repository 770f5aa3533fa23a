"""Where fairvlm reads and writes.

Everything fairvlm writes (demo data, demo model, embedding cache, runs, decisions) lives under
one home folder: ``$FAIRVLM_HOME``, default ``~/.cache/fairvlm``. Server-side data roots the app
may read from are ``$FAIRVLM_DATA_ROOTS`` (``os.pathsep``-separated), default the home folder
and the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    resolved = Path(path).expanduser().resolve()
    for root in allowed:
        if resolved == root or root in resolved.parents:
            return resolved
    listing = ", ".join(str(r) for r in allowed)
    raise DataError(
        f"{path}: outside the allowed data roots; expected a path under one of: {listing} "
        "(set FAIRVLM_DATA_ROOTS to change them)"
    )
