"""How a fine-tune turns table rows into unit embeddings ``u_i`` (image) and ``v_i`` (text).

Two encoders with one interface (:class:`PairEncoder`):

- :class:`TowerEncoder` (scopes ``full`` and ``last-k``) decodes images and tokenizes notes
  for every batch and runs both towers.
- :class:`HeadEncoder` (scope ``projections``) runs the frozen towers once over the whole
  table, keeps the pre-projection features, and per batch only applies the trainable
  projections (:class:`fairvlm.train.scope.ProjectionHeads`).

Forward passes run under ``torch.autocast(bfloat16)`` on CUDA when asked; embeddings are
returned in float32, L2-normalised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import normalize
from torch.utils.data import DataLoader

from fairvlm.data.table import PairTable
from fairvlm.data.torch_dataset import PairDataset
from fairvlm.models.loading import LoadedModel
from fairvlm.scoring import compute_embeddings
from fairvlm.train.scope import ProjectionHeads

_PRECOMPUTE_BATCH = 128


class PairEncoder(Protocol):
    """Rows of the run's table in, unit embeddings out."""

    def batches(self, row_batches: Sequence[np.ndarray]) -> Iterator[Any]:
        """The model inputs of each batch of table rows, in order (prefetched on GPUs)."""

    def inputs(self, rows: np.ndarray) -> Any:
        """The model inputs of one batch of table rows."""

    def embed(self, inputs: Any) -> tuple[Tensor, Tensor]:
        """Unit image and text embeddings ``[b, D]`` (float32) of a batch's inputs."""

    def split_image_embeddings(self, split: PairTable) -> np.ndarray:
        """Unit image embeddings of every pair of ``split`` (a subset of the run's table)."""


class TowerEncoder:
    """Runs the whole model on decoded images and tokenized notes (scopes full and last-k)."""

    def __init__(self, loaded: LoadedModel, table: PairTable, *, autocast: bool) -> None:
        self.loaded = loaded
        self.device = torch.device(loaded.device)
        self.dataset = PairDataset(table, np.arange(len(table)), loaded.preprocess,
                                   loaded.tokenizer)
        self.autocast = autocast

    def batches(self, row_batches: Sequence[np.ndarray]) -> Iterator[tuple[Tensor, Tensor]]:
        workers = _loader_workers(self.device)
        if workers == 0:
            yield from (self.inputs(rows) for rows in row_batches)
            return
        loader = DataLoader(self.dataset, batch_sampler=[list(map(int, r)) for r in row_batches],
                            num_workers=workers, pin_memory=True)
        for images, tokens, _ in loader:
            yield self._to_device(images, tokens)

    def inputs(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        items = [self.dataset[int(row)] for row in rows]
        return self._to_device(torch.stack([item[0] for item in items]),
                               torch.stack([item[1] for item in items]))

    def embed(self, inputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        images, tokens = inputs
        with _autocast(self.device, self.autocast):
            image = self.loaded.model.encode_image(images)
            text = self.loaded.model.encode_text(tokens)
        return normalize(image.float(), dim=-1), normalize(text.float(), dim=-1)

    def split_image_embeddings(self, split: PairTable) -> np.ndarray:
        return compute_embeddings(self.loaded, split, cache=False).image

    def _to_device(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        tokens = tokens.reshape(len(tokens), -1)
        return (images.to(self.device, non_blocking=True),
                tokens.to(self.device, non_blocking=True))


class HeadEncoder:
    """Applies the trainable projections to frozen tower outputs computed once (projections).

    Parameters
    ----------
    loaded
        The model being fine-tuned (its towers are frozen).
    table
        The run's table; the towers run once over all of its rows.
    autocast
        Run the towers under ``torch.autocast(bfloat16)`` on CUDA.
    progress
        Show a progress bar while the towers run.
    """

    def __init__(self, loaded: LoadedModel, table: PairTable, *, autocast: bool,
                 progress: bool = False) -> None:
        self.loaded = loaded
        self.device = torch.device(loaded.device)
        self.heads = ProjectionHeads(loaded.model)
        self.row_of_id = {pair_id: row for row, pair_id in enumerate(table.ids.astype(str))}
        self.image_features, self.text_features = self._tower_outputs(table, autocast, progress)

    def batches(self, row_batches: Sequence[np.ndarray]) -> Iterator[tuple[Tensor, Tensor]]:
        yield from (self.inputs(rows) for rows in row_batches)

    def inputs(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        return self.image_features[index], self.text_features[index]

    def embed(self, inputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        image_features, text_features = inputs
        return (normalize(self.heads.image_embedding(image_features), dim=-1),
                normalize(self.heads.text_embedding(text_features), dim=-1))

    @torch.inference_mode()
    def split_image_embeddings(self, split: PairTable) -> np.ndarray:
        rows = np.array([self.row_of_id[pair_id] for pair_id in split.ids.astype(str)])
        image, _ = self.embed(self.inputs(rows))
        return image.cpu().numpy()

    def _tower_outputs(self, table: PairTable, autocast: bool,
                       progress: bool) -> tuple[Tensor, Tensor]:
        from tqdm.auto import tqdm

        dataset = PairDataset(table, np.arange(len(table)), self.loaded.preprocess,
                              self.loaded.tokenizer)
        loader = DataLoader(dataset, batch_size=_PRECOMPUTE_BATCH,
                            num_workers=_loader_workers(self.device))
        image_parts, text_parts = [], []
        with tqdm(total=len(table), desc="frozen towers", unit="pair",
                  disable=not progress) as bar:
            for images, tokens, _ in loader:
                with _autocast(self.device, autocast):
                    image, text = self.heads.features(
                        images.to(self.device), tokens.reshape(len(tokens), -1).to(self.device))
                image_parts.append(image.float())
                text_parts.append(text.float())
                bar.update(len(images))
        return torch.cat(image_parts), torch.cat(text_parts)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _loader_workers(device: torch.device) -> int:
    """Image-decoding processes: none on the CPU (the model needs the cores), up to 4 on GPUs."""
    return min(4, max(0, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0
