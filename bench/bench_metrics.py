"""Benchmark: a cached re-audit of 10,000 pairs, 4 attributes, 1,000 bootstrap resamples.

Times ``fairvlm.metrics.audit_attribute`` (overall and group AUC, ES-AUC, worst-group AUC, AUC
gap, accuracy, ES-Acc, DPD, DEOdds, each with bootstrap intervals) on the four attributes,
against fairlearn's ``MetricFrame(n_boot=..., ci_quantiles=...)`` computing the same per-group
metrics (ROC AUC, selection rate, TPR, FPR, accuracy) with the same number of resamples, in
the same process. MetricFrame recomputes every resample with pandas group-bys, so by default it
runs ``--fairlearn-resamples`` resamples and its time is extrapolated to 1,000 as (time without
bootstrap) + 1,000 x (time per resample), printed as such; pass ``--fairlearn-resamples 1000``
to time it in full. Wall time is what counts; CPU time is printed too because the machine may
be shared.

Usage: ``python bench/bench_metrics.py [--pairs 10000] [--resamples 1000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score

from fairvlm.metrics import audit_attribute

THRESHOLD = 0.5
ATTRIBUTES = {  # FairVLMed-like group shares; -1 is the unknown code
    "race": ({0: "Asian", 1: "Black", 2: "White"}, [0.08, 0.15, 0.77, 0.0]),
    "gender": ({0: "Female", 1: "Male"}, [0.56, 0.44, 0.0, 0.0]),
    "ethnicity": ({0: "Non-Hispanic", 1: "Hispanic"}, [0.92, 0.05, 0.0, 0.03]),
    "language": ({0: "English", 1: "Spanish", 2: "Other"}, [0.92, 0.03, 0.03, 0.02]),
}


def synthetic_audit_data(n_pairs: int, seed: int = 0):
    """Labels, probabilities and attribute codes shaped like a FairVLMed test split."""
    rng = np.random.default_rng(seed)
    codes = {name: rng.choice([0, 1, 2, -1], size=n_pairs, p=shares)
             for name, (_, shares) in ATTRIBUTES.items()}
    y = rng.integers(0, 2, n_pairs)
    separation = 1.6 - 0.5 * (codes["race"] == 1)
    probability = 1 / (1 + np.exp(-(rng.normal(size=n_pairs) + y * separation - 0.8)))
    return y, np.round(probability, 4), codes  # 4 decimals: realistic ties


def time_fairvlm(y, scores, codes, n_resamples: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for auditing every attribute."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for name, (group_names, _) in ATTRIBUTES.items():
        audit_attribute(y, scores, codes[name], group_names=group_names, attribute=name,
                        threshold=THRESHOLD, n_bootstrap=n_resamples, seed=0)
    return time.perf_counter() - start, time.process_time() - start_cpu


def _thresholded(metric):
    def wrapped(y_true, y_score):
        return metric(y_true, np.asarray(y_score) >= THRESHOLD)
    return wrapped


FAIRLEARN_METRICS = {
    "auc": roc_auc_score, "selection_rate": _thresholded(selection_rate),
    "tpr": _thresholded(true_positive_rate), "fpr": _thresholded(false_positive_rate),
    "accuracy": _thresholded(accuracy_score),
}


def time_fairlearn(y, scores, codes, n_resamples: int) -> float:
    """Wall seconds for MetricFrame on every attribute; 0 resamples: no bootstrap."""
    bootstrap = {"n_boot": n_resamples, "ci_quantiles": [0.025, 0.975], "random_state": 0}
    start = time.perf_counter()
    for name in ATTRIBUTES:
        frame = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y, y_pred=scores,
                            sensitive_features=codes[name], **(bootstrap if n_resamples else {}))
        if n_resamples:
            frame.difference_ci()
    return time.perf_counter() - start


def largest_difference_from_fairlearn(y, scores, codes) -> float:
    """Both sides compute the same per-group numbers: the largest absolute difference."""
    largest = 0.0
    for name, (group_names, _) in ATTRIBUTES.items():
        ours = audit_attribute(y, scores, codes[name], group_names=group_names, min_n=1,
                               threshold=THRESHOLD, n_bootstrap=0).to_frame()
        theirs = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=y, y_pred=scores,
                             sensitive_features=codes[name]).by_group
        theirs.index = [group_names.get(code, "unknown") for code in theirs.index]
        columns = list(FAIRLEARN_METRICS)
        difference = ours.set_index("group").loc[theirs.index, columns] - theirs[columns]
        largest = max(largest, float(difference.abs().to_numpy().max()))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1_000)
    parser.add_argument("--fairlearn-resamples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    y, scores, codes = synthetic_audit_data(args.pairs)
    time_fairvlm(y, scores, codes, 10)  # warm-up (imports, allocator)
    ours, ours_cpu = min(time_fairvlm(y, scores, codes, args.resamples)
                         for _ in range(args.repeats))
    theirs_fixed = time_fairlearn(y, scores, codes, 0)
    theirs_measured = time_fairlearn(y, scores, codes, args.fairlearn_resamples)
    per_resample = (theirs_measured - theirs_fixed) / args.fairlearn_resamples
    theirs = theirs_fixed + per_resample * args.resamples

    print(f"workload: {args.pairs} pairs, {len(ATTRIBUTES)} attributes, "
          f"{args.resamples} bootstrap resamples")
    print(f"fairvlm.metrics audit_attribute x{len(ATTRIBUTES)}: {ours:.2f} s wall, "
          f"{ours_cpu:.2f} s CPU (best of {args.repeats})")
    how = "measured" if args.fairlearn_resamples == args.resamples else (
        f"extrapolated: {theirs_fixed:.2f} s without bootstrap, {theirs_measured:.2f} s with "
        f"{args.fairlearn_resamples} resamples, {per_resample:.2f} s per resample")
    print(f"fairlearn MetricFrame(n_boot) x{len(ATTRIBUTES)}: {theirs:.1f} s wall ({how})")
    print(f"same per-group values as fairlearn: largest difference "
          f"{largest_difference_from_fairlearn(y, scores, codes):.1e}")
    print(f"ratio fairlearn / fairvlm: {theirs / ours:.0f}x; goal under 3 s: "
          f"{'met' if ours < 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
