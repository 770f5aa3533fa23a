"""An audit: how one model does for each group of one data set (METHOD.md, section 5).

:func:`run_audit` chains the library's parts on one table and one loaded model:

1. image and text embeddings of every pair (:func:`fairvlm.scoring.compute_embeddings`, cached
   on disk, so a re-audit with other settings does not run the model again);
2. ``p(glaucoma)`` for every pair: zero-shot from class prompts, or a linear probe fit on the
   training split;
3. the decision threshold: 0.5, or chosen on the validation split (Youden's J or best F1);
4. per attribute (or intersection) of the audited split: the metric report of
   :func:`fairvlm.metrics.audit_attribute` (AUC, ES-AUC, gaps, DPD, DEOdds, bootstrap CIs) and
   its plain-language summary (attributes in parallel threads, one per core: numpy and
   torch release the GIL in the heavy loops);
5. per-pair scores of the audited split (matched similarity, contrastive loss against the
   split's other pairs, rank, margin), and per group the distance of its loss and similarity
   distributions to the population's (:class:`DistributionView`).

The result (:class:`AuditResult`) is plain data plus a predictions frame; it records the data,
model and config fingerprints and the library versions that produced it.

Each slow stage goes through a ``memo`` (:data:`Memo`) under a key of the data and model
fingerprints and only the settings that stage reads: the probabilities (scorer, prompts), the
per-pair scores (split), each attribute's metric report (threshold, min-n, bootstrap) and its
distribution distances (split, blur, permutations; not min-n or the threshold). The app passes
a shared :class:`fairvlm.memo.Memo`, so changing one setting recomputes only the stages that
read it; the default computes everything.
"""

from __future__ import annotations

import functools
import json
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from fairvlm import __version__, ot
from fairvlm.config import FIXED_THRESHOLD, INTERSECTION_SEPARATOR, AuditConfig
from fairvlm.data.table import Attribute, PairTable
from fairvlm.errors import DataError
from fairvlm.metrics import (
    AttributeReport,
    audit_attribute,
    choose_threshold,
    intersect_groups,
    roc_auc,
)
from fairvlm.metrics import summarize as summarize_report
from fairvlm.metrics._groups import INTERSECTION_UNKNOWN_CODE
from fairvlm.models.loading import LoadedModel
from fairvlm.ot._summaries import MAX_ATOMS, VARIANCE_ERROR_BOUND
from fairvlm.scoring import (
    Embeddings,
    check_prompts,
    compute_embeddings,
    linear_probe,
    pair_scores,
    zero_shot_probabilities,
)

STATISTICS: tuple[str, ...] = ("loss", "similarity")
NULL_STATISTIC = "wasserstein"  # exact and O(N log N) per shuffle; Sinkhorn costs O(n_g N)
THRESHOLD_SPLIT = "val"
Memo = Callable[[tuple[Any, ...], Callable[[], Any]], Any]
"""``memo(key, compute)``: a stored value for ``key``, else ``compute()`` (maybe stored)."""
VERSIONED_PACKAGES: tuple[str, ...] = (
    "numpy", "pandas", "scipy", "scikit-learn", "torch", "open_clip_torch", "POT", "geomloss",
    "fairlearn", "plotly",
)


@dataclass(frozen=True)
class Threshold:
    """The decision threshold: predict glaucoma when ``p >= value``.

    ``method`` is ``"fixed"`` (0.5) or the criterion (``"youden"``, ``"f1"``) maximised on the
    ``chosen_on`` split of ``n_chosen_on`` pairs.
    """

    value: float
    method: str
    chosen_on: str | None = None
    n_chosen_on: int = 0


@dataclass(frozen=True)
class GroupDistance:
    """How far one group's distribution of a per-pair statistic is from the population's.

    ``sinkhorn`` is the debiased Sinkhorn divergence ``S_eps(D_g, D)`` (cost
    ``|x - y|^2 / 2``, ``eps = blur^2``; exact up to the config's ``sinkhorn_max_pairs``
    audited pairs, above it solved on summaries of both distributions, see
    :mod:`fairvlm.ot._summaries`), ``w2`` the exact 1-D ``W2^2(D_g, D) / 2`` (the
    ``blur -> 0`` limit of ``sinkhorn``), and ``p_value`` the permutation p-value of ``w2``:
    ``(1 + #{b : W^(b)_g >= W_g}) / (1 + B)`` over ``B`` shuffles of the group labels
    (``None`` without permutations). The null uses ``w2`` because it is exact and costs
    ``O(N log N)`` per shuffle, where a Sinkhorn solve costs ``O(n_g N)`` per iteration.
    Values are ``None`` for a group with no pairs. ``mean`` and ``median`` describe the
    group's values.
    """

    group: str
    n: int
    shown: bool
    mean: float | None
    median: float | None
    sinkhorn: float | None
    w2: float | None
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "n": self.n, "shown": self.shown, "mean": self.mean,
                "median": self.median, "sinkhorn": self.sinkhorn, "w2": self.w2,
                "p_value": self.p_value}


@dataclass(frozen=True)
class DistributionView:
    """Per group of one attribute, the distance of a statistic's distribution to the population.

    ``statistic`` is ``"loss"`` or ``"similarity"`` (columns of the predictions frame);
    ``blur`` the absolute Sinkhorn blur used: the config's relative blur times the population's
    standard deviation of the statistic, so one setting suits both scales.
    """

    attribute: str
    statistic: str
    blur: float
    n_permutations: int
    population_n: int
    groups: tuple[GroupDistance, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "statistic": self.statistic, "blur": self.blur,
                "n_permutations": self.n_permutations, "population_n": self.population_n,
                "groups": [group.to_dict() for group in self.groups]}


@dataclass(frozen=True)
class AttributeAudit:
    """Everything measured for one attribute (or intersection) of the audited split."""

    name: str
    report: AttributeReport
    summary: str
    distributions: tuple[DistributionView, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary,
                "metrics": self.report.to_dict(),
                "distributions": [view.to_dict() for view in self.distributions]}


@dataclass(frozen=True)
class AuditResult:
    """The outcome of :func:`run_audit`.

    Attributes
    ----------
    config
        The settings used.
    data, model
        What was audited: name, source, pair counts per split; spec, architecture, logit scale
        and the zero-shot prompts used (``None`` for the linear probe).
    overall
        The audited split's size, positives and AUC (``None`` with a reason when undefined).
    threshold
        The decision threshold and where it came from.
    attributes
        One :class:`AttributeAudit` per audited attribute.
    predictions
        One row per pair of the audited split: ``id, split, label, probability, prediction,
        similarity, loss, rank, margin``, then every attribute (and intersection) by group name.
    fingerprints
        ``data`` (:meth:`PairTable.fingerprint`), ``model`` (the weights) and ``config`` (the
        config with the zero-shot prompts actually used filled in) content fingerprints.
    versions
        fairvlm, Python and library versions.
    warnings
        One line per thing the audit skipped or could not compute.
    created
        ISO-8601 UTC time of the audit.
    """

    config: AuditConfig
    data: dict[str, Any]
    model: dict[str, Any]
    overall: dict[str, Any]
    threshold: Threshold
    attributes: tuple[AttributeAudit, ...]
    predictions: pd.DataFrame
    fingerprints: dict[str, str]
    versions: dict[str, str]
    warnings: tuple[str, ...]
    created: str

    def attribute(self, name: str) -> AttributeAudit:
        """The audit of attribute ``name``."""
        for audited in self.attributes:
            if audited.name == name:
                return audited
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Every number (not the predictions), as plain JSON-able data."""
        return {
            "created": self.created, "config": self.config.to_dict(), "data": self.data,
            "model": self.model, "overall": self.overall,
            "threshold": {"value": self.threshold.value, "method": self.threshold.method,
                          "chosen_on": self.threshold.chosen_on,
                          "n_chosen_on": self.threshold.n_chosen_on},
            "attributes": [audited.to_dict() for audited in self.attributes],
            "fingerprints": dict(self.fingerprints), "versions": dict(self.versions),
            "warnings": list(self.warnings),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON (undefined values are ``null``)."""
        return json.dumps(self.to_dict(), indent=indent)


def compute_now(key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """The :data:`Memo` that stores nothing: ``compute()``."""
    return compute()


def run_audit(table: PairTable, loaded_model: LoadedModel, config: AuditConfig | None = None, *,
              progress: bool = False, memo: Memo = compute_now) -> AuditResult:
    """Audit ``loaded_model`` on ``table`` (see the module docstring for the steps).

    ``memo`` stores the stages' results between calls (see the module docstring); its keys
    hold the data and model fingerprints, so one memo can serve several data sets and models.

    Raises
    ------
    DataError
        An attribute not in the data (the message lists the available ones), an explicitly
        named attribute with a single group in the split, an empty split, or a validation
        split with a single class when the threshold is chosen there.
    ConfigError
        Empty or malformed prompts.
    """
    config = config or AuditConfig()
    split_rows = table.split_indices(config.split)
    if split_rows.size == 0:
        raise DataError(f"{table.name}: split {config.split!r} has no pairs; expected one of "
                        f"the splits present: {', '.join(_present_splits(table))}")
    groupings, warnings = _groupings(table, config, split_rows)
    prompts = None
    if config.scorer == "zero-shot":
        prompts = check_prompts(config.prompts or loaded_model.default_prompts)

    @functools.cache
    def embeddings() -> Embeddings:  # read (or computed) once, only by the stages that miss
        return compute_embeddings(loaded_model, table, progress=progress)

    base = (table.fingerprint(), loaded_model.fingerprint)
    scorer_key = (*base, config.scorer, config.use_logit_scale, config.seed,
                  tuple(sorted((label, tuple(texts)) for label, texts in (prompts or {}).items())))
    probabilities = memo(("probabilities", *scorer_key), lambda: _probabilities(
        embeddings(), table, loaded_model, config, prompts))
    threshold = _threshold(table, probabilities, config)
    scores = memo(("pair_scores", *base, config.split),
                  lambda: pair_scores(embeddings(), table, split=config.split))
    labels, split_probabilities = table.labels[split_rows], probabilities[split_rows]
    predictions = _predictions(table, split_rows, split_probabilities, threshold, scores,
                               groupings)

    def audit_one(name: str) -> AttributeAudit:
        attribute, codes = groupings[name]
        return _audit_attribute(name, attribute, codes[split_rows], labels, split_probabilities,
                                scores, threshold, config, memo, base, scorer_key)

    with ThreadPoolExecutor(max_workers=min(len(groupings), os.cpu_count() or 1)) as pool:
        attributes = tuple(pool.map(audit_one, groupings))
    overall = _overall(labels, split_probabilities, threshold)
    largest = max(view.population_n for audited in attributes for view in audited.distributions)
    if largest > config.sinkhorn_max_pairs:
        warnings.append(_summaries_note(largest, config.sinkhorn_max_pairs))
    if bool(scores["sampled"].any()):
        sampled = int(scores["negatives"].max())
        warnings.append(f"per-pair loss, rank and margin of the {len(split_rows):,} pairs are "
                        f"estimated against {sampled:,} sampled notes of the split (exact up to "
                        f"{sampled + 1:,} pairs; fairvlm.scoring.pairs)")
    if overall["auc"] is None:
        warnings.append(f"AUC undefined: split {config.split!r} holds a single class "
                        f"({overall['n']} pairs, {overall['positives']} positive)")
    effective = replace(config, prompts=prompts) if prompts else config
    return AuditResult(
        config=config,
        data={"name": table.name, "source": table.source, "n_pairs": len(table),
              "split_sizes": {split: int(n) for split, n in
                              table.frame["split"].value_counts().sort_index().items()},
              "loader_warnings": list(table.warnings), "synthetic": table.synthetic},
        model={"spec": loaded_model.spec, "arch": loaded_model.arch,
               "device": loaded_model.device, "logit_scale": loaded_model.logit_scale,
               "prompts": ({str(k): v for k, v in prompts.items()} if prompts else None)},
        overall=overall,
        threshold=threshold,
        attributes=attributes,
        predictions=predictions,
        fingerprints={"data": base[0], "model": base[1], "config": effective.fingerprint()},
        versions=library_versions(),
        warnings=tuple(warnings),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _probabilities(embeddings: Embeddings, table: PairTable, loaded_model: LoadedModel,
                   config: AuditConfig, prompts: dict[int, list[str]] | None) -> np.ndarray:
    """``p(glaucoma)`` of every pair of the table: zero-shot from ``prompts``, or the probe."""
    if config.scorer == "zero-shot":
        return zero_shot_probabilities(loaded_model, embeddings.image, prompts,
                                       use_logit_scale=config.use_logit_scale)
    return linear_probe(embeddings, table, seed=config.seed)


def library_versions() -> dict[str, str]:
    """fairvlm's, Python's and the numerical libraries' versions (``"absent"`` if missing)."""
    versions = {"fairvlm": __version__, "python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def _present_splits(table: PairTable) -> list[str]:
    return sorted(set(table.frame["split"]))


def _groupings(table: PairTable, config: AuditConfig, split_rows: np.ndarray
               ) -> tuple[dict[str, tuple[Attribute, np.ndarray]], list[str]]:
    """Attribute (or intersection) and its codes for every row, by audited name.

    With no attributes configured, every attribute of the table is audited and one with a
    single group in the split is skipped with a warning; a named one is refused.
    """
    explicit = bool(config.attributes)
    parts_list = config.attribute_parts() if explicit else [(name,) for name in table.attributes]
    if not parts_list:
        raise DataError(f"{table.name}: the data have no protected attributes; expected at "
                        "least one attribute column to audit")
    groupings: dict[str, tuple[Attribute, np.ndarray]] = {}
    warnings: list[str] = []
    for parts in parts_list:
        name = INTERSECTION_SEPARATOR.join(parts)
        attribute, codes = _grouping(table, name, parts)
        present = _groups_present(attribute, codes[split_rows], config.unknown)
        if len(present) < 2:
            message = (f"attribute {name!r} has a single group ({', '.join(present) or 'none'})"
                       f" in split {config.split!r}; a fairness audit compares two or more")
            if explicit:
                raise DataError(f"{table.name}: {message}")
            warnings.append(f"{message}: skipped")
            continue
        groupings[name] = (attribute, codes)
    if not groupings:
        raise DataError(f"{table.name}: no attribute has two or more groups in split "
                        f"{config.split!r}; nothing to compare")
    return groupings, warnings


def _grouping(table: PairTable, name: str, parts: tuple[str, ...]
              ) -> tuple[Attribute, np.ndarray]:
    """The attribute ``parts[0]``, or the intersection of ``parts`` as one attribute."""
    attributes = [table.attribute(part) for part in parts]
    if len(parts) == 1:
        return attributes[0], table.group_codes(parts[0])
    codes, names = intersect_groups([table.group_codes(part) for part in parts],
                                    [attribute.groups for attribute in attributes],
                                    unknown_codes=[a.unknown_code for a in attributes])
    return Attribute(name, names, unknown_code=INTERSECTION_UNKNOWN_CODE), codes


def _groups_present(attribute: Attribute, codes: np.ndarray, unknown: str) -> list[str]:
    present = np.unique(codes)
    if unknown == "exclude":
        present = present[present != attribute.unknown_code]
    return [attribute.group_name(code) for code in present]


def _threshold(table: PairTable, probabilities: np.ndarray, config: AuditConfig) -> Threshold:
    if config.threshold == "fixed":
        return Threshold(FIXED_THRESHOLD, "fixed")
    rows = table.split_indices(THRESHOLD_SPLIT)
    if rows.size == 0:
        raise DataError(f"{table.name}: no validation pairs to choose the {config.threshold} "
                        "threshold on; expected a val split, or use threshold fixed")
    labels = table.labels[rows]
    if labels.min() == labels.max():
        raise DataError(f"{table.name}: the validation split holds only class {labels[0]} "
                        f"({rows.size} pairs); the {config.threshold} threshold needs both "
                        "classes, or use threshold fixed")
    value = choose_threshold(labels, probabilities[rows], method=config.threshold)
    return Threshold(value, config.threshold, THRESHOLD_SPLIT, int(rows.size))


def _predictions(table: PairTable, split_rows: np.ndarray, probabilities: np.ndarray,
                 threshold: Threshold, scores: pd.DataFrame,
                 groupings: dict[str, tuple[Attribute, np.ndarray]]) -> pd.DataFrame:
    rows = table.frame.iloc[split_rows]
    frame = pd.DataFrame({
        "id": rows["id"].astype(str).to_numpy(),
        "split": rows["split"].to_numpy(),
        "label": rows["label"].to_numpy(dtype=np.int64),
        "probability": probabilities,
        "prediction": (probabilities >= threshold.value).astype(np.int64),
    })
    for column in ("similarity", "loss", "rank", "margin"):
        frame[column] = scores[column].to_numpy()
    named = {name: (table.attribute(name), table.group_codes(name)) for name in table.attributes}
    for name, (attribute, codes) in {**named, **groupings}.items():
        frame[name] = attribute.names(codes[split_rows])
    return frame


def _audit_attribute(name: str, attribute: Attribute, codes: np.ndarray, labels: np.ndarray,
                     probabilities: np.ndarray, scores: pd.DataFrame, threshold: Threshold,
                     config: AuditConfig, memo: Memo, base: tuple[str, str],
                     scorer_key: tuple[Any, ...]) -> AttributeAudit:
    """The metric report and the distribution views of one attribute, each through ``memo``.

    ``base`` holds the data and model fingerprints; ``scorer_key`` identifies the
    probabilities (the report reads them; the distances read only the per-pair scores).
    """
    report = memo(
        ("report", name, config.split, config.unknown, threshold.value, threshold.method,
         config.min_n, config.n_bootstrap, *scorer_key),
        lambda: audit_attribute(
            labels, probabilities, codes, group_names=attribute.groups, attribute=name,
            unknown_code=attribute.unknown_code, unknown=config.unknown,
            threshold=threshold.value, threshold_method=threshold.method, min_n=config.min_n,
            n_bootstrap=config.n_bootstrap, seed=config.seed))
    group_of_code = {group.code: position for position, group in enumerate(report.groups)}
    row_group = np.array([group_of_code.get(int(code), -1) for code in codes], dtype=np.int64)
    views = []
    for statistic in STATISTICS:
        values = scores[statistic].to_numpy(dtype=np.float64)
        distances = memo(
            ("distances", name, config.split, config.unknown, statistic, config.blur,
             config.sinkhorn_max_pairs, config.n_permutations, config.seed, *base),
            lambda values=values: _group_distances(values, row_group, len(report.groups),
                                                   config))
        views.append(_distribution_view(name, statistic, distances, report, config))
    return AttributeAudit(name, report, summarize_report(report), tuple(views))


@dataclass(frozen=True)
class _GroupDistances:
    """Per group (position in the report): size, mean, median, Sinkhorn, W2^2/2, p-value;
    NaN where undefined. ``blur`` is absolute; ``population_n`` counts the audited rows."""

    blur: float
    population_n: int
    n: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    sinkhorn: np.ndarray
    w2: np.ndarray
    p_value: np.ndarray


def _group_distances(values: np.ndarray, row_group: np.ndarray, n_groups: int,
                     config: AuditConfig) -> _GroupDistances:
    """Sinkhorn divergence, ``W2^2/2`` and permutation p-value of every group's ``values``
    against all audited values (rows excluded as unknown are left out of both). The
    divergences are exact up to ``config.sinkhorn_max_pairs`` values, else solved on summaries
    (:func:`fairvlm.ot.summarised_group_sinkhorn_divergences`)."""
    kept = row_group >= 0
    values, row_group = values[kept], row_group[kept]
    spread = float(values.std())
    blur = config.blur * spread if spread > 0 else config.blur
    if values.size <= config.sinkhorn_max_pairs:
        sinkhorn, _ = ot.group_sinkhorn_divergences(values, row_group, n_groups, blur=blur,
                                                    min_count=1)
    else:
        sinkhorn = ot.summarised_group_sinkhorn_divergences(values, row_group, n_groups,
                                                            blur=blur).divergences
    w2, _ = ot.group_wasserstein_distances(values, row_group, n_groups, min_count=1)
    p_values = np.full(n_groups, np.nan)
    if config.n_permutations:
        p_values = ot.group_permutation_null(
            values, row_group, n_groups, statistic=NULL_STATISTIC,
            n_permutations=config.n_permutations, seed=config.seed, min_count=1).p_values
    members = [values[row_group == g] for g in range(n_groups)]
    n = np.array([m.size for m in members], dtype=np.int64)
    return _GroupDistances(
        blur=blur, population_n=int(values.size), n=n,
        mean=np.array([m.mean() if m.size else np.nan for m in members]),
        median=np.array([np.median(m) if m.size else np.nan for m in members]),
        sinkhorn=np.asarray(sinkhorn, dtype=np.float64), w2=np.asarray(w2, dtype=np.float64),
        p_value=np.where(n > 0, np.asarray(p_values, dtype=np.float64), np.nan))


def _summaries_note(n_pairs: int, max_pairs: int) -> str:
    """The note saying that the Sinkhorn divergences were solved on summaries, and how close
    to the exact solve that was measured to be."""
    return (f"Sinkhorn divergences of the {n_pairs:,} audited pairs (above sinkhorn_max_pairs = "
            f"{max_pairs:,}) are solved on summaries of each distribution by about "
            f"{MAX_ATOMS} weighted atoms: within {VARIANCE_ERROR_BOUND:g} times the "
            "statistic's variance of the exact solve as measured (bench/bench_sinkhorn.py "
            "--summaries), under 0.1% of any divergence above 0.01 times the variance; W2^2/2 "
            "and the p-values are exact")


def _distribution_view(attribute: str, statistic: str, distances: _GroupDistances,
                       report: AttributeReport, config: AuditConfig) -> DistributionView:
    """The distances as a view, each group marked shown or hidden as in ``report``."""
    groups = tuple(
        GroupDistance(group=group.name, n=int(distances.n[g]), shown=group.shown,
                      mean=_number(distances.mean[g]), median=_number(distances.median[g]),
                      sinkhorn=_number(distances.sinkhorn[g]), w2=_number(distances.w2[g]),
                      p_value=_number(distances.p_value[g]))
        for g, group in enumerate(report.groups))
    return DistributionView(attribute, statistic, distances.blur, config.n_permutations,
                            distances.population_n, groups)


def _overall(labels: np.ndarray, probabilities: np.ndarray, threshold: Threshold
             ) -> dict[str, Any]:
    """Size, positives, AUC and accuracy of the audited split (AUC ``None`` if one class)."""
    auc = roc_auc(labels, probabilities)
    correct = (probabilities >= threshold.value).astype(np.int64) == labels
    return {"n": int(labels.size), "positives": int(labels.sum()), "auc": _number(auc),
            "accuracy": float(correct.mean())}


def _number(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
