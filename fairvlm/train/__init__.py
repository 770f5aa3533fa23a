"""Fair fine-tuning (METHOD.md sections 1-4): the training loop and its building blocks.

- :mod:`fairvlm.train.losses`: per-pair CLIP loss, the group fairness term (statistic
  ``loss``/``similarity``/``reference``, distance ``sinkhorn``/``wasserstein``), the objective.
- :mod:`fairvlm.train.sampler`: the group-aware, seeded, rank-sharded batch sampler.
- :mod:`fairvlm.train.config`: :class:`TrainConfig`, the settings saved as ``config.json``.
- :mod:`fairvlm.train.loop`: :func:`train`, the loop writing a run folder.
- :mod:`fairvlm.train.training_data`: the table minus exclusions, groups and sampler.
- :mod:`fairvlm.train.scope`: trainable scopes (full, last-k blocks, projections).
- :mod:`fairvlm.train.encoders`: table rows to unit embeddings (towers, or frozen towers once
  and the projections per step).
- :mod:`fairvlm.train.evaluation`: zero-shot validation/test reports, model selection.
- :mod:`fairvlm.train.state`: checkpoints complete enough to resume exactly.
- :mod:`fairvlm.train.distributed`: DDP under ``torchrun`` (gather with gradients).
- :mod:`fairvlm.train.worker`: SIGTERM/SIGINT as "checkpoint, mark cancelled, exit".

The DBPM loss memory lives in :mod:`fairvlm.mining` and run directories in :mod:`fairvlm.runs`.
Submodules are imported explicitly, so importing this package stays cheap.
"""
