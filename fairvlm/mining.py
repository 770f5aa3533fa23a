"""Dynamic Bad Pair Mining (DBPM) per pair, indexed by stable sample id (METHOD.md section 2).

:class:`LossMemory` keeps, for every training pair and every epoch, the raw per-pair CLIP loss
``l_i`` of that epoch's forward passes (the mean when a pair is drawn more than once in an
epoch; NaN when it was not drawn). At the start of epoch ``t >= warmup`` DBPM judges every pair
with history from the epochs before ``t``:

    m_i   = sum_e w_e l_i^(e) / sum_e w_e,   w_e = (e + 1) / E,  e < t with history
    mu    = mean_i m_i,   sigma = std_i m_i  (population std, pairs with history)
    noisy  <=>  m_i <= mu - beta_np * sigma      (abnormally low loss: shortcut match)
    faulty <=>  m_i >= mu + beta_fp * sigma      (abnormally high loss: text of another image)

``mu``, ``sigma`` and the flags are frozen for the epoch. During it, a flagged pair's loss is
multiplied by the detached weight ``w_i = exp(-(l_i - mu)^2 / (2 sigma^2))`` (``<= 1``, unlike
DBPM's original Gaussian density), by 0 in ``drop`` mode, and by 1 in ``off`` mode (flags are
still computed and saved, so the bad-pair browser works without changing training).

Under DDP every rank must hold the same history: either record the global batch's losses on
every rank, or record each rank's own pairs and call :meth:`LossMemory.all_reduce_epoch` once at
the end of each epoch. :meth:`LossMemory.merge` does the same for memories held in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from fairvlm.errors import ConfigError, DataError
from fairvlm.host import host_array
from fairvlm.paths import atomic_write

MODES: tuple[str, ...] = ("reweight", "drop", "off")
MEMORY_FILE = "memory.npz"
_FORMAT_VERSION = 1
_ARRAY_FIELDS: tuple[str, ...] = (
    "ids", "loss_history", "loss_count", "score", "noisy", "faulty", "mu", "sigma",
    "noisy_first_epoch", "faulty_first_epoch",
)
_CONFIG_FIELDS: tuple[str, ...] = ("mode", "beta_np", "beta_fp", "warmup")


@dataclass(frozen=True)
class DBPMConfig:
    """DBPM settings; invalid values raise :class:`ConfigError` at construction.

    Parameters
    ----------
    mode
        ``"reweight"`` (flagged pairs get the bounded kernel weight), ``"drop"`` (weight 0) or
        ``"off"`` (weight 1; flags are still computed and saved).
    beta_np, beta_fp
        Thresholds, in population standard deviations, for noisy (low-loss) and faulty
        (high-loss) pairs; both ``> 0``.
    warmup
        First epoch whose pairs are judged (``>= 1``: epoch 0 has no history).
    """

    mode: str = "reweight"
    beta_np: float = 2.0
    beta_fp: float = 3.0
    warmup: int = 2

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"dbpm mode: {self.mode!r}; expected one of {', '.join(MODES)}")
        for name in ("beta_np", "beta_fp"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"dbpm {name}: {value}; expected a number > 0")
        if int(self.warmup) != self.warmup or self.warmup < 1:
            raise ConfigError(f"dbpm warmup: {self.warmup}; expected an integer >= 1")


@dataclass(frozen=True)
class Verdict:
    """DBPM's judgement at the start of ``epoch``, from the loss history of the epochs before it.

    ``score`` holds ``m_i`` per pair (NaN without history); ``noisy`` and ``faulty`` are boolean
    flags per pair; ``mu`` and ``sigma`` are NaN when no pair has history.
    """

    epoch: int
    score: np.ndarray
    mu: float
    sigma: float
    noisy: np.ndarray
    faulty: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """Noisy or faulty, per pair."""
        return self.noisy | self.faulty


class LossMemory:
    """Per-pair loss history by sample id, DBPM verdicts per epoch, and the weights they imply.

    Parameters
    ----------
    ids
        Stable ids of the training pairs (``PairTable.ids`` of the train split), unique.
    epochs
        E, the number of training epochs (the width of the history).
    config
        DBPM settings.
    """

    def __init__(self, ids: Sequence[str] | np.ndarray, epochs: int,
                 config: DBPMConfig | None = None) -> None:
        self.ids = np.asarray(ids, dtype=str)
        if len(set(self.ids.tolist())) != len(self.ids):
            raise ValueError("LossMemory: sample ids must be unique")
        if epochs < 1:
            raise ValueError(f"LossMemory: epochs={epochs}; expected >= 1")
        self.epochs = int(epochs)
        self.config = config or DBPMConfig()
        self._row = {sample_id: row for row, sample_id in enumerate(self.ids.tolist())}
        n = len(self.ids)
        self._loss_sum = np.zeros((n, self.epochs))
        self._loss_count = np.zeros((n, self.epochs), dtype=np.int64)
        self.score = np.full((n, self.epochs), np.nan)
        self.noisy = np.zeros((n, self.epochs), dtype=bool)
        self.faulty = np.zeros((n, self.epochs), dtype=bool)
        self.mu = np.full(self.epochs, np.nan)
        self.sigma = np.full(self.epochs, np.nan)
        self._current: Verdict | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def history(self) -> np.ndarray:
        """Mean raw loss per pair and epoch, ``[N, E]``, NaN where the pair was not drawn."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._loss_count > 0, self._loss_sum / self._loss_count, np.nan)

    @property
    def loss_count(self) -> np.ndarray:
        """How many times each pair was drawn in each epoch, ``[N, E]``."""
        return self._loss_count.copy()

    @property
    def epochs_recorded(self) -> int:
        """1 + the last epoch with any record (0 when nothing was recorded)."""
        seen = np.flatnonzero(self._loss_count.any(axis=0))
        return int(seen[-1]) + 1 if len(seen) else 0

    def rows(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row positions of ``ids`` in the memory; ``KeyError`` for an id it does not hold."""
        return np.fromiter((self._row[str(i)] for i in ids), dtype=np.int64, count=len(ids))

    def record(self, ids: Sequence[str] | np.ndarray, losses: Tensor | np.ndarray,
               epoch: int) -> None:
        """Add this step's raw per-pair losses ``l_i`` (before any weighting) to ``epoch``."""
        self._check_epoch(epoch, self.epochs)
        values = host_array(losses).astype(np.float64).reshape(-1)
        rows = self.rows(ids)
        if len(rows) != len(values):
            raise ValueError(f"record: {len(rows)} ids but {len(values)} losses")
        np.add.at(self._loss_sum[:, epoch], rows, values)
        np.add.at(self._loss_count[:, epoch], rows, 1)

    def discard_from(self, epoch: int) -> None:
        """Forget records and verdicts of ``epoch`` and later (before resuming at ``epoch``)."""
        self._check_epoch(epoch, self.epochs)
        self._loss_sum[:, epoch:] = 0.0
        self._loss_count[:, epoch:] = 0
        self.score[:, epoch:] = np.nan
        self.noisy[:, epoch:] = False
        self.faulty[:, epoch:] = False
        self.mu[epoch:] = np.nan
        self.sigma[epoch:] = np.nan
        self._current = None

    def assess(self, epoch: int) -> Verdict:
        """DBPM's verdict from the history of epochs ``< epoch`` (pure: stores nothing).

        ``epoch`` may be E, the verdict after the last epoch (what exports report).
        """
        self._check_epoch(epoch, self.epochs + 1)
        history = self.history[:, :epoch]
        epoch_weight = (np.arange(epoch) + 1.0) / self.epochs
        seen = ~np.isnan(history)
        total_weight = (seen * epoch_weight).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(seen, history, 0.0) @ epoch_weight / total_weight
        score[total_weight == 0] = np.nan
        judged = ~np.isnan(score)
        mu = float(score[judged].mean()) if judged.any() else float("nan")
        sigma = float(score[judged].std()) if judged.any() else float("nan")
        noisy = np.zeros(len(score), dtype=bool)
        faulty = np.zeros(len(score), dtype=bool)
        if sigma > 0:
            noisy[judged] = score[judged] <= mu - self.config.beta_np * sigma
            faulty[judged] = score[judged] >= mu + self.config.beta_fp * sigma
        return Verdict(epoch, score, mu, sigma, noisy, faulty)

    def begin_epoch(self, epoch: int) -> Verdict | None:
        """Judge the pairs at the start of ``epoch`` and freeze the verdict for the epoch.

        Before ``warmup`` nothing is judged and every weight is 1. Returns the verdict, which is
        also stored (score, flags, mu, sigma of ``epoch``) and saved with the memory.
        """
        self._check_epoch(epoch, self.epochs)
        if epoch < self.config.warmup:
            self._current = None
            return None
        verdict = self.assess(epoch)
        self.score[:, epoch] = verdict.score
        self.noisy[:, epoch] = verdict.noisy
        self.faulty[:, epoch] = verdict.faulty
        self.mu[epoch], self.sigma[epoch] = verdict.mu, verdict.sigma
        self._current = verdict
        return verdict

    def flagged(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Whether each pair is flagged (noisy or faulty) in the current epoch's verdict."""
        if self._current is None:
            return np.zeros(len(ids), dtype=bool)
        return self._current.flagged[self.rows(ids)]

    def weights(self, ids: Sequence[str] | np.ndarray, losses: Tensor) -> Tensor:
        """Detached DBPM weights ``w_i`` for this step's pairs, same shape/device as ``losses``.

        ``w_i = exp(-(l_i - mu)^2 / (2 sigma^2))`` for pairs flagged in the current verdict
        (``reweight``), 0 for them (``drop``), and 1 for every other pair and in ``off`` mode.
        Always in ``[0, 1]``.
        """
        values = losses.detach()
        weights = torch.ones_like(values)
        if self._current is None or self.config.mode == "off":
            return weights
        mask = torch.as_tensor(self.flagged(ids), device=values.device)
        if self.config.mode == "drop":
            return weights.masked_fill(mask, 0.0)
        mu, sigma = self._current.mu, self._current.sigma
        kernel = torch.exp(-((values - mu) ** 2) / (2.0 * sigma**2))
        return torch.where(mask, kernel, weights)

    def first_flagged_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        """First epoch whose stored verdict flagged each pair as (noisy, faulty); -1 if never."""
        return _first_true(self.noisy), _first_true(self.faulty)

    def merge(self, other: LossMemory) -> None:
        """Add ``other``'s records (another rank's pairs) to this memory, matched by sample id."""
        if set(other.ids.tolist()) != set(self.ids.tolist()) or other.epochs != self.epochs:
            raise ValueError("merge: the memories hold different sample ids or epoch counts")
        rows = self.rows(other.ids)
        self._loss_sum[rows] += other._loss_sum
        self._loss_count[rows] += other._loss_count

    def all_reduce_epoch(self, epoch: int, *, device: torch.device | str = "cpu") -> None:
        """Sum ``epoch``'s records over all DDP ranks (every rank must call it once, in step).

        All ranks hold the same ids in the same order (the same train split), so rows match by
        sample id. ``device`` must suit the process group's backend (CUDA for NCCL).
        """
        import torch.distributed as dist

        self._check_epoch(epoch, self.epochs)
        buffer = torch.from_numpy(np.stack(
            [self._loss_sum[:, epoch], self._loss_count[:, epoch].astype(np.float64)]
        )).to(device)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        summed = buffer.cpu().numpy()
        self._loss_sum[:, epoch] = summed[0]
        self._loss_count[:, epoch] = np.rint(summed[1]).astype(np.int64)

    def save(self, path: str | Path) -> None:
        """Write the memory to ``path`` (``memory.npz``) atomically."""
        noisy_first, faulty_first = self.first_flagged_epoch()
        arrays = {
            "format_version": np.int64(_FORMAT_VERSION),
            "ids": self.ids,
            "loss_history": self.history,
            "loss_count": self._loss_count,
            "score": self.score,
            "noisy": self.noisy,
            "faulty": self.faulty,
            "mu": self.mu,
            "sigma": self.sigma,
            "noisy_first_epoch": noisy_first,
            "faulty_first_epoch": faulty_first,
            "mode": np.str_(self.config.mode),
            "beta_np": np.float64(self.config.beta_np),
            "beta_fp": np.float64(self.config.beta_fp),
            "warmup": np.int64(self.config.warmup),
        }
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> LossMemory:
        """Read a memory written by :meth:`save`; :class:`DataError` names a missing field."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no DBPM memory file; expected a {MEMORY_FILE} from a run")
        with np.load(path, allow_pickle=False) as data:
            for name in (*_ARRAY_FIELDS, *_CONFIG_FIELDS):
                if name not in data.files:
                    raise DataError(f"{path}: field {name} is missing; expected a fairvlm "
                                    f"{MEMORY_FILE}")
            arrays = {name: data[name] for name in (*_ARRAY_FIELDS, *_CONFIG_FIELDS)}
        history, count = arrays["loss_history"], arrays["loss_count"]
        if history.ndim != 2 or history.shape != count.shape or len(history) != len(arrays["ids"]):
            raise DataError(f"{path}: field loss_history: shape {history.shape}; expected "
                            f"[{len(arrays['ids'])}, epochs] like loss_count")
        config = DBPMConfig(mode=str(arrays["mode"]), beta_np=float(arrays["beta_np"]),
                            beta_fp=float(arrays["beta_fp"]), warmup=int(arrays["warmup"]))
        memory = cls(arrays["ids"], history.shape[1], config)
        memory._loss_count = count.astype(np.int64)
        memory._loss_sum = np.where(count > 0, np.nan_to_num(history) * count, 0.0)
        memory.score = arrays["score"].astype(np.float64)
        memory.noisy, memory.faulty = arrays["noisy"].astype(bool), arrays["faulty"].astype(bool)
        memory.mu = arrays["mu"].astype(np.float64)
        memory.sigma = arrays["sigma"].astype(np.float64)
        return memory

    @staticmethod
    def _check_epoch(epoch: int, stop: int) -> None:
        if not 0 <= epoch < stop:
            raise ValueError(f"epoch {epoch} is outside 0..{stop - 1}")


def flagged_pairs(memory: LossMemory, *, epoch: int | None = None,
                  include_unflagged: bool = False) -> pd.DataFrame:
    """DBPM's bad pairs as a table, in the per-pair detector contract (cleanlab-style columns).

    The verdict is :meth:`LossMemory.assess` at ``epoch`` (default: after the last recorded
    epoch, i.e. from the whole history). Scores are z-scores of ``m_i``, higher meaning more
    suspicious, so a flag is exactly ``score >= beta``:
    ``faulty_score = (m_i - mu) / sigma``, ``noisy_score = (mu - m_i) / sigma``.

    Columns: ``id``, ``mean_loss`` (``m_i``), ``is_faulty_issue``, ``faulty_score``,
    ``is_noisy_issue``, ``noisy_score``, ``faulty_first_epoch`` and ``noisy_first_epoch`` (the
    first epoch whose verdict, during training or this one, flagged the pair; <NA> if none).
    Only flagged pairs unless ``include_unflagged``; pairs without history are never listed.
    Sorted by ``|m_i - mu| / sigma`` (the larger of the two scores), descending.
    """
    verdict = memory.assess(memory.epochs_recorded if epoch is None else epoch)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (verdict.score - verdict.mu) / verdict.sigma
    noisy_first, faulty_first = memory.first_flagged_epoch()
    frame = pd.DataFrame({
        "id": memory.ids,
        "mean_loss": verdict.score,
        "is_faulty_issue": verdict.faulty,
        "faulty_score": z,
        "is_noisy_issue": verdict.noisy,
        "noisy_score": -z,
        "faulty_first_epoch": _first_or(faulty_first, verdict.faulty, verdict.epoch),
        "noisy_first_epoch": _first_or(noisy_first, verdict.noisy, verdict.epoch),
    })
    keep = ~np.isnan(verdict.score)
    if not include_unflagged:
        keep &= verdict.flagged
    frame = frame[keep]
    order = np.argsort(-np.abs(frame["faulty_score"].to_numpy()), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def _first_or(first: np.ndarray, flagged_now: np.ndarray, epoch: int) -> pd.Series:
    """Earliest flagging epoch, counting the verdict at ``epoch`` too; <NA> when never flagged."""
    result = np.where(first >= 0, first, np.where(flagged_now, epoch, -1))
    return pd.Series(result, dtype="Int64").mask(result < 0)


def _first_true(flags: np.ndarray) -> np.ndarray:
    return np.where(flags.any(axis=1), flags.argmax(axis=1), -1)
