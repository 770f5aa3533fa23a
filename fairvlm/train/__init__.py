"""Fair fine-tuning (METHOD.md sections 1-4): the building blocks of the training loop.

- :mod:`fairvlm.train.losses`: per-pair CLIP loss, the group fairness term (statistic
  ``loss``/``similarity``/``reference``, distance ``sinkhorn``/``wasserstein``), the objective.
- :mod:`fairvlm.train.sampler`: the group-aware, seeded, rank-sharded batch sampler.

The DBPM loss memory lives in :mod:`fairvlm.mining` and run directories in :mod:`fairvlm.runs`.
Submodules are imported explicitly, so importing this package stays cheap.
"""
