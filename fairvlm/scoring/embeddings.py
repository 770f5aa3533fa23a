"""Image and text embeddings of every pair of a table, cached on disk by content.

The cache key hashes what determines the numbers: the table's content fingerprint, the model's
weights fingerprint, the image preprocessing and the text context length. A changed input
therefore never reads a stale result, and the same data and model reuse one file across runs,
the CLI and the app. Files are ``<cache_dir>/embeddings/<key>.npz``, written atomically.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fairvlm import paths
from fairvlm.data.table import PairTable
from fairvlm.data.torch_dataset import PairDataset
from fairvlm.errors import DataError
from fairvlm.models.loading import LoadedModel

CACHE_FOLDER = "embeddings"
_CACHE_FORMAT = "1"


@dataclass(frozen=True)
class Embeddings:
    """Unit-norm embeddings of a table's pairs, row-aligned with ``ids``.

    Attributes
    ----------
    image, text
        ``[N, D]`` float32, each row L2-normalised: ``u_i`` (image) and ``v_i`` (text).
    logit_scale
        The model's temperature ``s`` (already exponentiated), so logits are ``s u_i . v_j``.
    ids
        Pair ids of the rows, in table order.
    """

    image: np.ndarray
    text: np.ndarray
    logit_scale: float
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def matches(self, table: PairTable) -> bool:
        """Whether these rows are ``table``'s rows, in order."""
        return len(self.ids) == len(table) and np.array_equal(self.ids.astype(str),
                                                              table.ids.astype(str))

    def check_aligned(self, table: PairTable) -> None:
        """Raise :class:`DataError` unless these rows are ``table``'s rows, in order."""
        if not self.matches(table):
            raise DataError(f"{table.name}: the embeddings were computed for another table "
                            f"({len(self.ids)} rows against {len(table)}); recompute them")


def embedding_cache_key(loaded: LoadedModel, table: PairTable) -> str:
    """Hex key of (data fingerprint, model fingerprint, preprocessing, context length)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (_CACHE_FORMAT, table.fingerprint(), loaded.fingerprint,
                 loaded.preprocess_description, str(loaded.context_length)):
        digest.update(part.encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def embedding_cache_path(loaded: LoadedModel, table: PairTable) -> Path:
    """The cache file of ``table``'s embeddings under ``loaded`` (it may not exist)."""
    return paths.cache_dir() / CACHE_FOLDER / f"{embedding_cache_key(loaded, table)}.npz"


def compute_embeddings(loaded: LoadedModel, table: PairTable, *, batch_size: int = 64,
                       progress: bool = False, cache: bool = True,
                       num_workers: int | None = None) -> Embeddings:
    """Embed every image and note of ``table`` with ``loaded``'s model.

    ``u_i = f(x_i) / ||f(x_i)||`` and ``v_i = g(t_i) / ||g(t_i)||`` for the image tower ``f``
    and text tower ``g``, in batches under ``torch.inference_mode``.

    Parameters
    ----------
    batch_size
        Pairs per forward pass.
    progress
        Show a progress bar.
    cache
        Read the result from the on-disk cache when present, and write it there when computed.
    num_workers
        Image-decoding worker processes; default 0 on the CPU (the model needs the cores) and
        up to 4 on a GPU.
    """
    target = embedding_cache_path(loaded, table) if cache else None
    if target is not None:
        cached = _read_cache(target, table)
        if cached is not None:
            return cached
    image, text = _encode(loaded, table, batch_size=batch_size, progress=progress,
                          num_workers=_default_workers(loaded.device, num_workers))
    result = Embeddings(image=image, text=text, logit_scale=loaded.logit_scale,
                        ids=table.ids.astype(str))
    if target is not None:
        _write_cache(target, result)
    return result


def _encode(loaded: LoadedModel, table: PairTable, *, batch_size: int, progress: bool,
            num_workers: int) -> tuple[np.ndarray, np.ndarray]:
    dataset = PairDataset(table, np.arange(len(table)), loaded.preprocess, loaded.tokenizer)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=loaded.device.startswith("cuda"))
    image_out: np.ndarray | None = None
    text_out: np.ndarray | None = None
    model = loaded.model
    with torch.inference_mode(), tqdm(total=len(table), desc="embedding", unit="pair",
                                       disable=not progress) as bar:
        for images, tokens, rows in loader:
            images = images.to(loaded.device, non_blocking=True)
            tokens = tokens.reshape(len(tokens), -1).to(loaded.device, non_blocking=True)
            u = model.encode_image(images, normalize=True).float().cpu().numpy()
            v = model.encode_text(tokens, normalize=True).float().cpu().numpy()
            if image_out is None:
                image_out = np.empty((len(table), u.shape[1]), dtype=np.float32)
                text_out = np.empty((len(table), v.shape[1]), dtype=np.float32)
            index = rows.numpy()
            image_out[index], text_out[index] = u, v
            bar.update(len(index))
    return image_out, text_out


def _default_workers(device: str, requested: int | None) -> int:
    if requested is not None:
        return requested
    if device.startswith("cuda"):
        return min(4, max(0, (os.cpu_count() or 1) - 1))
    return 0


def _read_cache(path: Path, table: PairTable) -> Embeddings | None:
    """The cached embeddings, or ``None`` when absent, unreadable or not this table's."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            result = Embeddings(image=stored["image"], text=stored["text"],
                                logit_scale=float(stored["logit_scale"]), ids=stored["ids"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return result if result.matches(table) else None


def _write_cache(path: Path, embeddings: Embeddings) -> None:
    with paths.atomic_write(path) as handle:
        np.savez(handle, image=embeddings.image, text=embeddings.text,
                 logit_scale=np.float64(embeddings.logit_scale),
                 ids=embeddings.ids.astype(str))
