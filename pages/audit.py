"""Audit: how the model does for each group of one attribute, with intervals and distributions."""

from __future__ import annotations

import streamlit as st

from fairvlm import plots, report
from fairvlm.audit import AttributeAudit, AuditResult
from fairvlm.config import (
    INTERSECTION_SEPARATOR,
    SCORERS,
    THRESHOLD_METHODS,
    AuditConfig,
    attribute_label,
    threshold_label,
)
from fairvlm.data import PairTable
from fairvlm.data.table import SPLITS
from fairvlm.errors import FairVLMError
from fairvlm.models import LoadedModel
from fairvlm.scoring import CLASS_NAMES
from fairvlm.ui import audit_view, current, data_table
from fairvlm.ui.audit_view import AUDITED_KEY, CONFIG_KEY, prompt_lines, prompt_text
from fairvlm.ui.feedback import show_error, user_errors
from fairvlm.ui.text import plain

WIDGET_KEYS = ("audit.attributes", "audit.split", "audit.scorer", "audit.threshold",
               "audit.min_n", "audit.bootstrap", "audit.n_bootstrap", "audit.n_permutations",
               "audit.prompts.1", "audit.prompts.0")
SCORER_LABELS = {"zero-shot": "zero-shot (class prompts)",
                 "linear-probe": "linear probe (fit on train)"}
DEFAULT_BOOTSTRAP = 1000
STATISTICS = {"loss": "per-pair loss", "similarity": "image-text similarity"}
GROUP_WIDTH_PX = 140  # "Black & Female" in full; longer intersection names are cut
CI_WIDTH_PX = 115  # "0.871 – 0.947" in full
VALUE_WIDTH_PX = 90  # "undefined" in full (its reason is in the note column)
METRIC_WIDTH_PX = 300  # the longest metric name but fairlearn's convention's, in full


def main() -> None:
    st.title("Audit")
    st.caption("How the model scores glaucoma for each group: AUC with bootstrap intervals, "
               "fairness gaps, ROC curves, and how far each group's per-pair loss and "
               "similarity distributions lie from everyone's.")
    chosen = current.table_and_model()
    if chosen is None:
        return
    table, loaded = chosen
    if not table.attributes:
        st.info("These data have no protected attributes: name the attribute columns when "
                "loading a manifest on the Data & model page.")
        return
    settings(table, loaded)
    config = st.session_state.get(CONFIG_KEY)
    if config is None:
        return
    with user_errors():
        result = audit_view.audit(table, loaded, config)
        show(result)
        audit_view.warm_up_other_attributes(table, loaded, config)


def settings(table: PairTable, loaded: LoadedModel) -> None:
    """The settings form; submitting it stores a new audit config in the session.

    The stored config is the one source of truth: the form's widgets start from it (so they
    show the settings of the audit on screen, also after visiting another page), and it is
    dropped when the data set or the model changes.
    """
    attributes = list(table.attributes)
    splits = [split for split in SPLITS if table.split_indices(split).size]
    _forget_on_change(table, loaded)
    config = st.session_state.get(CONFIG_KEY) or _default_config(table, loaded, splits)
    _seed_widgets(config, loaded)
    with st.form("audit.settings", border=True):
        # Three rows of at most three fields, so no label or value is cut at 1,024 px.
        top = st.columns([3, 2])
        chosen = top[0].multiselect(
            "Attribute", attributes, key="audit.attributes",
            help="One attribute, or several for their intersection (e.g. race and gender "
                 "give groups such as Black & Female). None: every attribute, one by one.")
        scorer = top[1].selectbox("Scorer", SCORERS, format_func=SCORER_LABELS.get,
                                  key="audit.scorer")
        middle = st.columns([2, 3, 2])
        split = middle[0].selectbox("Split", splits, key="audit.split")
        threshold = middle[1].selectbox(
            "Threshold", THRESHOLD_METHODS, key="audit.threshold",
            format_func=threshold_label,
            help="The decision threshold for accuracy, TPR/FPR, DPD and DEOdds (AUCs use "
                 "none). Youden's J and F1 are chosen on the validation split.")
        min_n = middle[2].number_input(
            "Minimum group size", min_value=1, key="audit.min_n",
            help="Smaller groups are listed but left out of the summary metrics, with a note.")
        bottom = st.columns(3, vertical_alignment="bottom")
        bootstrap = bottom[0].toggle("Bootstrap CIs", key="audit.bootstrap",
                                     help="95% intervals from resampling the pairs.")
        n_bootstrap = bottom[1].number_input("Resamples", min_value=10, max_value=10_000,
                                             step=100, key="audit.n_bootstrap")
        n_permutations = bottom[2].number_input(
            "Permutations", min_value=0, max_value=2000, step=50, key="audit.n_permutations",
            help="Shuffles of the group labels for the p-value of each distribution "
                 "distance (0: none).")
        with st.expander("Zero-shot prompts (one per line)"):
            left, right = st.columns(2)
            positive = left.text_area(f"Class 1: {CLASS_NAMES[1]}", key="audit.prompts.1")
            negative = right.text_area(f"Class 0: {CLASS_NAMES[0]}", key="audit.prompts.0")
            st.caption("Used by the zero-shot scorer; several prompts per class are averaged "
                       "(a prompt ensemble). Defaults come from the model.")
        submitted = st.form_submit_button("Run audit", type="primary", key="audit.run")
    if not submitted and CONFIG_KEY in st.session_state:
        return
    try:
        prompts = ({1: prompt_lines(positive), 0: prompt_lines(negative)}
                   if scorer == "zero-shot" else None)
        st.session_state[CONFIG_KEY] = AuditConfig(
            attributes=(INTERSECTION_SEPARATOR.join(chosen),) if chosen else (),
            split=split, scorer=scorer, prompts=prompts, threshold=threshold,
            min_n=int(min_n), n_bootstrap=int(n_bootstrap) if bootstrap else 0,
            n_permutations=int(n_permutations))
    except FairVLMError as error:
        show_error(error)


def _default_config(table: PairTable, loaded: LoadedModel, splits: list[str]) -> AuditConfig:
    """The first attribute on the test split (or the first split present), model prompts."""
    return AuditConfig(attributes=(next(iter(table.attributes)),),
                       split="test" if "test" in splits else splits[0],
                       prompts=loaded.default_prompts or None)


def _forget_on_change(table: PairTable, loaded: LoadedModel) -> None:
    """Drop the stored config and the form's values when the data set or the model changed."""
    now = (table.fingerprint(), loaded.fingerprint)
    if st.session_state.get(AUDITED_KEY) == now:
        return
    for key in (CONFIG_KEY, *WIDGET_KEYS):
        st.session_state.pop(key, None)
    st.session_state[AUDITED_KEY] = now


def _seed_widgets(config: AuditConfig, loaded: LoadedModel) -> None:
    """Start every form widget that has no value yet from ``config``."""
    prompts = config.prompts or loaded.default_prompts
    values = {
        "audit.attributes": [part for spec in config.attribute_parts() for part in spec],
        "audit.split": config.split, "audit.scorer": config.scorer,
        "audit.threshold": config.threshold, "audit.min_n": config.min_n,
        "audit.bootstrap": config.n_bootstrap > 0,
        "audit.n_bootstrap": config.n_bootstrap or DEFAULT_BOOTSTRAP,
        "audit.n_permutations": config.n_permutations,
        **{f"audit.prompts.{label}": prompt_text(prompts, label) for label in CLASS_NAMES},
    }
    for key, value in values.items():
        st.session_state.setdefault(key, value)


def show(result: AuditResult) -> None:
    """Every part of one audit result."""
    for line in result.warnings:
        st.warning(plain(line), icon=":material/warning:")
    for audited in result.attributes:
        st.subheader(f"By {plain(attribute_label(audited.name))}")
        st.info(plain(audited.summary), icon=":material/summarize:")
        headline(audited, result)
        charts(audited)
        tables(audited)
        distributions(audited, result)
    downloads(result)
    provenance(result)


def headline(audited: AttributeAudit, result: AuditResult) -> None:
    metrics = audited.report
    tiles = st.columns(4)
    for tile, (label, estimate, group, meaning) in zip(tiles, audit_view.headline_tiles(metrics),
                                                       strict=True):
        shown = data_table.MISSING if estimate.value is None else audit_view.number(estimate.value)
        tile.metric(label, shown, help=meaning)
        tile.caption(plain(audit_view.tile_caption(estimate, group)))
    overall = result.overall
    st.caption(f"{overall['n']:,} pairs in split {result.config.split}, "
               f"{overall['positives']:,} with glaucoma. {audit_view.threshold_line(result)}")
    hint = audit_view.small_group_hint(metrics, result.config.min_n)
    if hint:
        st.caption(f":material/tips_and_updates: {plain(hint)}")


def charts(audited: AttributeAudit) -> None:
    left, right = st.columns(2)
    left.plotly_chart(plots.group_auc_figure(audited.report), key=f"audit.auc.{audited.name}")
    right.plotly_chart(plots.roc_figure(audited.report), key=f"audit.roc.{audited.name}")


def tables(audited: AttributeAudit) -> None:
    st.markdown("**Groups**")
    data_table.show(audit_view.group_table(audited.report), column_config={
        "group": st.column_config.TextColumn(width=GROUP_WIDTH_PX, pinned=True),
        "n": st.column_config.NumberColumn(format="localized"),
        "positives": st.column_config.NumberColumn(format="localized"),
        "AUC": st.column_config.TextColumn(width=VALUE_WIDTH_PX),
        "95% CI": st.column_config.TextColumn(width=CI_WIDTH_PX),
        "note": st.column_config.TextColumn(width="large")})
    for note in audited.report.notes:
        st.caption(f"Note: {plain(note)}")
    st.caption("TPR, FPR, selection rate and accuracy are at the threshold above.")
    st.markdown("**Fairness metrics**")
    data_table.show(audit_view.headline_table(audited.report), column_config={
        "metric": st.column_config.TextColumn(width=METRIC_WIDTH_PX, pinned=True),
        "value": st.column_config.TextColumn(width=VALUE_WIDTH_PX),
        "95% CI": st.column_config.TextColumn(width=CI_WIDTH_PX),
        "note": st.column_config.TextColumn(width="large")})
    st.caption(audit_view.METRIC_MEANINGS)


def distributions(audited: AttributeAudit, result: AuditResult) -> None:
    st.markdown("**Loss and similarity distributions**")
    st.caption("Per group, the Sinkhorn divergence S and the exact W₂²/2 between the group's "
               "distribution and all pairs' (what the fairness-aware fine-tune pulls toward 0), "
               "and the permutation p-value: the share of random relabellings of the groups "
               "giving a divergence at least as large. A small p means more than noise.")
    statistic = st.segmented_control("Distribution of", list(STATISTICS), default="loss",
                                     format_func=STATISTICS.get,
                                     key=f"audit.statistic.{audited.name}") or "loss"
    view = next(v for v in audited.distributions if v.statistic == statistic)
    st.plotly_chart(plots.distribution_figure(result.predictions, view),
                    key=f"audit.distribution.{audited.name}")
    data_table.show(audit_view.distance_table(view))
    st.caption(f"Sinkhorn blur {view.blur:.3g} (ε = blur²), {view.n_permutations} "
               f"permutations, population {view.population_n:,} pairs.")


def downloads(result: AuditResult) -> None:
    st.subheader("Download")
    stem = f"fairvlm-audit-{result.fingerprints['data'][:8]}-{result.fingerprints['config'][:8]}"
    columns = st.columns(3)
    columns[0].download_button(report.METRICS_FILE, result.to_json, file_name=f"{stem}.json",
                               mime="application/json", icon=":material/data_object:",
                               key="audit.download.metrics")
    columns[1].download_button(report.PREDICTIONS_FILE,
                               lambda: result.predictions.to_csv(index=False),
                               file_name=f"{stem}-predictions.csv", mime="text/csv",
                               icon=":material/table:", key="audit.download.predictions")
    columns[2].download_button(report.REPORT_FILE, lambda: report.render_html(result),
                               file_name=f"{stem}-report.html", mime="text/html",
                               icon=":material/description:", key="audit.download.report")


def provenance(result: AuditResult) -> None:
    with st.expander("Settings, fingerprints and versions"):
        st.json(result.config.to_dict(), expanded=False)
        st.markdown("\n".join(f"- {name}: `{value}`"
                              for name, value in sorted(result.fingerprints.items())))
        st.caption(" · ".join(f"{name} {version}"
                              for name, version in sorted(result.versions.items())))


main()
