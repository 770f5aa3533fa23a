"""Settings of one fine-tuning run (:class:`TrainConfig`), saved as the run's ``config.json``.

A :class:`TrainConfig` holds everything that decides a run's numbers: the data, the model,
the protected attribute, the objective ``L = mean_i(w_i l_i) + lambda sum_g R_g`` (METHOD.md
section 4: :class:`~fairvlm.train.losses.FairnessConfig` for the fairness term,
:class:`~fairvlm.mining.DBPMConfig` for the DBPM weights ``w_i``), the optimiser, the
trainable scope, the seed, model selection and the pairs left out. It is checked on
construction; a bad value raises a one-line :class:`~fairvlm.errors.ConfigError` naming the
field. Checks that need the data (the attribute exists, every group holds ``k_per_group``
training pairs) run when the data are loaded, before any run folder is touched.

Learning rate: 1e-5 (the default) suits pretrained ViT-B/16-size models. The small demo
model, trained from scratch at 1e-3, barely moves at 1e-5 in ten epochs; fine-tune it at
about 1e-4 (``--lr 1e-4``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import pandas as pd

from fairvlm.config import JsonConfig
from fairvlm.data.table import PairTable
from fairvlm.data.text import decode_utf8
from fairvlm.errors import ConfigError
from fairvlm.metrics import DEFAULT_MIN_N
from fairvlm.mining import DBPMConfig
from fairvlm.train.losses import FairnessConfig

SCOPES: tuple[str, ...] = ("full", "last-k", "projections")
SELECTION_METRICS: tuple[str, ...] = ("es_auc", "auc")
EXCLUSION_SUFFIXES: tuple[str, ...] = (".txt", ".csv", ".json")
_Config = TypeVar("_Config", FairnessConfig, DBPMConfig)


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Settings of a fair fine-tuning run.

    Parameters
    ----------
    data
        A data set path (:func:`fairvlm.data.load_dataset`).
    model
        A model spec (:func:`fairvlm.models.load_model`): ``demo``, ``ARCH:TAG``, a file.
    arch
        The open_clip architecture of a checkpoint file that neither names it nor reveals it
        by its tensors; None reads or infers it (``load_model``'s ``arch``).
    attribute
        The protected attribute whose groups the fairness term and the sampler use, and whose
        ES-AUC selects the epoch.
    lam, statistic, distance, blur, fair_on
        The fairness term (:class:`~fairvlm.train.losses.FairnessConfig`): ``lam`` is lambda
        (0 turns the term off).
    dbpm, beta_np, beta_fp, warmup
        DBPM (:class:`~fairvlm.mining.DBPMConfig`): mode ``reweight``/``drop``/``off``, the
        noisy and faulty thresholds in standard deviations, the first judged epoch.
    epochs, lr, weight_decay, batch_size
        AdamW at a constant learning rate for ``epochs`` epochs of global batches of
        ``batch_size`` pairs (split across processes under DDP). Weight decay applies to
        matrices only, never to gains, biases or the logit scale.
    scope, last_k
        What is trained: ``full`` (everything), ``last-k`` (the last ``last_k`` blocks of each
        tower, their final norms, the projections and the logit scale) or ``projections``
        (the two projections and the logit scale; the frozen towers run once, up front).
    k_per_group
        Members of every group of ``attribute`` in every batch (the sampler's guarantee and
        the fairness term's minimum group size).
    seed
        Seed of the batch order and of the extra group batches of ``statistic="reference"``.
    device
        ``cpu``, ``cuda``, ``cuda:N``; None picks CUDA when available.
    autocast
        Run forward passes under ``torch.autocast(bfloat16)`` on CUDA (ignored on the CPU).
    grad_clip
        Maximum global gradient norm (0: no clipping).
    selection
        Validation metric that selects the epoch: ``es_auc`` of ``attribute`` (by AUC when
        ES-AUC is undefined on the validation split: fewer than two groups of
        ``eval_min_n`` pairs) or ``auc``.
    eval_min_n, n_bootstrap
        Evaluation: groups smaller than ``eval_min_n`` are left out of ES-AUC (see
        :func:`fairvlm.metrics.audit_attribute`); bootstrap resamples of the final validation
        and test reports (per-epoch validation uses none).
    checkpoint_every
        Also checkpoint every this many steps (0: only at the end of each epoch).
    exclude
        Ids of training pairs to leave out (the app's bad-pair decisions); validation and test
        pairs among them stay evaluated (:func:`fairvlm.train.training_data.exclude_pairs`).
    exclude_file
        The file ``exclude`` was read from, for the record.
    """

    KIND: ClassVar[str] = "train config"

    data: str = ""
    model: str = ""
    arch: str | None = None
    attribute: str = ""
    lam: float = 0.1
    statistic: str = "loss"
    distance: str = "sinkhorn"
    blur: float = 0.1
    fair_on: str = "clean"
    dbpm: str = "reweight"
    beta_np: float = 2.0
    beta_fp: float = 3.0
    warmup: int = 2
    epochs: int = 10
    lr: float = 1e-5
    weight_decay: float = 0.1
    batch_size: int = 32
    scope: str = "full"
    last_k: int = 1
    k_per_group: int = 4
    seed: int = 0
    device: str | None = None
    autocast: bool = True
    grad_clip: float = 1.0
    selection: str = "es_auc"
    eval_min_n: int = DEFAULT_MIN_N
    n_bootstrap: int = 1000
    checkpoint_every: int = 0
    exclude: tuple[str, ...] = ()
    exclude_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("data", "model", "attribute"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise self._fail(name, getattr(self, name), "a non-empty string")
        if self.arch is not None and (not isinstance(self.arch, str) or not self.arch.strip()):
            raise self._fail("arch", self.arch, "an open_clip architecture name, or null")
        self.fairness()
        self.dbpm_config()
        for name in ("epochs", "batch_size", "last_k", "k_per_group", "eval_min_n"):
            self._check_int(name, 1)
        for name in ("seed", "n_bootstrap", "checkpoint_every"):
            self._check_int(name, 0)
        self._check_positive("lr")
        self._check_non_negative("weight_decay")
        self._check_non_negative("grad_clip")
        self._check_choice("scope", SCOPES)
        self._check_choice("selection", SELECTION_METRICS)
        self._check_bool("autocast")
        if self.device is not None and not isinstance(self.device, str):
            raise self._fail("device", self.device, "cpu, cuda, cuda:N or null")
        if isinstance(self.exclude, str) or not all(isinstance(i, str) for i in self.exclude):
            raise self._fail("exclude", self.exclude, "a list of pair ids")
        self._normalise("exclude", tuple(sorted(set(self.exclude))))
        if self.k_per_group > self.batch_size:
            raise self._fail("k_per_group", self.k_per_group,
                             f"at most batch_size ({self.batch_size})")

    def fairness(self) -> FairnessConfig:
        """The fairness term's settings (raises :class:`ConfigError` for a bad one)."""
        return _prefixed(lambda: FairnessConfig(
            lam=self.lam, statistic=self.statistic, distance=self.distance, blur=self.blur,
            min_per_group=self.k_per_group, fair_on=self.fair_on))

    def dbpm_config(self) -> DBPMConfig:
        """DBPM's settings (raises :class:`ConfigError` for a bad one)."""
        return _prefixed(lambda: DBPMConfig(mode=self.dbpm, beta_np=self.beta_np,
                                            beta_fp=self.beta_fp, warmup=self.warmup))

    def check_data(self, table: PairTable) -> None:
        """Refuse an attribute the data lack, or data without train and val pairs.

        The per-group ``k_per_group`` check is the batch sampler's (it sees the training
        split after exclusions).
        """
        if self.attribute not in table.attributes:
            have = ", ".join(table.attributes) or "none"
            raise self._fail("attribute", self.attribute,
                             f"an attribute of {table.name} ({have})")
        for split in ("train", "val"):
            if len(table.split_indices(split)) == 0:
                raise ConfigError(f"{table.name}: split {split!r} has no pairs (after "
                                  f"{len(self.exclude)} exclusions); training needs train and "
                                  "val pairs")

    def _check_non_negative(self, field: str) -> None:
        value = getattr(self, field)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise self._fail(field, value, "a number >= 0")


def read_exclusions(path: str | Path) -> tuple[str, ...]:
    """Pair ids to leave out, from ``.txt`` (one id a line; ``#`` starts a comment), ``.csv``
    (an ``id`` column, e.g. a ``fairvlm mine`` export) or ``.json`` (a list of ids or of
    objects with an ``id`` field).

    Raises
    ------
    ConfigError
        Missing file, unknown extension, unreadable CSV or JSON, or no ``id`` column/field.
    DataError
        A file that is not UTF-8 text.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: exclusions file not found; expected a .txt, .csv or .json "
                          "file of pair ids")
    suffix = file.suffix.lower()
    if suffix not in EXCLUSION_SUFFIXES:
        raise ConfigError(f"{file}: unsupported exclusions file; expected one of "
                          f"{', '.join(EXCLUSION_SUFFIXES)}")
    text = decode_utf8(file.read_bytes(), str(file))
    if suffix == ".txt":
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return tuple(line for line in lines if line)
    if suffix == ".csv":
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as error:
            raise ConfigError(f"{file}: not a readable CSV ({str(error).strip()}); expected a "
                              "header row with an id column") from None
        if "id" not in frame.columns:
            raise ConfigError(f"{file}: no id column; expected a column named id")
        return tuple(frame["id"].tolist())
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file}: not valid JSON ({error.msg}); expected a list of ids"
                          ) from None
    ids = [item.get("id") if isinstance(item, dict) else item for item in items] \
        if isinstance(items, list) else None
    if ids is None or not all(isinstance(i, str) for i in ids):
        raise ConfigError(f"{file}: expected a JSON list of pair ids or of objects with an "
                          "id field")
    return tuple(ids)


def _prefixed(build: Callable[[], _Config]) -> _Config:
    """Run a sub-config constructor, prefixing its one-line error with this config's kind."""
    try:
        return build()
    except ConfigError as error:
        raise ConfigError(f"{TrainConfig.KIND}: {error}") from None
