"""TrainConfig: JSON round trip, one-line errors for bad values, exclusions files."""

from __future__ import annotations

import json

import pytest

from fairvlm.data import load_dataset
from fairvlm.errors import ConfigError
from fairvlm.train.config import TrainConfig, read_exclusions

REQUIRED = {"data": "/data/demo", "model": "demo", "attribute": "race"}


def test_json_round_trip_keeps_every_field(tmp_path):
    config = TrainConfig(**REQUIRED, lam=0.5, statistic="reference", dbpm="drop", epochs=3,
                         scope="last-k", last_k=2, exclude=("b", "a", "b"), device="cpu")
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    again = TrainConfig.from_json(path.read_text(), source=str(path))
    assert again == config
    assert again.exclude == ("a", "b")  # sorted, once each
    assert json.loads(path.read_text())["lam"] == 0.5


def test_defaults_follow_the_method():
    config = TrainConfig(**REQUIRED)
    assert (config.epochs, config.lr, config.batch_size, config.k_per_group) == (10, 1e-5, 32, 4)
    assert (config.beta_np, config.beta_fp, config.warmup) == (2.0, 3.0, 2)
    assert (config.statistic, config.distance, config.dbpm, config.selection) == (
        "loss", "sinkhorn", "reweight", "es_auc")
    fairness, dbpm = config.fairness(), config.dbpm_config()
    assert (fairness.lam, fairness.min_per_group) == (config.lam, config.k_per_group)
    assert (dbpm.mode, dbpm.beta_np, dbpm.beta_fp) == ("reweight", 2.0, 3.0)


@pytest.mark.parametrize(("changes", "words"), [
    ({"lam": -0.1}, "lambda"),
    ({"beta_np": 0.0}, "beta_np"),
    ({"beta_fp": -1.0}, "beta_fp"),
    ({"dbpm": "sometimes"}, "dbpm mode"),
    ({"statistic": "cosine"}, "statistic"),
    ({"scope": "heads"}, "scope"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"k_per_group": 40}, "k_per_group"),
    ({"selection": "f1"}, "selection"),
    ({"attribute": ""}, "attribute"),
    ({"exclude": "a-pair-id"}, "exclude"),
])
def test_bad_values_are_one_line_config_errors(changes, words):
    with pytest.raises(ConfigError, match=words) as caught:
        TrainConfig(**{**REQUIRED, **changes})
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("train config")


def test_unknown_field_in_json_names_the_file(tmp_path):
    text = json.dumps({**REQUIRED, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"config\.json: train config: unknown field"):
        TrainConfig.from_json(text, source="config.json")


def test_unknown_attribute_lists_the_available_ones(small_demo_dir):
    table = load_dataset(small_demo_dir)
    config = TrainConfig(data=str(small_demo_dir), model="demo", attribute="shoe_size")
    with pytest.raises(ConfigError, match=r"attribute: 'shoe_size'.*race, gender") as caught:
        config.check_data(table)
    assert "\n" not in str(caught.value)
    TrainConfig(data=str(small_demo_dir), model="demo", attribute="race").check_data(table)


def test_exclusions_files(tmp_path):
    (tmp_path / "ids.txt").write_text("# decided in the app\npair-1\n\npair-2  # swapped note\n")
    (tmp_path / "ids.csv").write_text("id,kind\npair-3,faulty\n007,noisy\n")
    (tmp_path / "ids.json").write_text(json.dumps([{"id": "pair-4", "kind": "faulty"}]))
    (tmp_path / "plain.json").write_text(json.dumps(["pair-5"]))
    assert read_exclusions(tmp_path / "ids.txt") == ("pair-1", "pair-2")
    assert read_exclusions(tmp_path / "ids.csv") == ("pair-3", "007")
    assert read_exclusions(tmp_path / "ids.json") == ("pair-4",)
    assert read_exclusions(tmp_path / "plain.json") == ("pair-5",)


@pytest.mark.parametrize(("name", "content", "words"), [
    ("missing.txt", None, "not found"),
    ("ids.xlsx", "x", "unsupported"),
    ("ids.csv", "pair,kind\nx,y\n", "no id column"),
    ("ids.json", '{"ids": 3}', "JSON list"),
])
def test_bad_exclusions_files(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        read_exclusions(path)
