"""The fine-tuning loop: fair CLIP fine-tuning with DBPM, written into a run folder.

One step on a global batch of B pairs (METHOD.md sections 1-4)::

    u, v         = unit embeddings of the batch (gathered across ranks under DDP)
    l_i          = per_pair_clip_loss(u, v, s)                      # raw, one per pair
    memory.record(ids, l_i, epoch)                                  # DBPM, by sample id
    w_i, flagged = memory.weights(ids, l_i), memory.flagged(ids)    # frozen verdict
    L            = mean_i(w_i l_i) + lambda sum_g R_g               # fairness term from the
                                                                    # same forward pass
    backward, average gradients over ranks, clip the norm, AdamW, clamp s <= 100

With ``statistic="reference"`` the fairness term is the public code's: one extra forward pass
per group on a separately drawn (seeded) batch of that group, ``1 + |G|`` passes a step.
``memory.begin_epoch`` judges the pairs at every epoch start. After every epoch the model is
scored zero-shot on the validation split (:mod:`fairvlm.train.evaluation`), the epoch with the
best validation value of the selection metric is kept, and at the end the test split is
scored once with that epoch's weights and once with the starting model's, for the change the
fine-tune made (paired bootstrap intervals: measurable or within noise).

The run folder (:class:`fairvlm.runs.RunDir`, written by rank 0 only) receives
``config.json``, ``status.json`` (state, epoch, step, total, eta), ``metrics.jsonl`` (one
``kind="step"`` line per step, one ``kind="epoch"`` line per epoch, and a ``kind="baseline"``
line with the starting model's validation numbers), ``memory.npz``, checkpoints (at every
epoch end, every ``checkpoint_every`` steps, and on a stop request; see
:mod:`fairvlm.train.state`), ``eval.json`` and ``log.txt``. Only the newest checkpoint and
the selected epoch's are kept.

Reproducibility: the batch order and the reference group batches come from
``numpy.random.default_rng([seed, epoch, ...])``, the model is kept in eval mode (CLIP towers
have no dropout by default; BatchNorm statistics stay frozen, so a batch's result does not
depend on how it is split across ranks), and on the CPU ``torch.use_deterministic_algorithms``
is on. A resumed run restores weights, optimizer moments and the DBPM memory exactly, so on
the CPU it ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_

from fairvlm.data.table import SPLITS
from fairvlm.errors import ConfigError, FairVLMError
from fairvlm.metrics import AttributeReport
from fairvlm.mining import LossMemory
from fairvlm.models import load_model, read_checkpoint, resolve_device
from fairvlm.models.loading import LoadedModel
from fairvlm.runs import RunDir, write_json_atomic
from fairvlm.scoring import check_prompts, zero_shot_probabilities
from fairvlm.train import distributed, state
from fairvlm.train.config import TrainConfig
from fairvlm.train.encoders import HeadEncoder, PairEncoder, TowerEncoder
from fairvlm.train.evaluation import (
    Selection,
    attribute_report,
    change_from_start,
    describe_selection,
    report_summary,
)
from fairvlm.train.losses import (
    LossTerms,
    fair_clip_objective,
    objective,
    per_pair_clip_loss,
    reference_fairness_term,
)
from fairvlm.train.scope import parameter_groups, select_trainable
from fairvlm.train.training_data import TrainingData
from fairvlm.train.worker import kill_point

MAX_LOGIT_SCALE = 100.0
STATUS_INTERVAL_S = 1.0
_REFERENCE_STREAM = 1  # keeps the reference group draws apart from the sampler's stream


class StopRequest(Protocol):
    """Anything with a ``requested`` flag (e.g. :class:`fairvlm.train.worker.StopSignals`)."""

    @property
    def requested(self) -> bool: ...


StepCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class TrainResult:
    """How a run ended.

    ``state`` is ``"done"`` or ``"cancelled"``; ``step`` of ``total`` steps were done. For a
    finished run, ``selection`` is the model-selection record, ``val`` and ``test`` the
    summaries (:func:`fairvlm.train.evaluation.report_summary`) at the selected epoch,
    ``start_test`` the starting model's test summary, ``change`` the paired changes on test
    from the starting model to the selected one
    (:meth:`fairvlm.metrics.PairedChanges.to_dict`), and ``flagged`` DBPM's noisy and faulty
    counts from the whole loss history.
    """

    run_dir: Path
    state: str
    step: int
    total: int
    selection: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    flagged: dict[str, int] | None = None
    start_test: dict[str, Any] | None = None
    change: dict[str, Any] | None = None


def train(config: TrainConfig, run_dir: str | os.PathLike[str], *, resume: bool = False,
          stop: StopRequest | None = None, on_step: StepCallback | None = None,
          progress: bool = False) -> TrainResult:
    """Fine-tune as ``config`` says, writing the run folder ``run_dir``.

    Parameters
    ----------
    config
        The run's settings.
    run_dir
        The run folder: new or empty, or (with ``resume``) one holding this very config.
    resume
        Continue from the folder's newest complete checkpoint (from the start if it has none).
    stop
        Checked before every step; when set, the loop checkpoints, marks the run
        ``cancelled`` and returns.
    on_step
        Called after every step with ``(step, total, metrics record)`` (rank 0 only).
    progress
        Show progress bars for the one-off work (frozen tower outputs).

    Raises
    ------
    FairVLMError
        A bad setting, data set or model, a run folder holding another run, or a run another
        process is writing (:meth:`fairvlm.runs.RunDir.writer_lock`). These are raised before
        the run folder is written.
    """
    run = RunDir(run_dir)
    job, device = distributed.init_from_env(resolve_device(config.device))
    try:
        data = TrainingData.load(config, rank=job.rank, world_size=job.world_size)
        with run.writer_lock() if job.is_main else contextlib.nullcontext():
            if job.is_main:
                _check_run_folder(run, config, resume)
            with _deterministic(device):
                trainer = _Trainer(config, data, run, job, device, progress=progress)
                return trainer.fit(resume=resume, stop=stop, on_step=on_step)
    finally:
        distributed.shutdown(job)


def _check_run_folder(run: RunDir, config: TrainConfig, resume: bool) -> None:
    """Refuse a folder holding another run, or a started run without ``resume`` (no writes)."""
    if run.config_path.exists():
        run.create(config.to_dict())  # raises when the config differs; writes nothing here
        status = run.read_status()
        started = status.state != "queued" or state.complete_checkpoints(run.checkpoints_dir)
        if started and not resume:
            raise ConfigError(f"{run.path}: holds a started run (state {status.state}); pass "
                              "--resume to continue it, or choose a new run directory")
    elif resume:
        raise ConfigError(f"{run.path}: no run to resume (no config.json); start it without "
                          "--resume")
    elif run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
        run.create(config.to_dict())  # raises: not a fairvlm run folder


@contextlib.contextmanager
def _deterministic(device: str) -> Iterator[None]:
    """Deterministic kernels on the CPU for the duration of the run."""
    if torch.device(device).type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class _Trainer:
    """The state of one run: model, optimizer, DBPM memory, model selection, step count."""

    def __init__(self, config: TrainConfig, data: TrainingData, run: RunDir,
                 job: distributed.Distributed, device: str, *, progress: bool) -> None:
        self.config, self.data, self.run_dir, self.job, self.device = (config, data, run, job,
                                                                        device)
        self.fairness = config.fairness()
        self.sampler = data.sampler
        torch.manual_seed(config.seed)
        self.loaded: LoadedModel = load_model(config.model, device=device, arch=config.arch)
        self.model = self.loaded.model.eval()
        select_trainable(self.model, config.scope, last_k=config.last_k)
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.prompts = check_prompts(self.loaded.default_prompts)
        self.encoder: PairEncoder = (
            HeadEncoder(self.loaded, data.table, autocast=config.autocast, progress=progress)
            if config.scope == "projections"
            else TowerEncoder(self.loaded, data.table, autocast=config.autocast))
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, config.weight_decay),
                                           lr=config.lr)
        self.memory = LossMemory(data.train_ids, config.epochs, config.dbpm_config())
        self.selection = Selection(config.selection)
        self.steps_per_epoch = len(self.sampler)
        self.total = config.epochs * self.steps_per_epoch
        self.step = 0
        self.run: RunDir | None = run if job.is_main else None
        self._clock = _Clock()

    # --- the run -------------------------------------------------------------------------

    def fit(self, *, resume: bool, stop: StopRequest | None,
            on_step: StepCallback | None) -> TrainResult:
        try:
            start_epoch, start_step = self._open(resume)
            for epoch in range(start_epoch, self.config.epochs):
                verdict = self.memory.begin_epoch(epoch)
                if verdict is not None and start_step == 0:
                    self._log(f"{self._epoch(epoch)}: DBPM flags {int(verdict.noisy.sum())} "
                              f"noisy and {int(verdict.faulty.sum())} faulty pairs (mu "
                              f"{verdict.mu:.4f}, sigma {verdict.sigma:.4f})")
                batches = self.sampler.global_batches(epoch)[start_step:]
                local = slice(self.job.rank * self.sampler.local_batch_size,
                              (self.job.rank + 1) * self.sampler.local_batch_size)
                inputs = self.encoder.batches([self.data.train_rows[b[local]] for b in batches])
                records = self._logged_steps(epoch) if start_step else []
                for epoch_step, (rows, batch_inputs) in enumerate(zip(batches, inputs,
                                                                      strict=True),
                                                                  start=start_step):
                    if self._stop_requested(stop):
                        return self._cancel(epoch, epoch_step)
                    records.append(self._step(epoch, epoch_step, rows, batch_inputs))
                    self._after_step(records[-1], on_step)
                    every = self.config.checkpoint_every
                    if every and self.step % every == 0 and epoch_step + 1 < self.steps_per_epoch:
                        self._checkpoint(epoch, epoch_step + 1, epoch_end=False)
                start_step = 0
                self._end_epoch(epoch, records)
                if self._stop_requested(stop) and epoch + 1 < self.config.epochs:
                    return self._cancel(epoch + 1, 0)
            return self._finish()
        except Exception as error:
            self._fail(error)
            raise

    def _open(self, resume: bool) -> tuple[int, int]:
        """Create or reopen the run folder, restore the newest checkpoint; the start point."""
        latest = None
        if resume:
            if self.run is not None:
                self._remove_incomplete_files()
                self.run.remove_temp_files()
            found = state.complete_checkpoints(self.run_dir.checkpoints_dir)
            latest = found[-1] if found else None
        start = (0, 0)
        if latest is not None:
            self.memory, progress = state.restore(latest, model=self.model,
                                                  optimizer=self.optimizer)
            self.selection = Selection.from_dict(progress.selection)
            self.step = progress.step
            start = ((progress.epoch + 1, 0) if progress.epoch_end
                     else (progress.epoch, progress.epoch_step))
        if self.run is not None:
            self.run.create(self.config.to_dict())
            self.run.truncate_metrics(self.step if latest is not None else -1)
            if latest is not None:
                self.memory.save(self.run.memory_path)
                self._log(f"resumed from {latest.model_path.name} at {self._epoch(start[0])}, "
                          f"step {self.step}")
            else:
                self._log_start()
            self.run.update_status(state="running", epoch=start[0], step=self.step,
                                   total=self.total, eta_s=None, error=None, pid=os.getpid())
        if latest is None:
            self._baseline()
        self._clock.start(self.step)
        return start

    def _step(self, epoch: int, epoch_step: int, rows: np.ndarray,
              inputs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        image_local, text_local = self.encoder.embed(inputs)
        image = distributed.gather_with_grad(image_local, self.job)
        text = distributed.gather_with_grad(text_local, self.job)
        scale = self.model.logit_scale.exp().float()
        losses = per_pair_clip_loss(image, text, scale)
        ids = self.data.train_ids[rows]
        self.memory.record(ids, losses.detach(), epoch)
        weights = self.memory.weights(ids, losses)
        flagged = self.memory.flagged(ids)
        group_index = self.sampler.group_index[rows]  # host codes: no copy to the device
        n_groups = len(self.data.group_names)
        passes = 1
        if self.fairness.statistic == "reference" and self.fairness.lam > 0:
            group_logits = self._reference_group_logits(epoch, epoch_step, scale.detach())
            passes += len(group_logits)
            fairness = reference_fairness_term(scale * image @ text.T, group_logits, n_groups,
                                               self.fairness, flagged=flagged)
            terms = objective(losses, fairness, self.fairness, weights=weights)
        else:
            terms = fair_clip_objective(losses, image, text, group_index, n_groups,
                                        self.fairness, weights=weights, flagged=flagged)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        distributed.average_gradients(self.parameters, self.job)
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = clip_grad_norm_(self.parameters, max_norm)
        self.optimizer.step()
        kill_point("step")
        with torch.no_grad():
            self.model.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
        self.step += 1
        on_gpu = torch.device(self.device).type == "cuda"
        if on_gpu:
            torch.cuda.synchronize(self.device)  # so that "seconds" covers the whole step
        record = {
            "kind": "step", "epoch": epoch, "step": self.step, "epoch_step": epoch_step + 1,
            **self._terms_record(terms),
            "flagged": int(flagged.sum()), "mean_weight": float(weights.mean()),
            "forward_passes": passes, "grad_norm": float(grad_norm),
            "logit_scale": float(scale.detach()), "lr": self.config.lr,
            "seconds": time.perf_counter() - started,
        }
        if on_gpu:
            record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return record

    def _logged_steps(self, epoch: int) -> list[dict[str, Any]]:
        """The step lines of ``epoch`` already in ``metrics.jsonl`` (a run resumed mid-epoch;
        later lines were cut in :meth:`_open`), so that the epoch line covers every step."""
        if self.run is None:
            return []
        return [record for record in self.run.read_metrics()
                if record["kind"] == "step" and record["epoch"] == epoch]

    def _reference_group_logits(self, epoch: int, epoch_step: int,
                                scale: torch.Tensor) -> dict[int, torch.Tensor]:
        """The public code's extra forward passes: per group, a seeded batch of that group
        only (up to B pairs, split across ranks), its ``logits_per_image`` without gradients."""
        rng = np.random.default_rng([self.config.seed, epoch, epoch_step, _REFERENCE_STREAM])
        world = self.job.world_size
        logits = {}
        with torch.no_grad():
            for group in range(len(self.data.group_names)):
                members = self.data.group_members(group)
                size = world * max(1, min(self.config.batch_size, len(members)) // world)
                drawn = rng.choice(members, size=size, replace=size > len(members))
                share = size // world
                local = drawn[self.job.rank * share:(self.job.rank + 1) * share]
                image, text = self.encoder.embed(self.encoder.inputs(self.data.train_rows[local]))
                image = distributed.gather(image, self.job)
                text = distributed.gather(text, self.job)
                logits[group] = scale * image @ text.T
        return logits

    def _terms_record(self, terms: LossTerms) -> dict[str, Any]:
        record = terms.as_record()
        if "group_distances" in record:
            record["group_distances"] = dict(zip(self.data.group_names, record["group_distances"],
                                                 strict=True))
            record["skipped_groups"] = [self.data.group_names[g] for g in record["skipped_groups"]]
        return record

    def _after_step(self, record: dict[str, Any], on_step: StepCallback | None) -> None:
        if self.run is None:
            return
        self.run.append_metrics(record)
        if self._clock.due():
            self.run.update_status(epoch=record["epoch"], step=self.step,
                                   eta_s=self._clock.eta(self.step, self.total))
        if on_step is not None:
            on_step(self.step, self.total, record)

    def _end_epoch(self, epoch: int, records: list[dict[str, Any]]) -> None:
        if self.run is None:
            return
        self.memory.save(self.run.memory_path)
        report = self._evaluate("val", n_bootstrap=0)
        summary = report_summary(report)
        checkpoint = state.Checkpoint(self.run.checkpoint_path(epoch, self.step))
        self.selection.update(epoch, summary,
                              str(checkpoint.model_path.relative_to(self.run.path)))
        verdict = self.memory.assess(epoch + 1)
        record = {
            "kind": "epoch", "epoch": epoch, "step": self.step,
            **_epoch_means(records),
            "skipped_group_batches": {name: sum(name in r.get("skipped_groups", ())
                                                for r in records)
                                      for name in self.data.group_names},
            "flagged_in_batches": sum(r["flagged"] for r in records),
            "noisy": int(verdict.noisy.sum()), "faulty": int(verdict.faulty.sum()),
            "mu": verdict.mu, "sigma": verdict.sigma,
            "val": summary, "selected_epoch": self.selection.epoch,
        }
        self.run.append_metrics(record)
        self._log(f"{self._epoch(epoch)}: loss {record.get('loss', float('nan')):.4f}, "
                  f"validation AUC {_fmt(summary['auc'])}, ES-AUC {_fmt(summary['es_auc'])} "
                  f"({self.data.attribute.name}); best so far "
                  f"{self._epoch(self.selection.epoch or 0)}")
        self._checkpoint(epoch, self.steps_per_epoch, epoch_end=True)
        self.run.update_status(epoch=epoch, step=self.step,
                               eta_s=self._clock.eta(self.step, self.total))

    def _finish(self) -> TrainResult:
        distributed.barrier(self.job)
        if self.run is None:
            return TrainResult(self.run_dir.path, "done", self.step, self.total)
        start = self._starting_probabilities("test") if "test" in self.data.splits else None
        weights, _ = read_checkpoint(self.run.path / self.selection.checkpoint)
        self.model.load_state_dict(weights, strict=True)
        probabilities = {split: self._probabilities(split) for split in self.data.splits}
        reports = {split: self._report(split, values, n_bootstrap=self.config.n_bootstrap)
                   for split, values in probabilities.items()}
        start_test = change = None
        if start is not None:
            start_test = report_summary(self._report("test", start, n_bootstrap=0))
            change = change_from_start(
                self.data.splits["test"], self.data.attribute, start, probabilities["test"],
                min_n=self.config.eval_min_n, n_bootstrap=self.config.n_bootstrap,
                seed=self.config.seed).to_dict()
        verdict = self.memory.assess(self.memory.epochs_recorded)
        flagged = {"noisy": int(verdict.noisy.sum()), "faulty": int(verdict.faulty.sum())}
        write_json_atomic(self.run.eval_path, {
            "attribute": self.data.attribute.name,
            "selection": self.selection.to_dict(),
            "checkpoint": self.selection.checkpoint,
            "prompts": {str(label): texts for label, texts in self.prompts.items()},
            "val": reports["val"].to_dict(),
            "test": reports["test"].to_dict() if "test" in reports else None,
            "start_test": start_test,
            "change_from_start": change,
            "flagged": flagged,
            "excluded": self.data.excluded,
        })
        self.run.update_status(state="done", epoch=self.config.epochs - 1, step=self.step,
                               eta_s=0.0)
        summaries = {split: report_summary(report) for split, report in reports.items()}
        self._log(f"done: {describe_selection(self.selection.to_dict())} Test AUC "
                  f"{_fmt(summaries.get('test', {}).get('auc'))}, ES-AUC "
                  f"{_fmt(summaries.get('test', {}).get('es_auc'))}")
        return TrainResult(self.run.path, "done", self.step, self.total,
                           selection=self.selection.to_dict(), val=summaries["val"],
                           test=summaries.get("test"), flagged=flagged,
                           start_test=start_test, change=change)

    def _cancel(self, epoch: int, epoch_step: int) -> TrainResult:
        """Checkpoint a partly done epoch, mark the run cancelled."""
        if epoch_step > 0:
            self._checkpoint(epoch, epoch_step, epoch_end=False)
        if self.run is not None:
            self.run.update_status(state="cancelled", epoch=epoch, step=self.step, eta_s=None)
            self._log(f"cancelled at {self._epoch(epoch)}, step {self.step}; resume with "
                      "--resume")
        return TrainResult(self.run_dir.path, "cancelled", self.step, self.total)

    def _fail(self, error: BaseException) -> None:
        if self.run is None or not self.run.config_path.exists():
            return
        if isinstance(error, FairVLMError):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {' '.join(str(error).split())}"
        self._log("failed: " + "".join(traceback.format_exception(error)))
        self.run.update_status(state="failed", step=self.step, eta_s=None, error=message)

    # --- pieces ----------------------------------------------------------------------------

    def _baseline(self) -> None:
        """Score the starting model on validation (rank 0), for comparison."""
        if self.run is None:
            return
        summary = report_summary(self._evaluate("val", n_bootstrap=0))
        self.run.append_metrics({"kind": "baseline", "epoch": -1, "step": 0, "val": summary})
        self._log(f"starting model: validation AUC {_fmt(summary['auc'])}, ES-AUC "
                  f"{_fmt(summary['es_auc'])} ({self.data.attribute.name})")

    def _evaluate(self, split: str, *, n_bootstrap: int) -> AttributeReport:
        return self._report(split, self._probabilities(split), n_bootstrap=n_bootstrap)

    def _probabilities(self, split: str) -> np.ndarray:
        """Zero-shot ``p(glaucoma)`` of ``split``'s pairs with the model's current weights."""
        embeddings = self.encoder.split_image_embeddings(self.data.splits[split])
        kill_point("eval")
        return zero_shot_probabilities(self.loaded, embeddings, self.prompts)

    def _report(self, split: str, probabilities: np.ndarray, *,
                n_bootstrap: int) -> AttributeReport:
        return attribute_report(self.data.splits[split], self.data.attribute, probabilities,
                                min_n=self.config.eval_min_n, n_bootstrap=n_bootstrap,
                                seed=self.config.seed)

    def _starting_probabilities(self, split: str) -> np.ndarray | None:
        """:meth:`_probabilities` with the starting model's weights, reloaded from the run's
        model spec (so that a resumed run gets them too) onto the CPU, so that a GPU holds one
        copy of the model; the caller loads other weights afterwards. None, with a log line,
        when the spec no longer loads (a checkpoint file moved away during the run): the run
        still finishes, without its change from the start."""
        try:
            start = load_model(self.config.model, device="cpu", arch=self.config.arch)
        except FairVLMError as error:
            self._log(f"starting model not reloaded ({error}); eval.json has no change from "
                      "the start")
            return None
        self.model.load_state_dict(start.model.state_dict(), strict=True)
        del start
        return self._probabilities(split)

    def _checkpoint(self, epoch: int, epoch_step: int, *, epoch_end: bool) -> None:
        if self.run is None:
            return
        checkpoint = state.Checkpoint(self.run.checkpoint_path(epoch, self.step))
        progress = state.Progress(epoch=epoch, epoch_step=epoch_step, step=self.step,
                                  epoch_end=epoch_end, selection=self.selection.to_dict())
        state.save(checkpoint, model=self.model, arch=self.loaded.arch, prompts=self.prompts,
                   optimizer=self.optimizer, memory=self.memory, progress=progress)
        keep = {checkpoint.model_path.name, Path(self.selection.checkpoint or "").name}
        for old in state.complete_checkpoints(self.run.checkpoints_dir):
            if old.model_path.name not in keep:
                old.remove()

    def _remove_incomplete_files(self) -> None:
        """Leftovers of a process killed while writing: temporary files, partial checkpoints."""
        folder = self.run_dir.checkpoints_dir
        if not folder.is_dir():
            return
        complete = {c.stem for c in state.complete_checkpoints(folder)}
        for path in folder.iterdir():
            stem = path.name.split(".", 1)[0]
            if path.name.startswith(".") or stem not in complete:
                path.unlink(missing_ok=True)

    def _epoch(self, epoch: int) -> str:
        """``epoch 2/6``: an epoch index (from 0, as in checkpoint names) counted from 1, as
        the app and ``fairvlm train`` count."""
        return f"epoch {epoch + 1}/{self.config.epochs}"

    def _stop_requested(self, stop: StopRequest | None) -> bool:
        requested = stop is not None and stop.requested
        return distributed.any_rank(requested, self.job, self.device)

    def _log(self, line: str) -> None:
        if self.run is not None:
            self.run.log(line)

    def _log_start(self) -> None:
        config, data = self.config, self.data
        counts = {split: len(data.table.split_indices(split)) for split in SPLITS}
        values = sum(p.numel() for p in self.parameters)
        self._log(f"fine-tune of {self.loaded.spec} ({self.loaded.arch}) on {data.table.name}: "
                  f"{counts} pairs, attribute {data.attribute.name} with groups "
                  f"{list(data.group_names)}; scope {config.scope} ({len(self.parameters)} "
                  f"trainable tensors, {values} values); {self.steps_per_epoch} steps per epoch "
                  f"over {self.job.world_size} process(es) on {self.device}")
        if data.excluded:
            self._log(f"excluded pairs: {data.excluded}")


class _Clock:
    """Throttles status writes and estimates the time left from this process's step rate."""

    def __init__(self) -> None:
        self._started = self._last = time.monotonic()
        self._first_step = 0

    def start(self, step: int) -> None:
        self._started = self._last = time.monotonic()
        self._first_step = step

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= STATUS_INTERVAL_S:
            self._last = now
            return True
        return False

    def eta(self, step: int, total: int) -> float | None:
        done = step - self._first_step
        if done <= 0:
            return None
        return (time.monotonic() - self._started) / done * (total - step)


def _epoch_means(records: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each loss term over the epoch's steps (of this process's part of the epoch)."""
    means = {}
    for key in ("loss", "clip", "fairness", "weighted_fairness", "mean_weight"):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            means[key] = float(np.mean(values))
    return means


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
