"""AppTest of the Compare & report page: the tiny checkpoint (in use) against a finished run
whose selected checkpoint holds other random weights, on the small demo.

The run folder is made by hand (config.json, status done, eval.json and the checkpoint), so no
training is needed. The page's table is checked against sklearn on predictions of audits run
here without the app.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_driver import open_page, run, shown
from model_files import random_demo_checkpoint
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from fairvlm.audit import run_audit
from fairvlm.compare import delta_column
from fairvlm.config import AuditConfig
from fairvlm.data import load_dataset
from fairvlm.models import load_model
from fairvlm.runs import RunDir, write_json_atomic
from fairvlm.train.config import TrainConfig

PAGE = "pages/compare.py"
RUN = "20250101-000000-race-abcdef"
CHECKPOINT = "checkpoints/e0000-s000000006.safetensors"
SETTINGS = {"attributes": ("race",), "split": "test", "min_n": 1, "n_bootstrap": 40}


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_demo_checkpoint(tmp_path_factory.mktemp("compare-model") / "other.safetensors",
                                  seed=11)


@pytest.fixture()
def home(fresh_home: Path, other_checkpoint: Path) -> Path:
    """FAIRVLM_HOME with the small demo, the tiny checkpoint and one finished run."""
    home = fresh_home
    config = TrainConfig(data=str(home / "demo" / "data"), model=str(home / "tiny.safetensors"),
                         attribute="race", epochs=1)
    run = RunDir(home / "runs" / RUN).create(config.to_dict())
    shutil.copy(other_checkpoint, run.path / CHECKPOINT)
    write_json_atomic(run.eval_path, {"checkpoint": CHECKPOINT, "selection": {
        "epoch": 0, "metric": "es_auc", "value": 0.5, "note": "", "checkpoint": CHECKPOINT}})
    run.update_status(state="done", step=6, total=6)
    return home




def _submit(app: AppTest) -> AppTest:
    app.multiselect(key="compare.attributes").set_value(list(SETTINGS["attributes"]))
    app.selectbox(key="compare.split").set_value(SETTINGS["split"])
    app.number_input(key="compare.min_n").set_value(SETTINGS["min_n"])
    app.number_input(key="compare.n_bootstrap").set_value(SETTINGS["n_bootstrap"])
    app.button(key="compare.run").click()
    return run(app)


def _group_aucs(home: Path, spec: str) -> dict[str, float]:
    """AUC and each race group's AUC with sklearn, on an audit run without the app."""
    table = load_dataset(home / "demo" / "data")
    predictions = run_audit(table, load_model(spec, device="cpu"),
                            AuditConfig(**SETTINGS, n_permutations=0)).predictions
    aucs = {"AUC": roc_auc_score(predictions["label"], predictions["probability"])}
    for name, part in predictions.groupby("race"):
        if part["label"].nunique() == 2:
            aucs[f"AUC {name}"] = roc_auc_score(part["label"], part["probability"])
    return aucs


def test_compare_the_model_in_use_with_a_finished_run(home: Path) -> None:
    app = open_page(home, PAGE)
    checkpoint = str(home / "runs" / RUN / CHECKPOINT)
    assert app.multiselect(key="compare.models").value == ["current", checkpoint]
    app = _submit(app)
    assert not app.error, [e.value for e in app.error]

    table = app.dataframe[0].value.set_index("metric")
    baseline, label = "in use: tiny.safetensors", f"run {RUN}"
    assert list(table.columns) == ["attribute", "n", baseline, label, delta_column(label)]
    before, after = _group_aucs(home, str(home / "tiny.safetensors")), _group_aucs(home,
                                                                                  checkpoint)
    assert set(before) <= set(table.index)
    for metric, value in before.items():
        assert table.loc[metric, baseline].startswith(f"{value:.3f} [")
        assert table.loc[metric, label].startswith(f"{after[metric]:.3f} [")
        change = after[metric] - value  # then the paired interval (tests/test_compare.py)
        delta_text = table.loc[metric, delta_column(label)]
        assert float(delta_text.split(" [")[0]) == pytest.approx(change, abs=5e-4)

    comparison = app.session_state["compare.result"]
    assert not comparison.undefined_reasons()  # min_n 1: every value defined, no expander
    assert not [box for box in app.expander if box.label.startswith("Why ")]
    origin = comparison.models[1].origin
    assert origin["kind"] == "run" and origin["run"] == RUN
    assert origin["config"] == RunDir(home / "runs" / RUN).read_config()
    assert len(app.get("plotly_chart")) == 2  # group AUCs, and the loss before/after
    assert len(app.get("download_button")) == 1

    app.number_input(key="compare.min_n").set_value(30)  # hides the small race groups
    app.button(key="compare.run").click()
    app = run(app)
    reasons = app.session_state["compare.result"].undefined_reasons()
    (why,) = [box for box in app.expander if box.label.startswith("Why ")]
    assert why.label == f"Why {len(reasons)} value(s) are undefined" and reasons
    assert [shown(caption.value) for caption in why.caption] == reasons


def test_one_model_is_refused_in_one_line(home: Path) -> None:
    app = open_page(home, PAGE)
    app.multiselect(key="compare.models").set_value(["current"])
    app = _submit(app)
    (error,) = app.error
    assert "expected two or more" in error.value and "\n" not in error.value
    assert not app.dataframe
