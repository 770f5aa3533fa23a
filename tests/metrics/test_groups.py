"""Group handling: unknown codes, unlisted codes, empty and small groups, intersections."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference
from sklearn.metrics import roc_auc_score

from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics import audit_attribute, intersect_groups

LANGUAGE = {0: "English", 1: "Spanish", 2: "Other"}


def _data(seed: int = 0, n: int = 600):
    rng = np.random.default_rng(seed)
    codes = rng.choice([0, 1, 2, -1], size=n, p=[0.6, 0.2, 0.1, 0.1])
    y = rng.integers(0, 2, n)
    scores = rng.random(n) * 0.6 + 0.3 * y
    return y, scores, codes


def test_unknown_code_is_its_own_labelled_group() -> None:
    y, scores, codes = _data()
    report = audit_attribute(y, scores, codes, group_names=LANGUAGE, min_n=1, n_bootstrap=0)
    unknown = report.group("unknown")
    assert unknown.code == -1 and unknown.n == int(np.sum(codes == -1))
    mask = codes == -1
    assert unknown.auc.value == pytest.approx(roc_auc_score(y[mask], scores[mask]))
    assert report.n == y.size
    assert any("form the group 'unknown'" in note for note in report.notes)


def test_unknown_code_excluded_by_explicit_setting() -> None:
    y, scores, codes = _data()
    report = audit_attribute(y, scores, codes, group_names=LANGUAGE, unknown="exclude",
                             n_bootstrap=0)
    kept = codes != -1
    assert [g.name for g in report.groups] == ["English", "Spanish", "Other"]
    assert report.n == int(kept.sum())
    assert report.auc.value == pytest.approx(roc_auc_score(y[kept], scores[kept]))
    assert any(f"{np.sum(~kept)} rows with unknown code -1 are excluded" in note
               for note in report.notes)


def test_unknown_policy_must_be_explicit_and_valid() -> None:
    y, scores, codes = _data()
    with pytest.raises(ConfigError, match="group, exclude"):
        audit_attribute(y, scores, codes, group_names=LANGUAGE, unknown="merge")


def test_listed_group_without_pairs_and_unlisted_code_are_reported() -> None:
    y, scores, codes = _data()
    codes = np.where(codes == 2, 7, codes)  # nobody is "Other"; code 7 is not listed
    report = audit_attribute(y, scores, codes, group_names=LANGUAGE, min_n=1, n_bootstrap=0)
    other = report.group("Other")
    assert (other.n, other.shown, other.auc.value, other.note) == (0, False, None, "no pairs")
    seven = report.group("7")
    assert seven.code == 7 and seven.n == int(np.sum(codes == 7)) and seven.shown
    assert any("codes not in group_names" in note and "7 (" in note for note in report.notes)


def test_min_n_hides_small_groups_with_reason_and_summary_uses_the_rest() -> None:
    y, scores, codes = _data(n=500)
    small = np.flatnonzero(codes == 2)[10:]
    codes[small] = 0  # "Other" keeps 10 pairs
    report = audit_attribute(y, scores, codes, group_names=LANGUAGE, min_n=30, n_bootstrap=50)
    other = report.group("Other")
    assert other.n == 10 and not other.shown
    assert other.auc.value is None and "below min_n = 30" in other.note
    assert other.tpr is None and other.selection_rate is None
    assert any("hidden from the summary" in note and "Other (n = 10)" in note
               for note in report.notes)

    shown = [0, 1, -1]
    overall = roc_auc_score(y, scores)  # overall AUC keeps every audited pair
    groups = [roc_auc_score(y[codes == c], scores[codes == c]) for c in shown]
    assert report.auc.value == pytest.approx(overall)
    assert report.es_auc.value == pytest.approx(
        overall / (1 + sum(abs(g - overall) for g in groups)))
    rows = np.isin(codes, shown)
    assert report.dpd.value == pytest.approx(demographic_parity_difference(
        y[rows], scores[rows] >= 0.5, sensitive_features=codes[rows]))


def test_group_with_a_single_class_is_undefined_with_a_reason() -> None:
    y, scores, codes = _data()
    y[codes == 1] = 1  # Spanish: positives only
    report = audit_attribute(y, scores, codes, group_names=LANGUAGE, min_n=1, n_bootstrap=100)
    spanish = report.group("Spanish")
    assert spanish.auc.value is None and spanish.auc.ci_low is None
    assert "no negatives" in spanish.note
    assert spanish.fpr is None and spanish.tpr is not None
    assert spanish.roc is None
    assert any("AUC undefined (a single class) for Spanish" in note for note in report.notes)
    others = (0, 2, -1)
    overall = roc_auc_score(y, scores)
    groups = [roc_auc_score(y[codes == c], scores[codes == c]) for c in others]
    assert report.es_auc.value == pytest.approx(
        overall / (1 + sum(abs(g - overall) for g in groups)))


def test_single_class_data_is_reported_not_raised() -> None:
    y, scores, codes = _data()
    report = audit_attribute(np.zeros_like(y), scores, codes, group_names=LANGUAGE,
                             n_bootstrap=20)
    assert report.auc.value is None and "single class" in report.auc.note
    assert report.es_auc.value is None and report.worst_group is None
    assert report.dpd.value is not None  # selection rates stay defined


def test_intersection_groups_are_named_and_audited_like_any_attribute() -> None:
    rng = np.random.default_rng(8)
    race = rng.choice([0, 1, 2], size=900)
    gender = rng.choice([0, 1], size=900)
    ethnicity = rng.choice([0, 1, -1], size=900)
    codes, names = intersect_groups(
        [race, gender], [{0: "Asian", 1: "Black", 2: "White"}, {0: "Female", 1: "Male"}])
    assert sorted(names.values()) == sorted(
        f"{r} & {g}" for r in ("Asian", "Black", "White") for g in ("Female", "Male"))
    y = rng.integers(0, 2, 900)
    scores = rng.random(900) + 0.4 * y
    report = audit_attribute(y, scores, codes, group_names=names, min_n=1, n_bootstrap=0)
    black_female = report.group("Black & Female")
    mask = (race == 1) & (gender == 0)
    assert black_female.n == mask.sum()
    assert black_female.auc.value == pytest.approx(roc_auc_score(y[mask], scores[mask]))

    with_unknown, _ = intersect_groups([race, ethnicity], [{0: "A", 1: "B", 2: "W"},
                                                           {0: "NH", 1: "H"}])
    np.testing.assert_array_equal(with_unknown == -1, ethnicity == -1)
    assert len(np.unique(with_unknown[ethnicity != -1])) == 6


def test_intersection_rejects_mismatched_inputs() -> None:
    with pytest.raises(ConfigError):
        intersect_groups([np.zeros(3, dtype=int)], [{0: "a"}, {0: "b"}])
    with pytest.raises(DataError, match="differ in length"):
        intersect_groups([np.zeros(3, dtype=int), np.zeros(4, dtype=int)], [{0: "a"}, {0: "b"}])


@pytest.mark.parametrize(("change", "message"), [
    ({"y_true": np.array([0, 1, 2, 1])}, "expected binary labels"),
    ({"y_score": np.array([0.1, np.nan, 0.3, 0.4])}, "NaN or infinite"),
    ({"y_score": np.array([0.1, 0.2])}, "expected one of each per pair"),
    ({"codes": np.array([0.5, 1, 0, 1])}, "integer group codes"),
])
def test_bad_arrays_raise_one_line_data_errors(change: dict, message: str) -> None:
    arguments = {"y_true": np.array([0, 1, 0, 1]), "y_score": np.array([0.1, 0.2, 0.3, 0.4]),
                 "codes": np.array([0, 0, 1, 1])}
    arguments.update(change)
    with pytest.raises(DataError, match=message) as caught:
        audit_attribute(arguments["y_true"], arguments["y_score"], arguments["codes"],
                        group_names={0: "a", 1: "b"})
    assert "\n" not in str(caught.value)


def test_group_names_must_be_distinct() -> None:
    y, scores, codes = _data()
    with pytest.raises(ConfigError, match="'English' is given to several codes"):
        audit_attribute(y, scores, codes, group_names={0: "English", 1: "English", 2: "Other"})
