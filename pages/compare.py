"""Compare & report: several models on the same data, side by side, with one download."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from fairvlm import compare, jobs, plots
from fairvlm.compare import DELTA_MEANING, ComparedModel, Comparison
from fairvlm.config import AuditConfig
from fairvlm.data import PairTable
from fairvlm.data.table import SPLITS
from fairvlm.errors import FairVLMError
from fairvlm.metrics import DEFAULT_MIN_N
from fairvlm.ui import audit_view, current, data_table, state
from fairvlm.ui.feedback import show_error, user_errors
from fairvlm.ui.text import plain

CURRENT = "current"
RESULT_KEY = "compare.result"
DEFAULT_BOOTSTRAP = 1000
STATISTICS = {"loss": "per-pair loss", "similarity": "image-text similarity"}
BETTER = "background-color: #dafbe1; color: #116329"
WORSE = "background-color: #ffebe9; color: #a40e26"
ESTIMATE_WIDTH_PX = 170  # "+0.012 [-0.004, +0.027]" in full; a long model label is cut
METRIC_WIDTH_PX = 170  # "AUC Married or partnered"


@dataclass(frozen=True)
class Choice:
    """A model the user can pick: its column label, spec, origin and, for the model in use,
    the architecture chosen for its checkpoint file (None: read or inferred from the file)."""

    label: str
    spec: str
    origin: dict
    arch: str | None = None


def main() -> None:
    st.title("Compare & report")
    st.caption("Audit two or more models on the same data and split, side by side: AUC, "
               "ES-AUC, DPD, DEOdds and each group's AUC with bootstrap intervals, the change "
               "from the first model (the baseline), and how each group's loss distribution "
               "moved. One download holds the HTML report and the numbers as JSON.")
    table = None
    with user_errors():
        table = current.current_table()
    if table is None:
        return
    if not table.attributes:
        st.info("These data have no protected attributes: name the attribute columns when "
                "loading a manifest on the Data & model page.")
        return
    choices = model_choices()
    settings(table, choices)
    comparison = st.session_state.get(RESULT_KEY)
    if comparison is not None and comparison.baseline.result.fingerprints["data"] == \
            table.fingerprint():
        show(comparison)


def model_choices() -> dict[str, Choice]:
    """The model in use and the selected checkpoint of every finished run, by key."""
    in_use = state.model_choice()
    choices = {CURRENT: Choice(f"in use: {compare.short_label(in_use.spec)}", in_use.spec,
                               {"kind": "model"}, in_use.arch)}
    for run in jobs.finished_runs():
        choices[str(run.checkpoint)] = Choice(f"run {run.name}", str(run.checkpoint),
                                              compare.run_origin(run))
    return choices


def settings(table: PairTable, choices: dict[str, Choice]) -> None:
    """Which models, attributes and split; submitting computes and stores the comparison."""
    in_use = choices[CURRENT].spec
    default = [CURRENT, *[key for key in choices if key not in (CURRENT, in_use)][:1]]
    splits = [split for split in SPLITS if table.split_indices(split).size]
    with st.form("compare.settings"):
        picked = st.multiselect(
            "Models (the first is the baseline)", list(choices), default=default,
            format_func=lambda key: choices[key].label, key="compare.models",
            help="The model in use (Data & model page) and the checkpoint each finished "
                 "fine-tune selected on validation.")
        others = st.text_area(
            "More checkpoints or specs, one per line", key="compare.other_specs", height=80,
            placeholder="/path/to/model.safetensors\nViT-B-16:openai")
        row = st.columns([4, 1, 1, 1])
        attributes = row[0].multiselect("Attributes", list(table.attributes),
                                        default=list(table.attributes),
                                        key="compare.attributes",
                                        help="None: every attribute.")
        split = row[1].selectbox("Split", splits, key="compare.split",
                                 index=splits.index("test") if "test" in splits else 0)
        min_n = row[2].number_input("Minimum group size", min_value=1, value=DEFAULT_MIN_N,
                                    key="compare.min_n", help="Smaller groups are listed "
                                    "but left out of ES-AUC, DPD and DEOdds.")
        n_bootstrap = row[3].number_input("Bootstrap resamples", min_value=0, max_value=10_000,
                                          value=DEFAULT_BOOTSTRAP, step=100,
                                          key="compare.n_bootstrap")
        submitted = st.form_submit_button("Compare", type="primary",
                                          icon=":material/compare_arrows:", key="compare.run")
    if not submitted:
        return
    chosen = [choices[key] for key in picked]
    chosen += [Choice(compare.short_label(spec), spec, {"kind": "model"})
               for spec in (line.strip() for line in others.splitlines()) if spec]
    try:
        config = AuditConfig(attributes=tuple(attributes), split=split, min_n=int(min_n),
                             n_bootstrap=int(n_bootstrap))
        st.session_state[RESULT_KEY] = run_comparison(table, _unique_labels(chosen), config)
    except FairVLMError as error:
        st.session_state.pop(RESULT_KEY, None)
        show_error(error)


def _unique_labels(chosen: list[Choice]) -> list[Choice]:
    """Number repeated labels (``name``, ``name #2`` ...) so every column has its own."""
    labels = compare.numbered_labels([choice.label for choice in chosen])
    return [replace(choice, label=label) for choice, label in zip(chosen, labels, strict=True)]


def run_comparison(table: PairTable, chosen: list[Choice], config: AuditConfig) -> Comparison:
    """Load and audit every chosen model (audits cached by fingerprints), then compare."""
    device = state.model_choice().device
    models = []
    progress = st.progress(0.0, text="Auditing the models ...")
    try:
        for position, choice in enumerate(chosen):
            progress.progress(position / len(chosen), text=f"Auditing {plain(choice.label)} "
                              f"({position + 1} of {len(chosen)}) ...")
            result = audit_view.audit(table, current.load_spec(choice.spec, device, choice.arch),
                                      config)
            models.append(ComparedModel(choice.label, choice.spec, result, choice.origin))
    finally:
        progress.empty()
    return compare.compare(models)


def show(comparison: Comparison) -> None:
    """The side-by-side table, the figures per attribute and the download."""
    base = comparison.baseline
    st.subheader("Side by side")
    st.caption(f"Split {plain(base.result.config.split)} · baseline **{plain(base.label)}** · "
               f"values with 95% bootstrap intervals · {plain(DELTA_MEANING)}")
    table = comparison.side_by_side()
    estimates = {model.label: st.column_config.TextColumn(width=ESTIMATE_WIDTH_PX)
                 for model in comparison.models}
    changes = {compare.delta_column(model.label):  # pinned: in view on a narrow screen
               st.column_config.TextColumn(width=ESTIMATE_WIDTH_PX, pinned=True)
               for model in comparison.models[1:]}
    data_table.show(_styled(table, comparison.improvement()), height="content",
                    column_config={"metric": st.column_config.TextColumn(width=METRIC_WIDTH_PX,
                                                                         pinned=True),
                                   "n": st.column_config.NumberColumn(format="localized"),
                                   **estimates, **changes})
    for title, lines in (("Why {} value(s) are undefined", comparison.undefined_reasons()),
                         ("Notes on {} value(s)", comparison.value_notes())):
        if lines:
            with st.expander(title.format(len(lines))):
                for line in lines:
                    st.caption(plain(line))
    download(comparison)
    st.subheader("Group AUCs and loss distributions")
    for tab, attribute in zip(st.tabs(list(comparison.attributes)), comparison.attributes,
                              strict=True):
        with tab:
            figures(comparison, attribute)
    with st.expander("Models, settings, fingerprints"):
        st.json(comparison.to_dict()["models"], expanded=False)


def figures(comparison: Comparison, attribute: str) -> None:
    """Group AUCs of every model, and each model's distribution against the baseline's."""
    base = comparison.baseline
    reports = [model.result.attribute(attribute).report for model in comparison.models]
    st.plotly_chart(plots.compared_group_auc_figure(
        reports, [model.label for model in comparison.models]), key=f"compare.auc.{attribute}")
    statistic = st.segmented_control("Distribution of", list(STATISTICS), default="loss",
                                     format_func=STATISTICS.get,
                                     key=f"compare.statistic.{attribute}") or "loss"
    for model in comparison.models[1:]:
        st.plotly_chart(plots.before_after_figure(
            base.result.predictions, model.result.predictions,
            compare.distribution_view(base.result, attribute, statistic),
            compare.distribution_view(model.result, attribute, statistic),
            labels=(base.label, model.label)),
            key=f"compare.distribution.{attribute}.{model.label}")


def _styled(table: pd.DataFrame, improvement: pd.DataFrame) -> Styler:
    """Delta columns green where measurably better and red where measurably worse."""
    def colours(frame: pd.DataFrame) -> pd.DataFrame:
        styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for column in improvement.columns:
            styles[column] = improvement[column].map(
                lambda better: "" if better is None or pd.isna(better)
                else (BETTER if better else WORSE))
        return styles

    return table.style.apply(colours, axis=None)


def download(comparison: Comparison) -> None:
    stem = f"fairvlm-comparison-{comparison.created[:19].replace(':', '')}"
    st.download_button("Report (HTML + JSON, zip)", lambda: compare.comparison_files(comparison),
                       file_name=f"{stem}.zip", mime="application/zip",
                       icon=":material/download:", key="compare.download")


main()
