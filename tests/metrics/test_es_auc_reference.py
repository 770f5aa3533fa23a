"""ES-AUC reproduces the equity-scaled AUCs published in the FairCLIP README."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairvlm.metrics import audit_attribute, equity_scaled

# A copy of the table published in the FairCLIP repository README (see the file's header).
TABLE = Path(__file__).with_name("fairclip_readme_table.csv")
GROUP_COLUMNS = {
    "race": ("auc_asian", "auc_black", "auc_white"),
    "gender": ("auc_female", "auc_male"),
    "ethnicity": ("auc_non_hispanic", "auc_hispanic"),
}
# Every input and output is rounded to 4 places: the recomputed value may differ by a few 1e-5.
ROUNDING_TOLERANCE = 2e-4


def _rows() -> list[dict[str, str]]:
    with TABLE.open(newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _cases() -> list[tuple[str, str]]:
    return [(method, attribute) for method in ("CLIP", "FairCLIP (race)", "FairCLIP (gender)",
                                               "FairCLIP (ethnicity)")
            for attribute in GROUP_COLUMNS]


@pytest.mark.parametrize(("method", "attribute"), _cases())
def test_es_auc_matches_published_table(method: str, attribute: str) -> None:
    row = next(r for r in _rows() if r["method"] == method)
    group_aucs = np.array([float(row[c]) for c in GROUP_COLUMNS[attribute]])
    value = float(equity_scaled(float(row["auc"]), group_aucs))
    assert abs(value - float(row[f"es_auc_{attribute}"])) <= ROUNDING_TOLERANCE


def test_clip_race_es_auc_is_0_6464_to_four_places() -> None:
    row = next(r for r in _rows() if r["method"] == "CLIP")
    group_aucs = [float(row[c]) for c in GROUP_COLUMNS["race"]]
    value = float(equity_scaled(float(row["auc"]), np.array(group_aucs)))
    assert round(value, 4) == 0.6464
    assert row["es_auc_race"] == "0.6464"


def test_audit_es_auc_equals_formula_on_sklearn_group_aucs() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1200)
    codes = rng.integers(0, 3, y.size)
    scores = rng.normal(size=y.size) + y * (0.5 + 0.4 * codes)
    report = audit_attribute(y, scores, codes, group_names={0: "a", 1: "b", 2: "c"},
                             n_bootstrap=0)
    overall = roc_auc_score(y, scores)
    groups = [roc_auc_score(y[codes == c], scores[codes == c]) for c in range(3)]
    expected = overall / (1 + sum(abs(g - overall) for g in groups))
    assert report.es_auc.value == pytest.approx(expected, abs=1e-12)
    assert report.worst_group_auc.value == pytest.approx(min(groups), abs=1e-12)
    assert report.auc_gap.value == pytest.approx(max(groups) - min(groups), abs=1e-12)
    assert report.worst_group == "a" and report.best_group == "c"
    assert math.isclose(report.auc.value, overall, abs_tol=1e-12)
