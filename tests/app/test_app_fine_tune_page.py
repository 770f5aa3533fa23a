"""AppTest of the Fine-tune page: real background runs of the tiny checkpoint on the small demo.

AppTest does not run ``st.fragment(run_every=...)`` on a timer, so a test "waits" by running
the page again until the run's state changes. Polling with a fresh AppTest (a new session)
shows that the page only reads the run folder: the run outlives the session that started it.
What the page shows is checked against the run's own files (config.json, eval.json,
metrics.jsonl) and the decisions file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from app_driver import open_page, shown
from app_driver import run as rerun
from model_files import unnamed_checkpoint
from streamlit.testing.v1 import AppTest

from fairvlm import jobs
from fairvlm.data import load_dataset
from fairvlm.decisions import DecisionFile
from fairvlm.metrics import Change
from fairvlm.models.architectures import DEMO_ARCH
from fairvlm.runs import RunDir, RunStatus, list_runs, process_alive
from fairvlm.train.config import TrainConfig
from fairvlm.ui import run_monitor
from fairvlm.ui.state import MODEL_KEY

PAGE = "pages/fine_tune.py"
RUN_TIMEOUT_S = 150.0
TINY_SETTINGS = {"fine_tune.epochs": 1, "fine_tune.lr": 1e-3, "fine_tune.eval_min_n": 1,
                 "fine_tune.n_bootstrap": 20}


@pytest.fixture()
def home(fresh_home: Path) -> Path:
    """A fresh FAIRVLM_HOME (the only data root) with the small demo and the tiny checkpoint."""
    return fresh_home




def test_a_checkpoint_whose_architecture_was_chosen_fine_tunes_with_it(home: Path) -> None:
    """A checkpoint that names no architecture and whose tensors do not tell it trains once
    the architecture is chosen in the app: the run records it and its worker loads with it."""
    unnamed_checkpoint(home / "tiny.safetensors", home / "unnamed.safetensors")
    app = open_page(home, PAGE, checkpoint="unnamed.safetensors", arch=DEMO_ARCH)
    run = _start(app)
    assert TrainConfig.from_dict(run.read_config()).arch == DEMO_ARCH
    _poll(lambda: open_page(home, PAGE, checkpoint="unnamed.safetensors", arch=DEMO_ARCH),
          "done")


def _start(app: AppTest, **settings: object) -> RunDir:
    """Fill the form (tiny settings, projections only), press Start; the new run."""
    app.selectbox(key="fine_tune.scope").set_value("projections")
    app.selectbox(key="fine_tune.device").set_value("cpu")
    for key, value in {**TINY_SETTINGS, **settings}.items():
        app.number_input(key=key).set_value(value)
    app.button(key="fine_tune.start").click()
    rerun(app)
    assert not app.error, [e.value for e in app.error]
    (run,) = list_runs()
    return RunDir(run.path)


def _header(app: AppTest) -> str:
    """The shown run's ``**name** · state`` line."""
    return next(m.value for m in app.markdown if m.value.startswith("**20"))


def _poll(open_page: Callable[[], AppTest], wanted: str) -> AppTest:
    """Run the page again until the shown run's header says ``wanted``."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        app = open_page()
        if _header(app).endswith(f"· {wanted}"):
            return app
        time.sleep(1.0)
    pytest.fail(f"the run did not reach {wanted}; page shows {_header(app)}")


def test_a_tiny_run_reaches_done_and_shows_its_results(home: Path) -> None:
    table = load_dataset(home / "demo" / "data")
    marked = [*table.frame.loc[table.frame["split"] == "train", "id"].iloc[:2],
              table.frame.loc[table.frame["split"] == "test", "id"].iloc[0]]
    book = DecisionFile(table.fingerprint())
    for pair_id in marked:
        book.set(pair_id, "exclude", model_fingerprint="0" * 16)
    app = open_page(home, PAGE)
    assert app.checkbox(key="fine_tune.exclude").value  # offered, and on
    assert "Exclude the 2 training pair(s) you marked" in app.checkbox(
        key="fine_tune.exclude").label  # the marked test pair stays evaluated
    run = _start(app)
    assert _header(app).startswith(f"**{run.path.name}**")
    # every validation group reaches the smallest group in ES-AUC (1); one epoch < DBPM's start
    assert [shown(w.value) for w in app.warning] == [
        "DBPM judges pairs from epoch 3 on and this run has 1 epoch(s): no pair was "
        "reweighted. The faulty and noisy counts are its verdict after the last epoch."]

    config = TrainConfig.from_dict(run.read_config())
    assert (config.attribute, config.scope, config.epochs, config.lr) == (
        "race", "projections", 1, 1e-3)
    assert config.model == str(home / "tiny.safetensors")
    assert config.data == str((home / "demo" / "data").resolve())
    assert config.exclude == tuple(sorted(marked)) and config.exclude_file == str(book.path)

    app = _poll(lambda: open_page(home, PAGE), "done")  # a new session each time: a reloaded page
    evaluation = json.loads(run.eval_path.read_text())
    assert evaluation["excluded"] == {"train": 2, "evaluated": 1, "unknown": 0}
    assert evaluation["test"]["n"] == int((table.frame["split"] == "test").sum())
    tiles = {metric.label: metric.value for metric in app.metric}
    for split, key, label in (("val", "auc", "Validation AUC"), ("test", "auc", "Test AUC")):
        assert tiles[label] == f"{evaluation[split][key]['value']:.3f}"
    (test_auc,) = [metric for metric in app.metric if metric.label == "Test AUC"]
    change = evaluation["change_from_start"]["summary"]["auc"]
    assert test_auc.delta == f"{Change.from_dict(change).text().split(' [')[0]} vs start"
    assert f"{change['delta']:+.3f} [{change['ci_low']:+.3f}, " in test_auc.proto.help
    runs_table = app.dataframe[0].value
    assert runs_table["state"].tolist() == ["done"]
    assert runs_table["test AUC"].iloc[0] == pytest.approx(evaluation["test"]["auc"]["value"])
    epochs = next(frame.value for frame in app.dataframe if "val ES-AUC" in frame.value.columns)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    (last_epoch,) = [record for record in records if record["kind"] == "epoch"]
    assert epochs["epoch"].tolist() == [0, 1]  # 0: the starting model
    assert epochs["val AUC"].iloc[1] == pytest.approx(last_epoch["val"]["auc"])
    assert epochs["faulty"].iloc[1] == last_epoch["faulty"]

    checkpoint = str(jobs.selected_checkpoint(run)[0])
    app.button(key=f"fine_tune.use.{run.path.name}").click()
    rerun(app)
    assert app.session_state[MODEL_KEY].spec == checkpoint


def test_cancel_stops_a_running_job(home: Path) -> None:
    app = open_page(home, PAGE)
    run = _start(app, **{"fine_tune.epochs": 200, "fine_tune.eval_min_n": 10_000})
    table = load_dataset(home / "demo" / "data")
    val = table.frame[table.frame["split"] == "val"]
    race = table.attribute("race")
    sizes = val["race"].value_counts()
    names = ", ".join(f"{race.group_name(code)} (n = {sizes[code]:,})"
                      for code in sorted(sizes.index))
    assert [shown(w.value) for w in app.warning] == [
        f"Validation groups of race smaller than the smallest group in ES-AUC (10,000): "
        f"{names}. They are left out of this run's ES-AUC; with fewer than two groups left, "
        "validation ES-AUC is undefined and the epoch is selected by validation AUC. Lower "
        "'Smallest group in ES-AUC' (More settings) to include them; their intervals will be "
        "wide."]
    app = _poll(lambda: rerun(app), "running")
    deadline = time.monotonic() + 120
    while run.read_status().step == 0 and time.monotonic() < deadline:  # cancel mid-training
        time.sleep(0.2)
    app.button(key=f"fine_tune.cancel.{run.path.name}").click()
    rerun(app)
    app = _poll(lambda: rerun(app), "cancelled")
    status = run.read_status()
    assert status.state == "cancelled" and 0 < status.step < status.total
    deadline = time.monotonic() + 30
    while process_alive(jobs.job_pid(run)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(jobs.job_pid(run))  # the worker exits after marking the run
    assert any("Cancelled at step" in warning.value for warning in app.warning)
    runs_table = app.dataframe[0]  # no test evaluation: drawn as a dash, not "None" (run())
    assert runs_table.value["test AUC"].isna().all() and runs_table.proto.placeholder == "–"
    assert run.latest_checkpoint() is not None  # saved on the way out


def test_a_failed_run_shows_its_error_and_log_tail(home: Path, tiny_checkpoint: Path) -> None:
    missing = home / "moved-away"
    run = jobs.launch(TrainConfig(data=str(missing), model=str(tiny_checkpoint),
                                  attribute="race", device="cpu"))
    app = _poll(lambda: open_page(home, PAGE), "failed")
    (error,) = app.error
    assert error.value.startswith("Failed: ") and str(missing) in error.value.replace("\\", "")
    assert "\n" not in error.value
    tail = app.code[0].value
    assert f"error: {run.read_status().error}" in tail


def test_monitor_tables_from_hand_made_records() -> None:
    def step(number: int, epoch: int) -> dict:
        return {"kind": "step", "epoch": epoch, "step": number, "loss": 2.0 + number,
                "clip": 1.5 + number, "weighted_fairness": 0.5}

    def epoch_end(epoch: int, selected: int) -> dict:
        return {"kind": "epoch", "epoch": epoch, "step": 2 * (epoch + 1), "noisy": epoch,
                "faulty": 3, "flagged_in_batches": 5, "selected_epoch": selected,
                "val": {"auc": 0.7 + epoch / 10, "es_auc": None}}

    records = [{"kind": "baseline", "epoch": -1, "step": 0, "val": {"auc": 0.6, "es_auc": 0.5}},
               step(1, 0), step(2, 0), epoch_end(0, 0), step(3, 1), step(4, 1), epoch_end(1, 0)]
    curves = run_monitor.loss_curves(records)
    assert curves.index.tolist() == [1, 2, 3, 4]
    assert curves["objective L"].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert (curves["objective L"] == curves["CLIP loss mean(w·l)"]
            + curves["λ · Σ_g R_g"]).all()
    table = run_monitor.epoch_table(records)
    assert table["epoch"].tolist() == [0, 1, 2]
    assert table["selected"].tolist() == [False, True, False]  # the choice after the last epoch
    assert table["val AUC"].tolist() == pytest.approx([0.6, 0.7, 0.8])
    assert table["noisy"].isna().tolist() == [True, False, False]
    assert table["faulty"].tolist()[1:] == [3, 3]
    change = {"delta": 0.0123, "ci_low": -0.004, "ci_high": 0.0271}
    assert run_monitor.change_from_start({"change_from_start": {"summary": {
        "auc": change}}}, "auc") == run_monitor.TileChange(
        "+0.012 vs start", "off", "off",
        "Change from the starting model on the same test pairs: "
        "+0.012 [-0.004, +0.027] (paired 95% interval), within noise.")
    measurable = run_monitor.change_from_start({"change_from_start": {"summary": {
        "auc": {**change, "ci_low": 0.001}}}}, "auc")
    assert (measurable.colour, measurable.arrow, measurable.help.endswith(
        "[+0.001, +0.027] (paired 95% interval), measurable.")) == ("normal", "auto", True)
    assert run_monitor.change_from_start({"change_from_start": {"summary": {
        "es_auc": {"delta": None}}}}, "es_auc") is None
    assert run_monitor.change_from_start({}, "auc") is None  # a run from before the change
    fallback = {"epoch": 1, "metric": "es_auc", "note": "validation es_auc is undefined",
                "history": [{"epoch": 0, "metric": "auc", "value": 0.90},
                            {"epoch": 1, "metric": "auc", "value": 0.91}]}
    assert run_monitor.selection_line(fallback) == (
        "Done: epoch 2 selected by validation AUC (ES-AUC is undefined on validation: fewer "
        "than two groups with enough pairs and both classes).")
    baseline = {"kind": "baseline", "val": {"auc": 0.92, "es_auc": None}}
    assert run_monitor.start_was_better([baseline], fallback) == (
        "The starting model scored higher on validation AUC (0.920) than the best fine-tuned "
        "epoch (0.910): this fine-tune did not improve on it.")
    assert run_monitor.start_was_better([{**baseline, "val": {"auc": 0.91}}], fallback) is None
    assert run_monitor.start_was_better([], fallback) is None
    assert run_monitor.dbpm_idle_note({"dbpm": "reweight", "warmup": 2, "epochs": 2}) == (
        "DBPM judges pairs from epoch 3 on and this run has 2 epoch(s): no pair was "
        "reweighted. The faulty and noisy counts are its verdict after the last epoch.")
    assert run_monitor.dbpm_idle_note({"dbpm": "reweight", "warmup": 2, "epochs": 3}) is None
    assert run_monitor.dbpm_idle_note({"dbpm": "off", "warmup": 2, "epochs": 1}) is None
    assert run_monitor.selection_line({"epoch": 2, "metric": "auc"}) == (
        "Done: epoch 3 selected by validation AUC.")
    assert run_monitor.selection_line({
        "epoch": 0, "metric": "es_auc", "note": "validation es_auc is undefined (too few); "
                                                 "epochs compared by auc"}) == (
        "Done: epoch 1 selected by validation ES-AUC. Validation ES-AUC is undefined (too "
        "few); epochs compared by AUC.")
    counts = pd.DataFrame({"group": ["Asian", "Black", "White", "unknown"],
                           "n": [10, 15, 75, 0]})
    assert run_monitor.small_group_warning(counts, "race", 10, "es_auc") is None
    assert run_monitor.small_group_warning(counts, "race", 12, "es_auc") == (
        "Validation groups of race smaller than the smallest group in ES-AUC (12): Asian "
        "(n = 10). They are left out of this run's ES-AUC. Lower 'Smallest group in ES-AUC' "
        "(More settings) to include them; their intervals will be wide.")
    assert "selected by validation AUC" in run_monitor.small_group_warning(
        counts, "race", 30, "es_auc")
    assert "selected by validation AUC" not in run_monitor.small_group_warning(
        counts, "race", 30, "auc")
    status = RunStatus(state="running", epoch=1, step=3, total=4, eta_s=75.0)
    assert run_monitor.progress_line(status, 2) == "epoch 2 / 2 · step 3 / 4 · about 2 min left"
    assert [run_monitor.duration(s) for s in (0.2, 45.2, 61, 3900)] == [
        "1 s", "46 s", "2 min", "1 h 05 min"]
