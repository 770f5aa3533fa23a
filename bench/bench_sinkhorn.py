"""Benchmark: the Sinkhorn divergence of every group of a batch, fairvlm.ot vs geomloss and POT.

The task is the fair training step's: ``n`` per-pair losses (gamma-distributed, one group
shifted), 3 groups of about 50/30/20 %, ``R_g = S_eps(D_g, D)`` for every group (debiased: the
three terms OT(D_g, D), OT(D_g, D_g), OT(D, D)), blur 0.1, cost ``|x - y|^2 / 2``.

Contenders, all in this process, on the same data:

- ``fairvlm``: ``fairvlm.ot.group_sinkhorn_divergences``, one call, default settings;
- ``geomloss/group``: ``SamplesLoss("sinkhorn", p=2, blur)`` once a group;
- ``geomloss/batch``: the same, all groups as one padded batch (zero weights on padding);
- ``POT/sinkhorn_log``: ``ot.bregman.sinkhorn_log`` once a problem (2G + 1 problems); the
  forward+backward column uses ``ot.solve(..., grad="envelope")``, which runs ``sinkhorn_log``
  and sets the envelope gradient;
- ``POT/solve_sample_batch``: ``ot.solve_sample_batch`` on all 2G + 1 problems padded to one
  batch (``metric="sqeuclidean"``, so ``reg = 2 eps`` and values halved).

Equal accuracy: the reference is fairvlm at ``tol=1e-13`` (checked against POT's converged
``sinkhorn_log`` for n <= 32: the agreement is printed). Each contender's accuracy knob
(geomloss ``scaling``, POT ``stopThr``/``tol``) is tightened until every group's relative error
is at most each of ``--targets``, within ``--budget`` seconds of search; one table per target
states the error each reached and times the forward pass and forward+backward (median of
repeats). A contender whose time at a target, scaled by ``n**2``, would exceed the budget at
the next size is skipped there for that target. geomloss's error at its default
``scaling=0.5`` is printed too. Everything runs single-threaded (``--threads``): on a shared
2-core machine, thread wake-ups dominate these small problems for every library.

Usage: ``python bench/bench_sinkhorn.py [--sizes 32 128 512 2048 4096] [--targets 1e-2 1e-4]
[--budget 60]``

``--summaries`` measures instead what the audit does above ``sinkhorn_max_pairs``: the
divergences of every group solved on summaries of the distributions
(:mod:`fairvlm.ot._summaries`), against the exact solve in the same process, on 12 data sets
(probabilities in [0, 1], gamma-tailed per-pair losses, similarities; populations of 1,000 and
2,000 with groups of 20 to 1,500; with and without group differences) and two stress cases (a
far outlier beyond a uniform group; a bimodal population), at blur 0.05, 0.1 and 0.2 times the
values' standard deviation (the audit's convention). It prints each group's largest absolute
error (as a fraction of the values' variance), relative error and error over the ``W2^2`` the
summaries moved (``delta_g + delta_D``), the exact and summarised times and their ratio; then
the summarised time at ``--summary-sizes`` pairs (5 groups), where the exact solve is out of
reach, with ``--reference-atoms`` the error against summaries of that many atoms there, and
the audit's whole distances stage (two statistics, Sinkhorn, ``W2^2/2``, 200-shuffle
permutation null) at each size, and at 2,000 pairs exact vs summarised.
``python bench/bench_sinkhorn.py --summaries [--summary-sizes 10000 100000]
[--reference-atoms 1024]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

BLUR = 0.1
GROUP_SHARES = (0.5, 0.3, 0.2)
N_GROUPS = len(GROUP_SHARES)
POT_MAX_ITER = 100_000  # POT stops at its tolerance or here


@dataclass(frozen=True)
class Batch:
    """One benchmark input: per-pair losses and their group codes."""

    values: np.ndarray
    groups: np.ndarray

    @classmethod
    def synthetic(cls, n: int, seed: int = 0) -> Batch:
        rng = np.random.default_rng(seed)
        groups = rng.choice(N_GROUPS, p=GROUP_SHARES, size=n)
        groups[:N_GROUPS] = np.arange(N_GROUPS)  # every group present
        return cls(rng.gamma(2.0, 0.6, size=n) + 0.5 * (groups == 2), groups)

    def members(self, values: torch.Tensor | np.ndarray) -> list:
        return [values[torch.as_tensor(np.flatnonzero(self.groups == g))]
                if isinstance(values, torch.Tensor) else values[self.groups == g]
                for g in range(N_GROUPS)]


# A contender: (batch, knob, values as a tensor or None for a forward-only numpy run) -> (G,)
Contender = Callable[[Batch, float, torch.Tensor | None], torch.Tensor | np.ndarray]


def run_fairvlm(batch: Batch, tol: float, values: torch.Tensor | None):
    from fairvlm import ot

    return ot.group_sinkhorn_divergences(batch.values if values is None else values,
                                         batch.groups, N_GROUPS, blur=BLUR, tol=tol)[0]


def run_geomloss_per_group(batch: Batch, scaling: float, values: torch.Tensor | None):
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=scaling, backend="tensorized")
    population = torch.as_tensor(batch.values) if values is None else values
    return torch.stack([loss(group[:, None], population[:, None])
                        for group in batch.members(population)])


def run_geomloss_batched(batch: Batch, scaling: float, values: torch.Tensor | None):
    from geomloss import SamplesLoss

    loss = SamplesLoss("sinkhorn", p=2, blur=BLUR, scaling=scaling, backend="tensorized")
    population = torch.as_tensor(batch.values) if values is None else values
    members = batch.members(population)
    padded = torch.nn.utils.rnn.pad_sequence(members, batch_first=True)
    weights = torch.nn.utils.rnn.pad_sequence(
        [torch.full((len(m),), 1.0 / len(m), dtype=torch.float64) for m in members],
        batch_first=True)
    n = len(population)
    return loss(weights, padded[:, :, None],
                torch.full((N_GROUPS, n), 1.0 / n, dtype=torch.float64),
                population[None, :, None].expand(N_GROUPS, n, 1).contiguous())


def _problems(batch: Batch, values) -> list[tuple]:
    """The 2G + 1 transport problems of the debiased divergences: (D_g, D), (D_g, D_g), (D, D)."""
    members = batch.members(values)
    return [(m, values) for m in members] + [(m, m) for m in members] + [(values, values)]


def _debias(ot_values: Sequence) -> list:
    return [ot_values[g] - 0.5 * ot_values[N_GROUPS + g] - 0.5 * ot_values[-1]
            for g in range(N_GROUPS)]


def run_pot_sinkhorn_log(batch: Batch, stop: float, values: torch.Tensor | None):
    import ot as pot

    eps = BLUR**2
    totals = []
    for x, y in _problems(batch, batch.values if values is None else values):
        if values is None:
            a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
            cost = 0.5 * (x[:, None] - y[None, :]) ** 2
            plan = pot.bregman.sinkhorn_log(a, b, cost, eps, numItermax=POT_MAX_ITER,
                                            stopThr=stop, warn=False)
            inside = plan > 0
            kl = np.sum(plan[inside] * np.log(plan[inside] * len(x) * len(y)))
            totals.append(float(np.sum(plan * cost) + eps * kl))
        else:
            a = torch.full((len(x),), 1 / len(x), dtype=torch.float64)
            b = torch.full((len(y),), 1 / len(y), dtype=torch.float64)
            cost = 0.5 * (x[:, None] - y[None, :]) ** 2
            totals.append(pot.solve(cost, a, b, reg=eps, max_iter=POT_MAX_ITER, tol=stop,
                                    grad="envelope").value)
    result = _debias(totals)
    return np.array(result) if values is None else torch.stack(result)


def run_pot_solve_sample_batch(batch: Batch, tol: float, values: torch.Tensor | None):
    import ot as pot

    problems = _problems(batch, batch.values if values is None else values)
    width = len(batch.values)

    def pad(rows):
        if values is None:
            points = np.zeros((len(rows), width, 1))
            weights = np.zeros((len(rows), width))
            for k, row in enumerate(rows):
                points[k, :len(row), 0], weights[k, :len(row)] = row, 1 / len(row)
            return points, weights
        points = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)[:, :, None]
        weights = torch.nn.utils.rnn.pad_sequence(
            [torch.full((len(r),), 1 / len(r), dtype=torch.float64) for r in rows],
            batch_first=True)
        return points, weights

    (xs, a), (ys, b) = pad([p[0] for p in problems]), pad([p[1] for p in problems])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = pot.solve_sample_batch(xs, ys, reg=2 * BLUR**2, a=a, b=b, metric="sqeuclidean",
                                        max_iter=POT_MAX_ITER, tol=tol, reg_type="entropy",
                                        grad="envelope" if values is not None else "detach")
    # sqeuclidean = 2 C, reg = 2 eps: the entropic value is exactly twice OT_eps; the entropy
    # convention differs from KL by constants that cancel in the debiased combination.
    halved = 0.5 * result.value
    divergences = _debias([halved[k] for k in range(len(problems))])
    return np.array(divergences) if values is None else torch.stack(divergences)


GEOMLOSS_SCALINGS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
POT_TOLERANCES = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
# name: (runner, its accuracy knob's values from cheapest to most accurate)
CONTENDERS: dict[str, tuple[Contender, tuple[float, ...]]] = {
    "fairvlm": (run_fairvlm, (1e-7,)),
    "geomloss/group": (run_geomloss_per_group, GEOMLOSS_SCALINGS),
    "geomloss/batch": (run_geomloss_batched, GEOMLOSS_SCALINGS),
    "POT/sinkhorn_log": (run_pot_sinkhorn_log, POT_TOLERANCES),
    "POT/solve_sample_batch": (run_pot_solve_sample_batch, POT_TOLERANCES),
}


@dataclass
class Outcome:
    """A contender's cheapest setting reaching one accuracy target, and its times."""

    knob: float | None = None
    error: float = math.inf
    forward: float = math.nan
    backward: float = math.nan
    note: str = ""


def relative_error(result, reference: np.ndarray) -> float:
    values = np.asarray(result.detach() if isinstance(result, torch.Tensor) else result)
    return float(np.max(np.abs(values - reference) / np.abs(reference)))


def timed(function: Callable[[], object], seconds: float = 2.0, most: int = 25) -> float:
    """Median wall time of one call, in seconds, over about ``seconds`` of repeats (after a
    warm-up call)."""
    start = time.perf_counter()
    function()
    repeats = max(1, min(most, int(seconds / (time.perf_counter() - start))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def forward_backward(runner: Contender, batch: Batch, knob: float) -> None:
    values = torch.tensor(batch.values, requires_grad=True)
    runner(batch, knob, values).sum().backward()


def measure(name: str, batch: Batch, reference: np.ndarray, targets: Sequence[float],
            budget: float) -> dict[float, Outcome]:
    """Tighten ``name``'s knob until each target is reached (or ``budget`` seconds of search
    pass), then time the cheapest setting reaching each target."""
    runner, knobs = CONTENDERS[name]
    reached: dict[float, tuple[float, float]] = {}
    best, spent = math.inf, 0.0
    for knob in knobs:
        if len(reached) == len(targets) or spent > budget:
            break
        start = time.perf_counter()
        error = relative_error(runner(batch, knob, None), reference)
        spent += time.perf_counter() - start
        best = min(best, error)
        for target in targets:
            if error <= target and target not in reached:
                reached[target] = (knob, error)
    why = (f"not reached in {budget:.0f} s of search" if spent > budget
           else "not reached by the most accurate setting")
    outcomes, timings = {}, {}
    for target in targets:
        if target not in reached:
            outcomes[target] = Outcome(error=best, note=f"{why} (best {best:.1e})")
            continue
        knob, error = reached[target]
        if knob not in timings:
            timings[knob] = (timed(lambda k=knob: runner(batch, k, None)),
                             timed(lambda k=knob: forward_backward(runner, batch, k)))
        outcomes[target] = Outcome(knob, error, *timings[knob])
    return outcomes


def pot_reference_agreement(batch: Batch, reference: np.ndarray) -> float:
    """Relative gap between the reference and POT ``sinkhorn_log`` run to ``stopThr=1e-12`` (or
    ``POT_MAX_ITER`` iterations)."""
    return relative_error(run_pot_sinkhorn_log(batch, 1e-12, None), reference)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512, 2048, 4096])
    parser.add_argument("--targets", type=float, nargs="+", default=[1e-2, 1e-4],
                        help="largest relative error of any group that counts as accurate")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of accuracy search per contender and size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summaries", action="store_true",
                        help="measure the audit's summarised divergences instead (see above)")
    parser.add_argument("--summary-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reference-atoms", type=int, default=0,
                        help="with --summaries: check the summary-size runs against summaries "
                        "of this many atoms (0: skip; 1024 takes about 4 s a data set)")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from fairvlm import ot

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    if args.summaries:
        with threadpool_limits(args.threads):
            summaries_main(args.summary_sizes, args.reference_atoms)
        return
    last: dict[tuple[str, float], tuple[int, float]] = {}  # (contender, target) -> (n, seconds)
    rows: list[tuple[int, str, dict[float, Outcome]]] = []
    with threadpool_limits(args.threads):
        for n in args.sizes:
            batch = Batch.synthetic(n)
            reference = np.asarray(ot.group_sinkhorn_divergences(batch.values, batch.groups,
                                                                 N_GROUPS, blur=BLUR, tol=1e-13)[0])
            counts = [int(np.sum(batch.groups == g)) for g in range(N_GROUPS)]
            print(f"\nn = {n}, groups {counts}, blur {BLUR}, spread {batch.values.std():.2f}, "
                  f"reference S = {np.array2string(reference, precision=4)}", flush=True)
            if n <= 32:
                print(f"  reference vs POT sinkhorn_log at stopThr=1e-12: "
                      f"{pot_reference_agreement(batch, reference):.1e} relative")
            geomloss_default = relative_error(run_geomloss_per_group(batch, 0.5, None), reference)
            print(f"  geomloss at its default scaling 0.5: {geomloss_default:.1e} relative error",
                  flush=True)
            for name in CONTENDERS:
                outcomes = {}
                for target in args.targets:
                    if (name, target) in last:
                        before, seconds = last[name, target]
                        if seconds * (n / before) ** 2 > args.budget:
                            outcomes[target] = Outcome(
                                note=f"skipped: projected > {args.budget:.0f} s from n = {before}")
                wanted = [t for t in args.targets if t not in outcomes]
                start = time.perf_counter()
                outcomes |= measure(name, batch, reference, wanted, args.budget) if wanted else {}
                for target in wanted:
                    reached = outcomes[target].knob is not None
                    last[name, target] = (n, outcomes[target].forward if reached
                                          else time.perf_counter() - start)
                rows.append((n, name, outcomes))
                print(f"  {name}: " + "; ".join(
                    f"<= {t:g}: knob {o.knob}, error {o.error:.1e}, forward {o.forward:.4f} s, "
                    f"fwd+bwd {o.backward:.4f} s {o.note}" for t, o in sorted(outcomes.items())),
                      flush=True)
    for target in args.targets:
        print_table([(n, name, outcomes[target]) for n, name, outcomes in rows], target)


def print_table(rows: list[tuple[int, str, Outcome]], target: float) -> None:
    baseline = {n: outcome for n, name, outcome in rows if name == "fairvlm"}
    print(f"\nAll groups' debiased Sinkhorn divergences at relative error <= {target:g} "
          f"(times: median wall seconds; ratio = contender / fairvlm)")
    header = (f"{'n':>5} {'contender':<24} {'knob':>8} {'error':>8} {'forward':>9} "
              f"{'ratio':>7} {'fwd+bwd':>9} {'ratio':>7}  note")
    print(header)
    print("-" * len(header))
    for n, name, outcome in rows:
        ours = baseline[n]
        knob = "" if outcome.knob is None else f"{outcome.knob:g}"
        error = "" if math.isinf(outcome.error) else f"{outcome.error:.1e}"
        print(f"{n:>5} {name:<24} {knob:>8} {error:>8} {outcome.forward:>9.4f} "
              f"{outcome.forward / ours.forward:>7.1f} {outcome.backward:>9.4f} "
              f"{outcome.backward / ours.backward:>7.1f}  {outcome.note}")


# --- Summaries: the audit's divergences above sinkhorn_max_pairs -------------------------------

SUMMARY_BLURS = (0.05, 0.1, 0.2)  # times the values' standard deviation, as in the audit
SUMMARY_LAYOUTS = ((1000, (500, 300, 150, 50)), (2000, (1500, 400, 80, 20)),
                   (2000, (1000, 600, 300, 100)))
KINDS = ("probability", "loss", "similarity")
LARGE_SHARES = (0.45, 0.25, 0.15, 0.10, 0.05)


def audit_statistic(kind: str, sizes: Sequence[int], shift: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair values and group codes (groups of ``sizes``, shuffled): ``probability``
    ``sigmoid(z)``, ``z ~ N(+-2, 1.5)`` by a 50/50 label; ``loss`` ``Gamma(2, 0.6)``;
    ``similarity`` ``N(0.3, 0.05)``. With ``shift`` 1, groups 1 to 3 move or grow a tail."""
    codes = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    n = codes.size
    if kind == "probability":
        z = rng.normal(np.where(rng.random(n) < 0.5, 2.0, -2.0), 1.5)
        z += shift * ((codes == 1) - 0.5 * (codes == 2))
        return 1.0 / (1.0 + np.exp(-z)), codes
    if kind == "loss":
        tail = rng.exponential(0.3, n) * (codes == 2)
        return rng.gamma(2.0, 0.6, n) + shift * (0.5 * (codes == 1) + tail), codes
    return rng.normal(0.3, 0.05, n) + shift * (0.01 * (codes == 1) - 0.02 * (codes == 3)), codes


def summary_data_sets() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The named data sets of the error table (seeded)."""
    rng = np.random.default_rng(0)
    sets = [(f"{kind} N={n} {'shifted' if shift else 'alike'} {list(sizes)}",
             *audit_statistic(kind, sizes, shift, rng))
            for n, sizes in SUMMARY_LAYOUTS for kind in KINDS for shift in (0.0, 1.0)]
    halves = np.repeat([0, 1], 1000)
    sets.append(("stress: uniform group, outlier at 3", np.r_[rng.random(1999), 3.0], halves))
    sets.append(("stress: bimodal population", np.r_[rng.normal(0, 0.1, 1500),
                                                      rng.normal(1, 0.1, 500)], halves))
    return sets


def summaries_main(sizes: Sequence[int], reference_atoms: int) -> None:
    from fairvlm import ot
    from fairvlm.ot._summaries import summarised_group_sinkhorn_divergences

    print("Summarised vs exact debiased Sinkhorn divergences of every group (errors: largest "
          "over the groups; abs / var: absolute error over the values' variance; err / moved: "
          "over delta_g + delta_D)")
    header = (f"{'data set':<50} {'blur':>5} {'abs/var':>8} {'rel':>8} {'err/moved':>9} "
              f"{'exact s':>8} {'summ. s':>8} {'ratio':>6}")
    print(header + "\n" + "-" * len(header))
    worst = np.zeros(3)
    for name, values, codes in summary_data_sets():
        n_groups = int(codes.max()) + 1
        for relative_blur in SUMMARY_BLURS:
            blur = relative_blur * values.std()
            start = time.perf_counter()
            exact = np.asarray(ot.group_sinkhorn_divergences(values, codes, n_groups,
                                                             blur=blur)[0])
            exact_time = time.perf_counter() - start
            start = time.perf_counter()
            result = summarised_group_sinkhorn_divergences(values, codes, n_groups, blur=blur)
            summary_time = time.perf_counter() - start
            error = np.abs(result.divergences - exact)
            moved = result.moved + result.population_moved
            row = np.array([np.max(error) / values.var(), np.max(error / exact),
                            np.max(np.where(moved > 0, error / np.where(moved > 0, moved, 1),
                                            0.0))])
            worst = np.maximum(worst, row)
            print(f"{name:<50} {relative_blur:>5} {row[0]:>8.1e} {row[1]:>8.1e} {row[2]:>9.2f} "
                  f"{exact_time:>8.2f} {summary_time:>8.3f} {exact_time / summary_time:>6.0f}",
                  flush=True)
    print(f"worst: abs/var {worst[0]:.1e}, relative {worst[1]:.1e}, err/moved {worst[2]:.2f}")
    for n in sizes:
        summaries_at_scale(n, reference_atoms)
    distances_stage(sizes)


def summaries_at_scale(n: int, reference_atoms: int) -> None:
    """Summarised time (and error against finer summaries) at ``n`` pairs, 5 groups."""
    from fairvlm.ot._summaries import summarised_group_sinkhorn_divergences

    rng = np.random.default_rng(1)
    counts = [int(share * n) for share in LARGE_SHARES]
    counts[0] += n - sum(counts)
    print(f"\n{n:,} pairs, groups {counts}: summarised solve (exact: out of reach)")
    for kind in KINDS:
        values, codes = audit_statistic(kind, counts, 1.0, rng)
        for relative_blur in SUMMARY_BLURS:
            blur = relative_blur * values.std()
            start = time.perf_counter()
            result = summarised_group_sinkhorn_divergences(values, codes, len(counts), blur=blur)
            moved = (result.moved.max() + result.population_moved) / values.var()
            line = (f"  {kind:<10} blur {relative_blur:<4} {time.perf_counter() - start:6.2f} s, "
                    f"moved/var {moved:.1e}, S/var "
                    f"{np.array2string(result.divergences / values.var(), precision=4)}")
            if reference_atoms:
                finer = summarised_group_sinkhorn_divergences(
                    values, codes, len(counts), blur=blur, max_atoms=reference_atoms)
                error = np.abs(result.divergences - finer.divergences)
                line += (f"; vs {reference_atoms} atoms: abs/var {error.max() / values.var():.1e}, "
                         f"rel {np.max(error / finer.divergences):.1e}")
            print(line, flush=True)


def distances_stage(sizes: Sequence[int]) -> None:
    """The audit's distances stage (two statistics, default config) at each size, and at 2,000
    pairs exact (``sinkhorn_max_pairs`` 2,000) vs summarised (0)."""
    from dataclasses import replace

    from fairvlm.audit import STATISTICS, _group_distances
    from fairvlm.config import AuditConfig

    config = AuditConfig()

    def stage(n: int, stage_config: AuditConfig) -> float:
        rng = np.random.default_rng(2)
        counts = [int(share * n) for share in LARGE_SHARES]
        counts[0] += n - sum(counts)
        data = [audit_statistic(kind, counts, 1.0, rng) for kind in ("loss", "similarity")]
        start = time.perf_counter()
        for values, codes in data:
            _group_distances(values, codes, len(counts), stage_config)
        return time.perf_counter() - start

    print(f"\nThe audit's distances stage, {len(STATISTICS)} statistics, 5 groups, "
          f"{config.n_permutations} permutations, blur {config.blur}:")
    exact, summarised = stage(2000, config), stage(2000, replace(config, sinkhorn_max_pairs=0))
    print(f"  2,000 pairs: exact {exact:.2f} s, summarised {summarised:.2f} s "
          f"(ratio {exact / summarised:.1f})")
    for n in sizes:
        print(f"  {n:,} pairs: {stage(n, config):.2f} s (summarised)", flush=True)


if __name__ == "__main__":
    main()
