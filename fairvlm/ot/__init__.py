r"""Distances between 1-D distributions: debiased Sinkhorn divergence, exact ``W2``, permutation
null.

Convention (that of geomloss ``SamplesLoss("sinkhorn", p=2, blur=blur)``, used by FairCLIP):
uniform empirical measures, cost :math:`C(x, y) = |x - y|^2 / 2`, :math:`\varepsilon =
\mathrm{blur}^2`,

.. math::
    \mathrm{OT}_\varepsilon(\alpha, \beta) = \min_\pi \langle \pi, C \rangle
    + \varepsilon\, \mathrm{KL}(\pi \,|\, \alpha \otimes \beta), \qquad
    S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
    - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
    - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta),

and :math:`S_\varepsilon \to W_2^2 / 2` as ``blur -> 0``. Unlike geomloss, which stops after
its annealing schedule (at its default ``scaling=0.5``: 1e-3 to 2e-1 relative error on random
clouds, and up to 1.2 on the small group divergences of loss-like batches, see
``bench/bench_sinkhorn.py``), the solver runs to convergence. Every function takes numpy
arrays or torch tensors; torch in gives differentiable torch out (gradients flow through both
samples), numpy in gives floats / numpy arrays.
"""

from fairvlm.ot._groups import group_sinkhorn_divergences, group_wasserstein_distances
from fairvlm.ot._pairs import sinkhorn_divergence, wasserstein2_1d
from fairvlm.ot._permutation import (
    STATISTICS,
    GroupPermutationTest,
    group_permutation_null,
    permutation_null,
)
from fairvlm.ot._summaries import summarised_group_sinkhorn_divergences

__all__ = [
    "STATISTICS",
    "GroupPermutationTest",
    "group_permutation_null",
    "group_sinkhorn_divergences",
    "group_wasserstein_distances",
    "permutation_null",
    "sinkhorn_divergence",
    "summarised_group_sinkhorn_divergences",
    "wasserstein2_1d",
]
