"""AuditConfig: defaults, JSON round trips, fingerprints and one-line errors for bad fields."""

from __future__ import annotations

import json

import pytest

from fairvlm.config import AuditConfig, parse_attribute
from fairvlm.errors import ConfigError


def test_defaults_follow_the_method() -> None:
    config = AuditConfig()
    assert config.attributes == ()
    assert (config.split, config.scorer, config.threshold) == ("test", "zero-shot", "youden")
    assert config.prompts is None and config.use_logit_scale is True
    assert (config.n_bootstrap, config.n_permutations, config.min_n) == (1000, 200, 30)
    assert config.unknown == "group"


def test_json_round_trip_keeps_every_field() -> None:
    config = AuditConfig(attributes=("race", "race&gender"), split="val", scorer="linear-probe",
                         prompts={1: ("CDR 0.8, glaucoma",), 0: ("CDR 0.3", "healthy disc")},
                         use_logit_scale=False, threshold="f1", min_n=5, unknown="exclude",
                         n_bootstrap=50, n_permutations=0, blur=0.25, seed=3)
    text = config.to_json()
    assert json.loads(text)["prompts"] == {"0": ["CDR 0.3", "healthy disc"],
                                           "1": ["CDR 0.8, glaucoma"]}
    again = AuditConfig.from_json(text)
    assert again == config
    assert again.fingerprint() == config.fingerprint()


def test_values_read_back_from_json_are_normalised() -> None:
    config = AuditConfig.from_dict({"attributes": ["race & gender", " language "],
                                    "prompts": {"1": "glaucoma", "0": ["no glaucoma"]}})
    assert config.attributes == ("race&gender", "language")
    assert config.prompts == {1: ("glaucoma",), 0: ("no glaucoma",)}
    assert config.attribute_parts() == [("race", "gender"), ("language",)]


def test_fingerprint_changes_with_any_field() -> None:
    base = AuditConfig()
    changed = [AuditConfig(seed=1), AuditConfig(blur=0.2), AuditConfig(attributes=("race",)),
               AuditConfig(prompts={0: ("a",), 1: ("b",)}), AuditConfig(threshold="fixed")]
    prints = {base.fingerprint(), *(c.fingerprint() for c in changed)}
    assert len(prints) == 1 + len(changed)
    assert AuditConfig(seed=0).fingerprint() == base.fingerprint()


@pytest.mark.parametrize(("field", "value"), [
    ("split", "tst"), ("scorer", "svm"), ("threshold", "otsu"), ("unknown", "drop"),
    ("min_n", 0), ("min_n", 2.5), ("n_bootstrap", -1), ("n_permutations", True),
    ("blur", 0.0), ("blur", float("nan")), ("blur", "0.1"), ("seed", -1),
    ("use_logit_scale", "yes"), ("attributes", "race"), ("attributes", ("race", "race")),
    ("attributes", ("race&",)), ("attributes", ("race&race",)), ("attributes", (3,)),
    ("prompts", ["glaucoma"]), ("prompts", {"glaucoma": ["x"]}), ("prompts", {1: [3]}),
])
def test_bad_field_is_one_line_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(**{field: value})
    message = str(caught.value)
    assert "\n" not in message
    assert f"field {field}" in message and "expected" in message


def test_unknown_field_lists_the_expected_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) bootstrap; expected some of "
                                          r"attributes, split, .*seed"):
        AuditConfig.from_dict({"bootstrap": 10})


def test_errors_from_a_file_name_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^audit.json: audit config field split: 'x'"):
        AuditConfig.from_json('{"split": "x"}', source="audit.json")
    with pytest.raises(ConfigError, match=r"^audit.json: audit config: not valid JSON .*line 1"):
        AuditConfig.from_json("{split: test}", source="audit.json")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        AuditConfig.from_json("[1, 2]")


def test_parse_attribute_splits_intersections() -> None:
    assert parse_attribute("race") == ("race",)
    assert parse_attribute(" race &gender&language") == ("race", "gender", "language")
    with pytest.raises(ConfigError, match="empty name"):
        parse_attribute("&race")
