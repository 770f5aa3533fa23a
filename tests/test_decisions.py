"""The decisions file: set, overwrite, forget, exclusions, validation, atomic rewrite."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fairvlm.decisions import COLUMNS, DecisionFile, decisions_path
from fairvlm.errors import DataError

DATA_FP = "0123456789abcdef"
MODEL_FP = "f" * 32


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAIRVLM_HOME", str(tmp_path))
    return tmp_path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_decisions_are_stored_per_data_set_with_time_and_score_version(home: Path) -> None:
    book = DecisionFile(DATA_FP)
    assert book.path == home / "decisions" / f"{DATA_FP}.csv"
    assert book.read().empty and book.exclusions() == []
    when = datetime(2025, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    book.set("data_00012", "exclude", model_fingerprint=MODEL_FP, time=when)
    book.set("data_00003", "keep", model_fingerprint=MODEL_FP)
    book.set("data_00007", "wrong_note", model_fingerprint="abc")
    rows = _rows(book.path)
    assert [row["id"] for row in rows] == ["data_00003", "data_00007", "data_00012"]
    assert list(rows[0]) == list(COLUMNS)
    assert rows[2]["time"] == "2025-05-01T10:30:00+00:00"  # stored in UTC
    assert rows[2]["model_fingerprint"] == MODEL_FP and rows[2]["data_fingerprint"] == DATA_FP
    assert rows[1]["model_fingerprint"] == "abc"
    stamp = datetime.fromisoformat(rows[0]["time"])
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=5)
    assert DecisionFile(DATA_FP).exclusions() == ["data_00007", "data_00012"]
    assert DecisionFile("fedcba9876543210").read().empty  # another data set, another file


def test_a_new_decision_replaces_the_old_and_none_forgets(home: Path) -> None:
    book = DecisionFile(DATA_FP)
    book.set("a", "exclude", model_fingerprint=MODEL_FP)
    book.set("a", "keep", model_fingerprint=MODEL_FP)
    assert book.decisions() == {"a": "keep"}
    assert book.exclusions() == []
    book.set("a", None, model_fingerprint=MODEL_FP)
    assert book.decisions() == {}
    assert _rows(book.path) == []
    assert book.to_csv() == ",".join(COLUMNS) + "\n"
    with pytest.raises(ValueError, match="expected one of keep, exclude, wrong_note"):
        book.set("a", "maybe", model_fingerprint=MODEL_FP)


def test_export_is_the_file_and_no_temporary_files_remain(home: Path) -> None:
    book = DecisionFile(DATA_FP)
    for i in range(5):
        book.set(f"p{i}", ("keep", "exclude")[i % 2], model_fingerprint=MODEL_FP)
    exported = list(csv.DictReader(io.StringIO(book.to_csv())))
    assert exported == _rows(book.path)
    assert sorted(p.name for p in book.path.parent.iterdir()) == [book.path.name]


def test_a_broken_file_is_a_one_line_data_error(home: Path) -> None:
    path = decisions_path(DATA_FP)
    path.parent.mkdir(parents=True)
    path.write_text("id,decision,time,model_fingerprint,data_fingerprint\n"
                    "a,keep,t,m,d\nb,maybe,t,m,d\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"field decision: 'maybe' in row 2; expected one of"):
        DecisionFile(DATA_FP).read()
    path.write_text("id,decision\na,keep\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        DecisionFile(DATA_FP).exclusions()
    path.write_text("id,decision,time,model_fingerprint,data_fingerprint\n"
                    "a,keep,t,m,d\na,exclude,t,m,d\n", encoding="utf-8")
    with pytest.raises(DataError, match="'a' appears twice"):
        DecisionFile(DATA_FP).decisions()


def test_the_fingerprint_cannot_name_another_folder(home: Path) -> None:
    with pytest.raises(ValueError, match="hex digits"):
        decisions_path("../../etc/passwd")
