"""A torch view of a pair table: (image tensor, token tensor, row index) per pair.

Images are decoded when an item is requested (:func:`fairvlm.data.images.read_image`), turned
into RGB PIL images (grayscale copied to three channels) and passed through the model's own
preprocessing; notes are tokenized by the model's tokenizer, which truncates them to its
context length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from fairvlm.data.images import read_image, to_pil
from fairvlm.data.table import PairTable


class PairDataset(Dataset):
    """Pairs ``indices`` of ``table`` as ``(image, tokens, index)``.

    Parameters
    ----------
    table
        The pair table.
    indices
        Row positions of ``table`` to serve, in order (e.g. ``table.split_indices("train")``).
    preprocess
        PIL image -> image tensor (open_clip's ``preprocess``).
    tokenizer
        list of texts -> ``(len, context)`` token tensor (open_clip's tokenizer).

    Items are ``(preprocess(image), tokens, index)`` where ``index`` is the row position in
    ``table``, so per-pair results can be joined back on ``table.ids[index]``.
    """

    def __init__(self, table: PairTable, indices: Sequence[int] | np.ndarray,
                 preprocess: Callable[[Image.Image], torch.Tensor],
                 tokenizer: Callable[[list[str]], torch.Tensor]) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(table)):
            raise IndexError(f"indices must lie in [0, {len(table)}); got "
                             f"{self.indices.min()}..{self.indices.max()}")
        self.images = table.frame["image"].to_numpy()
        self.texts = table.frame["text"].to_numpy()
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        index = int(self.indices[position])
        image = self.preprocess(to_pil(read_image(self.images[index])))
        tokens = self.tokenizer([self.texts[index]])[0]
        return image, tokens, index
