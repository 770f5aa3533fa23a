"""Fine-tune: start a fair, bad-pair-robust fine-tune in the background and follow it live."""

from __future__ import annotations

from dataclasses import fields

import streamlit as st

from fairvlm import jobs, runs
from fairvlm.data import PairTable
from fairvlm.decisions import DecisionFile
from fairvlm.errors import FairVLMError
from fairvlm.mining import MODES
from fairvlm.runs import RunDir
from fairvlm.train.config import SCOPES, SELECTION_METRICS, TrainConfig
from fairvlm.train.evaluation import SELECTION_LABELS
from fairvlm.train.losses import DISTANCES, FAIR_ON, STATISTICS
from fairvlm.train.training_data import excluded_training_rows
from fairvlm.ui import cache, current, data_table, run_monitor, state, tables
from fairvlm.ui.feedback import show_error, user_errors
from fairvlm.ui.state import AUTO_DEVICE, ModelChoice
from fairvlm.ui.text import plain

DEFAULTS = {field.name: field.default for field in fields(TrainConfig)}
DEMO_MODEL_LR = 1e-4
RUN_KEY = "fine_tune.run"
POLL_S = 2.0
LOG_LINES = 40
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/sync:",
               "done": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/cancel:", "interrupted": ":material/warning:",
               "unreadable": ":material/help:"}
STATISTIC_LABELS = {"loss": "loss (per-pair CLIP loss)", "similarity": "similarity (cosine)",
                    "reference": "reference (public code's statistic)"}
DBPM_LABELS = {"reweight": "reweight (bounded kernel)", "drop": "drop flagged pairs",
               "off": "off"}
SCOPE_LABELS = {"full": "full model", "last-k": "last k blocks + projections",
                "projections": "projections only (fastest)"}


def main() -> None:
    st.title("Fine-tune")
    st.caption("Fine-tune the model in use with the fairness term (each group's per-pair loss "
               "distribution pulled toward everyone's) and Dynamic Bad Pair Mining. The run "
               "is a separate process: it goes on if you leave this page or close the "
               "browser.")
    chosen = current.table_and_model()
    if chosen is not None:
        table = chosen[0]
        if table.attributes:
            new_run_form(table)
        else:
            st.info("These data have no protected attributes: name the attribute columns when "
                    "loading a manifest on the Data & model page.")
    st.divider()
    run_list()


def new_run_form(table: PairTable) -> None:
    """The settings (METHOD.md defaults) and the one button that starts the run."""
    model = state.model_choice()
    book = DecisionFile(table.fingerprint())
    exclusions = []
    with user_errors():
        exclusions = book.exclusions()
    attributes = list(table.attributes)
    with st.form("fine_tune.settings"):
        st.markdown(f"**New run** on {plain(state.loaded_data().name)} with model "
                    f"`{model.spec}`")
        top = st.columns(5)
        values = {
            "attribute": top[0].selectbox(
                "Attribute", attributes, key="fine_tune.attribute",
                index=attributes.index("race") if "race" in attributes else 0,
                help="The protected attribute whose groups the fairness term compares, the "
                     "batch sampler balances and the validation ES-AUC selects the epoch by."),
            "lam": top[1].number_input("Lambda (fairness weight)", min_value=0.0,
                                       value=DEFAULTS["lam"], step=0.05, format="%.3g",
                                       key="fine_tune.lam", help="0 turns the term off."),
            "statistic": top[2].selectbox("Statistic", STATISTICS, key="fine_tune.statistic",
                                          format_func=STATISTIC_LABELS.get),
            "distance": top[3].selectbox("Distance", DISTANCES, key="fine_tune.distance"),
            "fair_on": top[4].selectbox(
                "Fairness term on", FAIR_ON, key="fine_tune.fair_on",
                index=FAIR_ON.index(DEFAULTS["fair_on"]),
                help="clean: leave DBPM-flagged pairs out of the fairness term."),
        }
        dbpm = st.columns(5)
        values |= {
            "dbpm": dbpm[0].selectbox("DBPM", MODES, key="fine_tune.dbpm",
                                      format_func=DBPM_LABELS.get),
            "beta_np": dbpm[1].number_input(
                "Noisy threshold β_np (sd)", min_value=0.0, value=DEFAULTS["beta_np"], step=0.5,
                key="fine_tune.beta_np", help="Flag a pair whose weighted mean loss is at most "
                "mu - β_np sigma (abnormally low)."),
            "beta_fp": dbpm[2].number_input(
                "Faulty threshold β_fp (sd)", min_value=0.0, value=DEFAULTS["beta_fp"],
                step=0.5, key="fine_tune.beta_fp", help="Flag a pair whose weighted mean loss "
                "is at least mu + β_fp sigma (abnormally high: a note of another image)."),
            "warmup": dbpm[3].number_input("DBPM from epoch", min_value=0,
                                           value=DEFAULTS["warmup"], key="fine_tune.warmup",
                                           help="The first epoch (from 0) DBPM judges."),
            "k_per_group": dbpm[4].number_input(
                "Members per group (k)", min_value=1, value=DEFAULTS["k_per_group"],
                key="fine_tune.k_per_group", help="Every batch holds at least k pairs of "
                "every group of the attribute."),
        }
        optimisation = st.columns(5)
        values |= {
            "epochs": optimisation[0].number_input("Epochs", min_value=1,
                                                   value=DEFAULTS["epochs"],
                                                   key="fine_tune.epochs"),
            "lr": optimisation[1].number_input(
                "Learning rate", min_value=1e-8, max_value=1.0, format="%.1e", step=1e-5,
                value=DEMO_MODEL_LR if model.spec == "demo" else DEFAULTS["lr"],
                key="fine_tune.lr", help="AdamW. 1e-5 suits pretrained ViT-B/16-size "
                "models; the small demo model needs about 1e-4."),
            "batch_size": optimisation[2].number_input("Batch size", min_value=2,
                                                       value=DEFAULTS["batch_size"],
                                                       key="fine_tune.batch_size"),
            "scope": optimisation[3].selectbox("Trained", SCOPES, key="fine_tune.scope",
                                               format_func=SCOPE_LABELS.get),
            "seed": optimisation[4].number_input("Seed", min_value=0, value=DEFAULTS["seed"],
                                                 key="fine_tune.seed"),
        }
        with st.expander("More settings"):
            more = st.columns(5)
            devices = [AUTO_DEVICE, *cache.available_devices()]
            device = more[0].selectbox("Device", devices, key="fine_tune.device",
                                       help="auto: the first GPU if there is one, else the "
                                            "CPU.")
            values |= {
                "device": None if device == AUTO_DEVICE else device,
                "last_k": more[1].number_input("k blocks (last k)", min_value=1,
                                               value=DEFAULTS["last_k"], key="fine_tune.last_k"),
                "blur": more[2].number_input("Sinkhorn blur", min_value=1e-4,
                                             value=DEFAULTS["blur"], format="%.3g",
                                             key="fine_tune.blur", help="eps = blur²"),
                "weight_decay": more[3].number_input("Weight decay", min_value=0.0,
                                                     value=DEFAULTS["weight_decay"],
                                                     key="fine_tune.weight_decay"),
                "selection": more[4].selectbox(
                    "Select the epoch by", SELECTION_METRICS, key="fine_tune.selection",
                    format_func=SELECTION_LABELS.get,
                    help="Validation metric of the attribute; AUC when ES-AUC is undefined."),
            }
            evaluation = st.columns(5)
            values |= {
                "eval_min_n": evaluation[0].number_input(
                    "Smallest group in ES-AUC", min_value=1, value=DEFAULTS["eval_min_n"],
                    key="fine_tune.eval_min_n", help="Groups with fewer validation or test "
                    "pairs are left out of ES-AUC (the Audit page's minimum group size)."),
                "n_bootstrap": evaluation[1].number_input(
                    "Bootstrap resamples", min_value=0, value=DEFAULTS["n_bootstrap"],
                    key="fine_tune.n_bootstrap", help="For the final validation and test "
                    "reports."),
                "grad_clip": evaluation[2].number_input("Gradient clip", min_value=0.0,
                                                        value=DEFAULTS["grad_clip"],
                                                        key="fine_tune.grad_clip"),
                "checkpoint_every": evaluation[3].number_input(
                    "Checkpoint every (steps)", min_value=0, value=DEFAULTS["checkpoint_every"],
                    key="fine_tune.checkpoint_every", help="0: at the end of each epoch only."),
            }
        in_training = excluded_training_rows(table.frame, exclusions)[1]["train"]
        exclude = st.checkbox(f"Exclude the {in_training} training pair(s) you marked on the "
                              "Bad pairs page", value=bool(in_training), disabled=not in_training,
                              key="fine_tune.exclude",
                              help="Training pairs decided 'exclude' or 'wrong note' are "
                                   "left out of training. Validation and test keep every "
                                   "pair, so the run's test numbers match the Audit and "
                                   "Compare pages (leaving out test pairs a model gets wrong "
                                   "would flatter it).")
        started = st.form_submit_button("Start fine-tune", type="primary",
                                        icon=":material/play_arrow:", key="fine_tune.start")
    if started:
        start(table, model, values, exclusions if exclude else [], book)


def start(table: PairTable, model: ModelChoice, values: dict, exclusions: list[str],
          book: DecisionFile) -> None:
    """Check the settings against the data and launch the run; select it below."""
    try:
        config = TrainConfig(data=state.loaded_data().path, model=model.spec, arch=model.arch,
                             exclude=tuple(exclusions),
                             exclude_file=str(book.path) if exclusions else None,
                             **values)
        config.check_data(table)
        run = jobs.launch(config)
    except FairVLMError as error:
        show_error(error)
        return
    st.session_state[RUN_KEY] = str(run.path)
    st.toast(f"Started run {run.path.name}", icon=":material/play_arrow:")
    counts = tables.group_counts(cache.table_summary(table.fingerprint(), table),
                                 config.attribute, "val")
    warning = run_monitor.small_group_warning(counts, config.attribute, config.eval_min_n,
                                              config.selection)
    for line in (warning, run_monitor.dbpm_idle_note(config.to_dict())):
        if line:
            st.warning(plain(line), icon=":material/warning:")


def run_list() -> None:
    """Every run with its state and the chosen one in detail; redrawn live while one runs."""
    st.subheader("Runs")
    summaries = runs.list_runs()
    if not summaries:
        st.info("No runs yet: the settings above start one.")
    elif _any_active(summaries):
        live_runs()
    else:
        runs_and_chosen(summaries)


def _any_active(summaries: list[runs.RunSummary]) -> bool:
    return any(jobs.job_state(summary) in jobs.ACTIVE_STATES for summary in summaries)


@st.fragment(run_every=POLL_S)
def live_runs() -> None:
    """The run list, redrawn every :data:`POLL_S` seconds while a run is queued or running;
    when none is left, the whole page reruns (and stops polling)."""
    summaries = runs.list_runs()
    if not _any_active(summaries):
        st.rerun()
    runs_and_chosen(summaries)


def runs_and_chosen(summaries: list[runs.RunSummary]) -> None:
    """The table of runs, the chooser, and the chosen run (the newest at first)."""
    data_table.show(run_monitor.run_table(summaries), column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent"),
        "test AUC": st.column_config.NumberColumn(format="%.3f"),
        "test ES-AUC": st.column_config.NumberColumn(format="%.3f"),
    })
    by_path = {str(summary.path): summary for summary in summaries}
    if st.session_state.get(RUN_KEY) not in by_path:
        st.session_state[RUN_KEY] = next(iter(by_path))
    chosen = st.selectbox("Show run", list(by_path), key=RUN_KEY,
                          format_func=lambda path: by_path[path].name)
    show_run(by_path[chosen])


def show_run(summary: runs.RunSummary) -> None:
    """Draw a run: its state, progress, curves and, when it ended, its outcome."""
    run = RunDir(summary.path)
    run_state = jobs.job_state(summary)
    config = run_monitor.read_config(run)
    active = run_state in jobs.ACTIVE_STATES
    with st.container(border=True):
        head, button = st.columns([5, 1], vertical_alignment="center")
        head.markdown(f"**{plain(summary.name)}** · {run_state}")
        if active:
            button.button("Cancel", key=f"fine_tune.cancel.{summary.name}",
                          icon=":material/stop_circle:", on_click=_cancel,
                          args=(str(summary.path),))
        state_banner(run, summary, run_state)
        if run_state != "unreadable":
            progress(run, config, active)


def _cancel(path: str) -> None:
    if jobs.cancel(path):
        st.toast("Cancelling: the run saves a checkpoint and stops.", icon=":material/cancel:")


def state_banner(run: RunDir, summary: runs.RunSummary, run_state: str) -> None:
    """What happened to the run, in one line (and the log tail when it failed)."""
    icon = STATE_ICONS.get(run_state)
    if run_state == "done":
        done(run)
    elif run_state == "failed":
        st.error(f"Failed: {plain(summary.error or 'no reason recorded')}", icon=icon)
        st.caption("Last lines of the run's log:")
        st.code(jobs.log_tail(run, LOG_LINES) or "(the log is empty)", language=None)
    elif run_state == "unreadable":
        st.error(plain(summary.error or "the run's status cannot be read"), icon=icon)
    elif run_state in ("cancelled", "interrupted"):
        what = "Cancelled" if run_state == "cancelled" else "Interrupted (its process is gone)"
        st.warning(f"{what} at step {summary.step or 0:,} of {summary.total or '?'}. Continue "
                   f"it from its last checkpoint with `fairvlm train --run-dir {run.path} "
                   "--resume`.", icon=icon)
    elif run_state == "queued":
        st.info("Starting: loading the data and the model ...", icon=icon)


def done(run: RunDir) -> None:
    """The selected epoch, validation and test numbers, and the button to use the checkpoint."""
    evaluation = jobs.read_evaluation(run) or {}
    selection = evaluation.get("selection") or {}
    st.success(plain(run_monitor.selection_line(selection)), icon=STATE_ICONS["done"])
    with user_errors():
        better_start = run_monitor.start_was_better(run.read_metrics(), selection)
        if better_start:
            st.info(plain(better_start), icon=":material/info:")
    idle = run_monitor.dbpm_idle_note(run_monitor.read_config(run))
    if idle:
        st.caption(plain(idle))
    top, bottom = st.columns(3), st.columns(3)
    for tile, (split, key, label) in zip((top[0], top[1], bottom[0], bottom[1]), (
            ("val", "auc", "Validation AUC"), ("val", "es_auc", "Validation ES-AUC"),
            ("test", "auc", "Test AUC"), ("test", "es_auc", "Test ES-AUC")), strict=True):
        estimate = (evaluation.get(split) or {}).get(key) or {}
        value = estimate.get("value")
        note = estimate.get("note") or None
        change = run_monitor.change_from_start(evaluation, key) if split == "test" else None
        if value is None:
            tile.metric(label, data_table.MISSING, help=f"undefined: {note}")
        elif change is None:
            tile.metric(label, f"{value:.3f}", help=note)
        else:
            tile.metric(label, f"{value:.3f}", delta=change.delta, delta_color=change.colour,
                        delta_arrow=change.arrow,
                        help=" ".join(filter(None, (note, change.help))))
    if evaluation.get("change_from_start"):
        st.caption("Under the test tiles: the change from the starting model on the same test "
                   "pairs; grey when its paired 95% bootstrap interval holds 0 (within noise). "
                   "The tile's help gives the interval. It covers the test pairs' sampling "
                   "noise, not training randomness: another seed can move the change as much "
                   "(README, Experiment), so judge a method on several seeds.")
    flagged = evaluation.get("flagged") or {}
    top[2].metric("Faulty pairs", flagged.get("faulty", 0),
                  help="DBPM: weighted mean loss at least mu + β_fp sigma, over the run.")
    bottom[2].metric("Noisy pairs", flagged.get("noisy", 0),
                     help="DBPM: weighted mean loss at most mu - β_np sigma, over the run.")
    selected = jobs.selected_checkpoint(run)
    if selected is not None:
        checkpoint = str(selected[0])
        in_use = state.model_choice().spec == checkpoint
        st.button("In use as the model" if in_use else "Use this checkpoint as the model",
                  key=f"fine_tune.use.{run.path.name}", disabled=in_use,
                  icon=":material/input:", on_click=_use_checkpoint, args=(checkpoint,),
                  help="Audit it, look at its bad pairs, or compare it with the starting "
                       "model.")


def _use_checkpoint(checkpoint: str) -> None:
    state.set_model_choice(ModelChoice(checkpoint, state.model_choice().device))


def progress(run: RunDir, config: dict, active: bool) -> None:
    """Progress bar, loss terms per step, validation metrics and DBPM counts per epoch."""
    status = run.read_status()
    epochs = int(config.get("epochs") or 1)
    line = run_monitor.progress_line(status, epochs)
    if active:
        st.progress(status.step / status.total if status.total else 0.0, text=line)
    else:
        st.caption(line)
    try:
        records = run.read_metrics()
    except FairVLMError as error:
        show_error(error)
        return
    if not records:
        return
    curves = run_monitor.loss_curves(records)
    epochs_frame = run_monitor.epoch_table(records)
    left, right = st.columns(2)
    with left:
        st.markdown("**Loss terms per step**")
        if curves.empty:
            st.caption("No step yet.")
        else:
            st.line_chart(curves, x_label="step", height=280)
    with right:
        st.markdown(f"**Validation, {plain(str(config.get('attribute')))}**")
        st.line_chart(epochs_frame.set_index("epoch")[["val AUC", "val ES-AUC"]],
                      x_label="epoch", height=280)
    data_table.show(epochs_frame, column_config={
        "val AUC": st.column_config.NumberColumn(format="%.3f"),
        "val ES-AUC": st.column_config.NumberColumn(format="%.3f"),
        "selected": st.column_config.CheckboxColumn("selected"),
    })
    st.caption("Epoch 0: the starting model. noisy / faulty: pairs DBPM flags from the loss "
               "history up to that epoch (the next epoch's verdict); flagged in batches: "
               "flagged members met in the epoch's batches.")
    with st.expander("Settings and log"):
        st.json(config, expanded=False)
        st.code(jobs.log_tail(run, LOG_LINES) or "(the log is empty)", language=None)


main()
