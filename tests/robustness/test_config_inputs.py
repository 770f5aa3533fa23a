"""Bad settings and configuration files: each refused with one exact line by ``fairvlm train``,
``audit`` or ``inspect`` (and by the Fine-tune page where the app can express it), before
anything is written: an existing run folder and a decisions file stay as they were.

Settings are given on the command line or read from a run's ``config.json`` and
``status.json`` (``train --resume``), a prompts file (``audit --prompts``), an exclusions file
(``train --exclude``) or the environment. The app's number inputs already keep most values in
range (no negative lambda there); what it can express goes through the same checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from app_driver import open_page, run

from fairvlm.decisions import DecisionFile
from fairvlm.errors import ConfigError
from fairvlm.runs import RunDir
from fairvlm.train.config import TrainConfig
from fairvlm.uploads import MAX_BYTES_ENV, max_upload_bytes

TRAIN = ("train", "--data", "{data}", "--model", "{model}", "--attribute", "race",
         "--run-dir", "{run}", "--device", "cpu", "--quiet")
AUDIT = ("audit", "--data", "{data}", "--model", "{model}", "--out", "{folder}/report",
         "--device", "cpu", "--quiet")
RESUME = ("train", "--run-dir", "{folder}/run", "--resume", "--quiet")


@dataclass(frozen=True)
class ConfigCase:
    """A bad setting: ``argv`` (templates of ``{data}``, ``{model}``, ``{run}``: an existing
    run, and ``{folder}``: the case's folder, where ``build(folder, setting)`` writes its files
    first); ``message`` and ``names`` are templates of the same."""

    name: str
    argv: tuple[str, ...]
    message: str
    names: tuple[str, ...]
    build: Callable[[Path, dict[str, Path]], None] | None = None


def _run_config(setting: dict[str, Path], **changes: object) -> dict:
    return TrainConfig(data=str(setting["data"]), model=str(setting["model"]),
                       attribute="race", device="cpu", **changes).to_dict()


def _config_file(text: Callable[[dict[str, Path]], str]) -> Callable[[Path, dict], None]:
    def build(folder: Path, setting: dict[str, Path]) -> None:
        (folder / "run").mkdir()
        (folder / "run" / "config.json").write_text(text(setting), encoding="utf-8")
    return build


def unreadable_status(folder: Path, setting: dict[str, Path]) -> None:
    run_dir = RunDir(folder / "run").create(_run_config(setting))
    run_dir.status_path.write_text('{"state": "running", "step": 4', encoding="utf-8")


def _file(name: str, content: bytes) -> Callable[[Path, dict], None]:
    return lambda folder, setting: (folder / name).write_bytes(content)


def _manifest(folder: Path, setting: dict[str, Path]) -> None:
    (folder / "manifest.csv").write_text("image,text,label\na.png,note,1\n", encoding="utf-8")


FAIRNESS = "train config: fairness"
CASES = [
    ConfigCase("negative-lambda", (*TRAIN, "--lambda", "-1"),
               f"{FAIRNESS} lambda: -1.0; expected a number >= 0", ("lambda",)),
    ConfigCase("zero-blur", (*TRAIN, "--blur", "0"),
               f"{FAIRNESS} blur: 0.0; expected a number > 0", ("blur",)),
    ConfigCase("negative-beta", (*TRAIN, "--beta-fp", "-2"),
               "train config: dbpm beta_fp: -2.0; expected a number > 0", ("beta_fp",)),
    ConfigCase("zero-epochs", (*TRAIN, "--epochs", "0"),
               "train config field epochs: 0; expected an integer >= 1", ("field epochs",)),
    ConfigCase("nan-learning-rate", (*TRAIN, "--lr", "nan"),
               "train config field lr: nan; expected a finite number > 0", ("field lr",)),
    ConfigCase("k-per-group-over-batch", (*TRAIN, "--k-per-group", "64"),
               "train config field k_per_group: 64; expected at most batch_size (32)",
               ("field k_per_group",)),
    ConfigCase("unknown-device", (*TRAIN, "--device", "tpu"),
               "--device 'tpu': expected cpu, cuda or cuda:N", ("--device",)),
    ConfigCase("attribute-not-in-data", (*TRAIN[:6], "religion", *TRAIN[7:]),
               "attribute 'religion' is not in the data; available: race, gender, ethnicity, "
               "language, maritalstatus", ("religion",)),
    ConfigCase("run-config-not-json", RESUME,
               "{folder}/run/config.json: train config: not valid JSON (Expecting property name "
               "enclosed in double quotes at line 1, column 2)", ("{folder}/run/config.json",),
               build=_config_file(lambda setting: "{data: 'scans'}")),
    ConfigCase("run-config-unknown-field", RESUME,
               "{folder}/run/config.json: train config: unknown field(s) colour; expected some "
               "of data, model, arch, attribute, lam, statistic, distance, blur, fair_on, dbpm, "
               "beta_np, beta_fp, warmup, epochs, lr, weight_decay, batch_size, scope, last_k, "
               "k_per_group, seed, device, autocast, grad_clip, selection, eval_min_n, "
               "n_bootstrap, checkpoint_every, exclude, exclude_file",
               ("{folder}/run/config.json", "colour"),
               build=_config_file(lambda setting: json.dumps(
                   {**_run_config(setting), "colour": "red"}))),
    ConfigCase("run-config-wrong-type", RESUME,
               "{folder}/run/config.json: train config field epochs: 'ten'; expected an integer "
               ">= 1", ("{folder}/run/config.json", "field epochs"),
               build=_config_file(lambda setting: json.dumps(
                   {**_run_config(setting), "epochs": "ten"}))),
    ConfigCase("run-status-not-json", RESUME,
               "{folder}/run/status.json: not valid JSON; expected a fairvlm run file",
               ("{folder}/run/status.json",), build=unreadable_status),
    ConfigCase("exclusions-not-json", (*TRAIN, "--exclude", "{folder}/flagged.json"),
               "{folder}/flagged.json: not valid JSON (Expecting ',' delimiter); expected a "
               "list of ids", ("{folder}/flagged.json",),
               build=_file("flagged.json", b'["data_00001" "data_00002"]')),
    ConfigCase("prompts-not-json", (*AUDIT, "--prompts", "{folder}/prompts.json"),
               '{folder}/prompts.json: not a JSON prompts file (Expecting value: line 1 column '
               '1 (char 0)); expected {{"1": ["..."], "0": ["..."]}}', ("{folder}/prompts.json",),
               build=_file("prompts.json", b"glaucoma; no glaucoma")),
    ConfigCase("negative-bootstrap", (*AUDIT, "--bootstrap", "-5"),
               "audit config field n_bootstrap: -5; expected an integer >= 0",
               ("field n_bootstrap",)),
    ConfigCase("malformed-dicom-tag", ("inspect", "--data", "{data}", "--dicom-tag", "sex"),
               "--dicom-tag 'sex'; expected COLUMN=KEYWORD, e.g. sex=PatientSex",
               ("--dicom-tag",)),
    ConfigCase("unknown-dicom-keyword",
               ("inspect", "--data", "{folder}/manifest.csv", "--dicom-tag", "sex=Sexx"),
               "dicom_tags: 'Sexx' (for column 'sex') is not a DICOM keyword; expected e.g. "
               "PatientSex or PatientAge", ("'Sexx'",), build=_manifest),
    ConfigCase("negative-split-seed",
               ("inspect", "--data", "{folder}/manifest.csv", "--seed", "-1"),
               "seed -1: expected an integer >= 0 (it seeds the split of a manifest without a "
               "split column)", ("seed",), build=_manifest),
]


@pytest.fixture(scope="module")
def setting(robust_home: Path) -> dict[str, Path]:
    """The good data and model, and an existing (queued) run outside the app's runs folder."""
    values = {"data": robust_home / "demo" / "data", "model": robust_home / "tiny.safetensors"}
    values["run"] = RunDir(robust_home / "cli-runs" / "existing").create(
        _run_config(values)).path
    return values


@pytest.fixture(scope="module")
def corpus(robust_home: Path, setting) -> dict[str, Path]:
    folders = {}
    for case in CASES:
        folder = robust_home / "config-corpus" / case.name
        folder.mkdir(parents=True)
        if case.build is not None:
            case.build(folder, setting)
        folders[case.name] = folder
    return folders


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_command_refuses_in_one_line(case: ConfigCase, corpus, setting, app_env: Path,
                                         run_cli, messages, snapshot) -> None:
    values = {**setting, "folder": corpus[case.name]}
    before = snapshot(app_env)
    outcome = run_cli(*(arg.format(**values) for arg in case.argv))
    messages.check(messages.refusal(outcome), case.message.format(**values),
                   [name.format(**values) for name in case.names])
    assert snapshot(app_env) == before


def test_upload_cap_from_the_environment_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                     messages) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError) as refused:
        max_upload_bytes()
    messages.check(str(refused.value), f"{MAX_BYTES_ENV}='lots': expected a positive number "
                   "of bytes", [MAX_BYTES_ENV])


def test_the_fine_tune_page_refuses_the_same(app_env: Path, setting, messages,
                                             snapshot) -> None:
    """k per group above the batch size is refused by the form; a run whose status.json is
    not JSON is listed with its line; no run starts and the decisions file stays."""
    from fairvlm.data import load_dataset

    runs = app_env / "runs"
    unreadable_status(runs, setting)
    table = load_dataset(app_env / "demo" / "data")
    DecisionFile(table.fingerprint()).set(table.ids[0], "exclude", model_fingerprint="0" * 32)
    before = snapshot(app_env)
    app = open_page(app_env, "pages/fine_tune.py")
    unreadable = f"{runs}/run/status.json: not valid JSON; expected a fairvlm run file"
    assert messages.shown(unreadable, [e.value for e in app.error])
    app.number_input(key="fine_tune.k_per_group").set_value(64)
    app.button(key="fine_tune.start").click()
    run(app)
    shown = [element.value for element in app.error]
    assert len(shown) == 2 and messages.shown(
        "train config field k_per_group: 64; expected at most batch_size (32)", shown), shown
    assert snapshot(app_env) == before
    assert [path.name for path in runs.iterdir()] == ["run"]


def test_the_data_page_shows_a_bad_upload_cap_in_one_line(app_user, messages,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    app_user.app.radio(key="data.source").set_value("upload")
    app_user.app.run()
    assert not app_user.app.exception
    assert app_user.errors == [f"{MAX_BYTES_ENV}='lots': expected a positive number of bytes"]


def test_exclusions_that_are_not_utf8_are_one_line(setting, robust_home: Path, run_cli,
                                                   messages) -> None:
    path = robust_home / "config-corpus" / "flagged-latin1.txt"
    path.write_bytes("data_00001 # café\n".encode("latin-1"))
    argv = [arg.format(**setting) for arg in TRAIN]
    message = messages.refusal(run_cli(*argv, "--exclude", path))
    assert str(path) in message
