"""What the audit page computes and shows: the cached audit and its tables in words.

The audit is cached in memory by (data fingerprint, model fingerprint, config JSON): a widget
that only changes what is shown reruns the page without recomputing. A setting that changes
the numbers reruns :func:`fairvlm.audit.run_audit` with one :class:`fairvlm.memo.Memo` shared
by every session, so only the stages that read the changed setting are computed again (a new
minimum group size recomputes the metric report of the attributes on screen, not the scores or
the distribution distances), from the embeddings cached on disk
(:func:`fairvlm.scoring.compute_embeddings`), never the embeddings themselves. After an audit
is shown, the table's other attributes are audited under the same settings in a background
thread (:func:`warm_up_other_attributes`), so picking another attribute is a memo hit too.

Tables show every number as text: an undefined value reads ``undefined`` (never 0 or a
blank) and its reason stands in the table's ``note`` column, so a narrow value column cuts
nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd
import streamlit as st

from fairvlm.audit import AuditResult, DistributionView, run_audit
from fairvlm.config import AuditConfig, threshold_label
from fairvlm.data import PairTable
from fairvlm.errors import FairVLMError
from fairvlm.memo import Memo
from fairvlm.metrics import AttributeReport, Estimate
from fairvlm.models import LoadedModel
from fairvlm.report import HEADLINE_METRICS, MINIMUM_INTERVAL, group_note, headline_label
from fairvlm.scoring import embedding_cache_path

CONFIG_KEY = "audit.config"
AUDITED_KEY = "audit.for"
UNDEFINED = "undefined"
# Under the fairness-metrics table: what each metric means.
METRIC_MEANINGS = (
    "Over the groups shown: ES-accuracy scales accuracy like ES-AUC; demographic parity "
    "difference (DPD) = max − min of the groups' selection rates P(ŷ = 1 | g); equalized odds "
    "difference (DEOdds) = the larger of the TPR gap and the FPR gap, over the groups where "
    "each rate is defined; fairlearn's convention counts an undefined rate as 0 (the two agree "
    "when every rate is defined). 0 means no gap; gap intervals are simultaneous; "
    f"{MINIMUM_INTERVAL}.")
_AUDITS_KEPT = 8
_STAGES_KEPT = 64


@st.cache_resource(show_spinner=False)
def stage_memo() -> Memo:
    """The audit stages' memo, one per server (shared by all sessions, read-only values)."""
    return Memo(max_entries=_STAGES_KEPT)


@st.cache_resource(max_entries=_AUDITS_KEPT, show_spinner=False)
def cached_audit(data_fingerprint: str, model_fingerprint: str, config_json: str,
                 _table: PairTable, _loaded: LoadedModel) -> AuditResult:
    """:func:`fairvlm.audit.run_audit` of the table and model with these fingerprints.

    The result is shared by every session (read-only); errors are not cached.
    """
    return run_audit(_table, _loaded, AuditConfig.from_json(config_json), memo=stage_memo())


class WarmUp:
    """One background worker that audits the other attributes of the latest request.

    A request (:meth:`request`) names a table, a model and the settings on screen; the worker
    audits every other single attribute under those settings into :func:`stage_memo` (the
    results are dropped, the stages kept), so that choosing another attribute next is a memo
    hit. Only the newest pending request is kept: settings changed in a row do not queue
    work for settings nobody looks at any more, and a request already served is skipped.
    """

    def __init__(self, served_kept: int = 64) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[PairTable, LoadedModel, AuditConfig] | None = None
        self._served: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._served_kept = served_kept
        self._idle = threading.Event()
        self._idle.set()

    def request(self, table: PairTable, loaded: LoadedModel, config: AuditConfig) -> None:
        """Audit ``table``'s attributes other than ``config``'s in the background."""
        key = (table.fingerprint(), loaded.fingerprint, config.to_json(indent=None))
        with self._lock:
            if key in self._served:
                return
            self._served[key] = None
            while len(self._served) > self._served_kept:
                self._served.popitem(last=False)
            self._pending = (table, loaded, config)
            if self._idle.is_set():  # no worker running: start one
                self._idle.clear()
                threading.Thread(target=self._work, name="fairvlm-audit-warm-up",
                                 daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no request is pending or running; whether that happened in time."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            with self._lock:
                job, self._pending = self._pending, None
                if job is None:
                    self._idle.set()
                    return
            table, loaded, config = job
            on_screen = set(config.attribute_parts())
            for name in table.attributes:
                if (name,) in on_screen:
                    continue
                try:
                    run_audit(table, loaded, replace(config, attributes=(name,)),
                              memo=stage_memo())
                except FairVLMError:  # e.g. a single group: shown when the user picks it
                    continue


@st.cache_resource(show_spinner=False)
def warm_up() -> WarmUp:
    """The server's one :class:`WarmUp` worker."""
    return WarmUp()


def warm_up_other_attributes(table: PairTable, loaded: LoadedModel,
                             config: AuditConfig) -> None:
    """Audit the table's other attributes in the background (:class:`WarmUp`)."""
    warm_up().request(table, loaded, config)


def audit(table: PairTable, loaded: LoadedModel, config: AuditConfig) -> AuditResult:
    """The cached audit of ``table`` by ``loaded`` under ``config``, with a spinner."""
    embedded = embedding_cache_path(loaded, table).is_file()
    message = ("Auditing ..." if embedded else
               f"Embedding {len(table):,} pairs (once for this data set and model; cached on "
               "disk), then auditing ...")
    with st.spinner(message):
        return cached_audit(table.fingerprint(), loaded.fingerprint, config.to_json(indent=None),
                            table, loaded)


def chosen_prompts(loaded: LoadedModel) -> Mapping[int, Sequence[str]]:
    """The zero-shot prompts of the audit on screen for ``loaded``, else the model's defaults.

    The bad-pair detectors use them too, so both pages read the note and the image alike.
    """
    config = st.session_state.get(CONFIG_KEY)
    audited = st.session_state.get(AUDITED_KEY, ("", ""))
    if config is not None and config.prompts and audited[1] == loaded.fingerprint:
        return config.prompts
    return loaded.default_prompts


def prompt_lines(text: str) -> list[str]:
    """One prompt per non-blank line of ``text``, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def prompt_text(prompts: Mapping[int, Sequence[str]], label: int) -> str:
    """The prompts of class ``label``, one per line (empty when the class has none)."""
    return "\n".join(prompts.get(label, ()))


def number(value: float | None, note: str = "", spec: str = ".3f") -> str:
    """``value`` formatted, or ``undefined`` with its reason when it is ``None``."""
    if value is None:
        return f"{UNDEFINED} ({note})" if note else UNDEFINED
    return format(value, spec)


def interval(estimate: Estimate) -> str:
    """``low – high`` of the bootstrap interval, or empty without one."""
    if estimate.ci_low is None or estimate.ci_high is None:
        return ""
    return f"{estimate.ci_low:.3f} – {estimate.ci_high:.3f}"


def headline_tiles(report: AttributeReport
                   ) -> list[tuple[str, Estimate, str | None, str]]:
    """The four headline tiles: ``(label, estimate, group named in the caption, meaning)``."""
    return [
        ("AUC", report.auc, None, "Overall AUC over every pair of the split."),
        ("ES-AUC", report.es_auc, None, "Equity-scaled AUC: AUC / (1 + Σ_g |AUC_g − AUC|) over "
         "the groups shown; equals the AUC when every group does equally well."),
        ("Worst-group AUC", report.worst_group_auc, report.worst_group,
         "The lowest AUC of a group shown. Its interval is the bootstrap interval of the "
         "minimum over the groups (each resample's lowest group AUC, whichever group that "
         "is), not the named group's own interval: that one is in the Groups table."),
        ("AUC gap", report.auc_gap, None, "Highest minus lowest group AUC; its interval is "
         "simultaneous, so one that excludes 0 is more than bootstrap noise."),
    ]


def tile_caption(estimate: Estimate, group: str | None = None) -> str:
    """The line under a headline tile: ``95% CI low – high``, ``no interval``, or
    ``undefined: <reason>`` (the tile itself then shows a dash).

    With ``group`` (the worst-group tile) the line reads ``lowest: <group> · 95% CI of the
    minimum low – high``: the interval is the minimum's over the groups, not the group's own.
    """
    if estimate.value is None:
        detail = f"{UNDEFINED}: {estimate.note}" if estimate.note else UNDEFINED
    else:
        ci = interval(estimate)
        of = " of the minimum" if group else ""
        detail = f"95% CI{of} {ci}" if ci else "no interval"
    return f"lowest: {group} · {detail}" if group else detail


def small_group_hint(report: AttributeReport, min_n: int) -> str | None:
    """What to do about groups left out of the summary for being smaller than ``min_n``.

    ``None`` when no group with pairs is below ``min_n``. Otherwise one line naming each such
    group with its n, saying what it is left out of (and that the comparisons are undefined
    when fewer than two groups remain), and the minimum group size that would include them.
    """
    small = [group for group in report.groups if 0 < group.n < min_n]
    if not small:
        return None
    names = ", ".join(f"{group.name} (n = {group.n:,})" for group in small)
    verb, pronoun = ("is", "it") if len(small) == 1 else ("are", "them")
    line = (f"{names} {verb} below the minimum group size ({min_n:,}) and left out of ES-AUC, "
            "worst-group AUC, the gaps, DPD and DEOdds.")
    if sum(group.shown for group in report.groups) < 2:
        line += " With fewer than two groups left, those comparisons are undefined."
    smallest = min(group.n for group in small)
    return (f"{line} Set Minimum group size to {smallest:,} to include {pronoun} (expect wide "
            "intervals).")


def headline_table(report: AttributeReport) -> pd.DataFrame:
    """One row per summary metric: ``metric, value, 95% CI, note``.

    An undefined value reads ``undefined``; its reason (like any other note) is in ``note``.
    """
    rows = []
    for key, label in HEADLINE_METRICS:
        estimate: Estimate = getattr(report, key)
        rows.append({"metric": headline_label(key, label, report),
                     "value": number(estimate.value), "95% CI": interval(estimate),
                     "note": estimate.note})
    return pd.DataFrame(rows)


def group_table(report: AttributeReport) -> pd.DataFrame:
    """One row per group: n, positives, AUC with its interval, rates at the threshold, note.

    A group whose AUC is undefined reads ``undefined``; ``note`` says why, merged with the
    group's own note (:func:`fairvlm.report.group_note`).
    """
    return pd.DataFrame([{
        "group": group.name, "n": group.n, "positives": group.positives,
        "AUC": number(group.auc.value), "95% CI": interval(group.auc),
        "TPR": number(group.tpr), "FPR": number(group.fpr),
        "selection rate": number(group.selection_rate), "accuracy": number(group.accuracy),
        "note": group_note(group),  # says when the group is hidden from the summary
    } for group in report.groups])


def distance_table(view: DistributionView) -> pd.DataFrame:
    """One row per group: n, mean and median of the statistic, Sinkhorn S, W2^2/2, p-value."""
    no_pairs = "no pairs"
    return pd.DataFrame([{
        "group": group.group, "n": group.n,
        "mean": number(group.mean, no_pairs), "median": number(group.median, no_pairs),
        "Sinkhorn S": number(group.sinkhorn, no_pairs, ".3g"),
        "W₂²/2": number(group.w2, no_pairs, ".3g"),
        "p-value": number(group.p_value, "no permutations" if group.n else no_pairs),
    } for group in view.groups])


def threshold_line(result: AuditResult) -> str:
    """``Threshold 0.42: Youden's J on validation (1,000 pairs of val).`` (the method's
    :func:`~fairvlm.config.threshold_label`), or ``Threshold 0.5 (fixed).``"""
    threshold = result.threshold
    if threshold.chosen_on is None:
        return f"Threshold {threshold.value:.3g} (fixed)."
    return (f"Threshold {threshold.value:.3g}: {threshold_label(threshold.method)} "
            f"({threshold.n_chosen_on:,} pairs of {threshold.chosen_on}).")
