"""The Harvard-FairVLMed loader on small trees written here, one per layout variant."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import fairvlm.data.fairvlmed as fairvlmed
from fairvlm.data import load_dataset, load_fairvlmed, read_image
from fairvlm.errors import DataError

SPLIT_SIZES = {"Training": 6, "Validation": 2, "Test": 4}
LONG_NOTE = ("Patient with elevated intraocular pressure of 24 mmHg in both eyes, cup-to-disc "
             "ratio 0.7 right and 0.75 left, superior arcuate defect on Humphrey 24-2, started "
             "latanoprost nightly; follow up in three months with repeat visual fields and OCT.")


def subject(index: int) -> dict:
    """The fields of subject ``index``: every code of every attribute occurs, -1 included."""
    return {
        "glaucoma": index % 2, "race": index % 3, "gender": (index // 2) % 2,
        "ethnicity": [0, 1, -1][index % 3], "language": [0, 1, 2, -1][index % 4],
        "maritalstatus": index % 5 - 1, "age": 50.0 + index, "md": -0.5 * index,
    }


def fundus(index: int) -> np.ndarray:
    """A float image in [0, 255], as FairVLMed stores ``slo_fundus``."""
    return ((np.arange(48, dtype=np.float32).reshape(8, 6) * 5 + index) % 256).astype(np.float32)


def write_npz(path: Path, index: int, *, drop: tuple[str, ...] = (), with_note: bool = True,
              **override) -> None:
    fields = {"slo_fundus": fundus(index), **subject(index), "tds": np.zeros(52)}
    if with_note:
        fields["note"] = f"{LONG_NOTE} Subject {index}."
    fields.update(override)
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in fields.items() if k not in drop})


def make_tree(root: Path, *, test_folder: str = "Test", note: bool = True,
              drop: tuple[str, ...] = ()) -> list[str]:
    """Write Training/Validation/<test_folder>; return the ids in loader order."""
    ids = []
    index = 0
    for folder, size in SPLIT_SIZES.items():
        target = root / (test_folder if folder == "Test" else folder)
        target.mkdir(parents=True)
        for _ in range(size):
            write_npz(target / f"data_{index:05d}.npz", index, with_note=note, drop=drop)
            ids.append(f"data_{index:05d}")
            index += 1
    return ids


def write_notes(path: Path, ids: list[str], *, key: str = "filename",
                summary_column: str = "gpt4_summary") -> dict[str, str]:
    summaries = {i: f"summary of {i}: " + LONG_NOTE for i in ids}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([key, "note", summary_column])
        for i in ids:
            writer.writerow([f"{i}.npz", f"original note of {i}", summaries[i]])
    return summaries


def test_loads_splits_labels_codes_and_lazy_image_refs(tmp_path):
    ids = make_tree(tmp_path)
    table = load_fairvlmed(tmp_path)
    frame = table.frame
    assert frame["id"].tolist() == ids
    assert frame["split"].tolist() == ["train"] * 6 + ["val"] * 2 + ["test"] * 4
    expected = [subject(i) for i in range(len(ids))]
    assert frame["label"].tolist() == [s["glaucoma"] for s in expected]
    assert set(table.attributes) == {"race", "gender", "ethnicity", "language", "maritalstatus"}
    names = {
        "race": ["Asian", "Black", "White"], "gender": ["Female", "Male"],
        "ethnicity": ["non-Hispanic", "Hispanic"], "language": ["English", "Spanish", "Other"],
    }
    for attribute, groups in names.items():
        codes = [s[attribute] for s in expected]
        assert frame[attribute].tolist() == codes
        assert table.attribute(attribute).names(np.array(codes)).tolist() == [
            "unknown" if c == -1 else groups[c] for c in codes]
    assert table.attribute("maritalstatus").group_name(3) == "Widowed"
    np.testing.assert_allclose(frame["age"], [s["age"] for s in expected])
    np.testing.assert_allclose(frame["md"], [s["md"] for s in expected])
    assert frame["text"].iloc[0] == f"{LONG_NOTE} Subject 0."  # full note, not cut at 180
    assert len(frame["text"].iloc[0]) > 180
    first = frame["image"].iloc[0]
    assert first == f"{tmp_path / 'Training' / 'data_00000.npz'}::slo_fundus"
    np.testing.assert_allclose(read_image(first), fundus(0) / 255.0, atol=1e-7)
    assert "npz field 'note'" in table.source and "'glaucoma'" in table.source
    assert table.warnings == []


def test_testing_folder_is_the_test_split(tmp_path):
    make_tree(tmp_path, test_folder="Testing")
    table = load_fairvlmed(tmp_path)
    assert (table.frame["split"] == "test").sum() == SPLIT_SIZES["Test"]
    assert "Testing 4" in table.source


def test_both_test_folders_refused(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "Testing").mkdir()
    with pytest.raises(DataError, match="both Test and Testing exist; expected exactly one"):
        load_fairvlmed(tmp_path)


@pytest.mark.parametrize("notes_file", ["gpt4_summarized_notes.csv",
                                        "gpt-4_summarized_notes.csv"])
def test_notes_csv_variants_use_the_summary_column(tmp_path, notes_file):
    ids = make_tree(tmp_path, note=False)
    summaries = write_notes(tmp_path / notes_file, ids)
    table = load_fairvlmed(tmp_path)
    assert table.frame["text"].tolist() == [summaries[i] for i in ids]
    assert f"notes: {notes_file} column 'gpt4_summary', keyed by column 'filename'" in \
        table.source


def test_notes_csv_wins_over_npz_note_and_column_can_be_named(tmp_path):
    ids = make_tree(tmp_path, note=True)
    write_notes(tmp_path / "gpt4_summarized_notes.csv", ids, key="File Name",
                summary_column="Summarized Note")
    table = load_fairvlmed(tmp_path)
    assert table.frame["text"].iloc[3] == f"summary of {ids[3]}: {LONG_NOTE}"
    assert "column 'Summarized Note', keyed by column 'File Name'" in table.source
    original = load_fairvlmed(tmp_path, notes_column="note")
    assert original.frame["text"].tolist() == [f"original note of {i}" for i in ids]
    with pytest.raises(DataError, match=r"no column 'nope'.*expected the note column"):
        load_fairvlmed(tmp_path, notes_column="nope")


def test_data_summary_fills_string_valued_attributes(tmp_path):
    ids = make_tree(tmp_path, drop=("race", "gender"))
    races = ["White", "Black or African American", "asian", "unknown"]
    genders = ["female", "Male", "F", "m"]
    with (tmp_path / "data_summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "race", "gender", "use"])
        for n, i in enumerate(ids):
            writer.writerow([f"{i}.npz", races[n % 4], genders[n % 4], "training"])
    table = load_fairvlmed(tmp_path)
    assert table.frame["race"].tolist() == [[2, 1, 0, -1][n % 4] for n in range(len(ids))]
    assert table.frame["gender"].tolist() == [[0, 1, 0, 1][n % 4] for n in range(len(ids))]
    assert table.frame["language"].tolist() == [subject(n)["language"] for n in range(len(ids))]
    assert "data_summary.csv filled gender for 12 files, race for 12 files" in table.source


def test_string_valued_npz_fields_are_mapped(tmp_path):
    make_tree(tmp_path)
    write_npz(tmp_path / "Training" / "data_00000.npz", 0, race="Black", glaucoma="yes",
              language="Spanish")
    row = load_fairvlmed(tmp_path).frame.iloc[0]
    assert (row["race"], row["label"], row["language"]) == (1, 1, 1)


def test_missing_field_without_summary_refused(tmp_path):
    make_tree(tmp_path)
    write_npz(tmp_path / "Validation" / "data_00006.npz", 6, drop=("race",))
    with pytest.raises(DataError, match=r"data_00006\.npz: no field 'race' \(nor a "
                                        r"data_summary\.csv value\)"):
        load_fairvlmed(tmp_path)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("race", 7, r"field race: 7; expected one of 0 \(Asian\), 1 \(Black\), 2 \(White\) or -1"),
    ("gender", "robot", r"field gender: 'robot'; expected one of 0 \(Female\)"),
    ("glaucoma", 2, r"field glaucoma: 2 is not binary; expected 0"),
])
def test_bad_codes_and_labels_refused(tmp_path, field, value, message):
    make_tree(tmp_path)
    write_npz(tmp_path / "Test" / "data_00009.npz", 9, **{field: value})
    with pytest.raises(DataError, match=rf"data_00009\.npz: {message}"):
        load_fairvlmed(tmp_path)


def test_one_value_fields_are_kept_as_python_scalars(tmp_path):
    """No record keeps an array, which would be a view of its archive member's bytes."""
    make_tree(tmp_path)
    path = tmp_path / "Training" / "data_00004.npz"
    write_npz(path, 4, gender=np.bytes_(b"Male"))
    fields = fairvlmed._read_npz(path, "train", "slo_fundus").fields
    assert {name: type(value) for name, value in fields.items()} == {
        "glaucoma": int, "race": int, "gender": bytes, "ethnicity": int, "language": int,
        "maritalstatus": int, "age": float, "md": float, "note": str}
    assert (fields["race"], fields["md"], fields["gender"]) == (1, -2.0, b"Male")
    assert load_fairvlmed(tmp_path).frame.loc[4, "gender"] == 1


def test_field_of_several_values_refused_not_skipped(tmp_path):
    make_tree(tmp_path)
    path = tmp_path / "Validation" / "data_00007.npz"
    write_npz(path, 7, race=np.array([0, 2]))
    with pytest.raises(DataError) as error:
        load_fairvlmed(tmp_path)
    assert str(error.value) == f"{path}: field race has shape (2,); expected a single value"


def test_missing_split_folder_refused(tmp_path):
    make_tree(tmp_path)
    for path in (tmp_path / "Validation").iterdir():
        path.unlink()
    (tmp_path / "Validation").rmdir()
    with pytest.raises(DataError, match=r"missing split folder\(s\) Validation; expected "
                                        r"Training, Validation and Test \(or Testing\)"):
        load_fairvlmed(tmp_path)


def test_npz_without_slo_fundus_is_skipped_or_refused(tmp_path):
    make_tree(tmp_path)
    bad = tmp_path / "Training" / "data_00002.npz"
    write_npz(bad, 2, drop=("slo_fundus",), image=fundus(2))
    table = load_fairvlmed(tmp_path)
    assert len(table) == 11 and "data_00002" not in set(table.ids)
    assert table.warnings[0].startswith("skipped 1 of 12 npz files")
    assert f"{bad}: no array 'slo_fundus'" in table.warnings[1]
    with pytest.raises(DataError, match=r"data_00002\.npz: no array 'slo_fundus' \(has: .*"
                                        r"image.*\); expected the fundus image"):
        load_fairvlmed(tmp_path, strict=True)
    assert len(load_fairvlmed(tmp_path, image_key="image")) == 1  # the one with that key


def test_truncated_npz_is_skipped_and_counted_or_refused(tmp_path):
    make_tree(tmp_path)
    for name in ("data_00001.npz", "data_00004.npz"):
        path = tmp_path / "Training" / name
        path.write_bytes(path.read_bytes()[:300])
    table = load_fairvlmed(tmp_path)
    assert len(table) == 10
    assert table.warnings[0].startswith("skipped 2 of 12 npz files that cannot be read")
    assert "data_00001.npz: not a readable npz archive" in table.warnings[1]
    with pytest.raises(DataError, match=r"data_00001\.npz: not a readable npz archive"):
        load_fairvlmed(tmp_path, strict=True)


def test_images_are_not_decoded_unless_strict(tmp_path, monkeypatch):
    make_tree(tmp_path)
    broken = np.full((8, 6), np.nan, dtype=np.float32)
    write_npz(tmp_path / "Test" / "data_00010.npz", 10, slo_fundus=broken)
    assert len(load_fairvlmed(tmp_path)) == 12  # the image is not read at load time
    with pytest.raises(DataError, match=r"data_00010\.npz: pixel values contain NaN"):
        load_fairvlmed(tmp_path, strict=True)

    def no_decoding(ref):
        raise AssertionError(f"decoded {ref}")

    monkeypatch.setattr(fairvlmed, "read_image", no_decoding)
    assert len(load_fairvlmed(tmp_path)) == 12


def test_notes_csv_matching_no_npz_refused(tmp_path):
    make_tree(tmp_path, note=False)
    write_notes(tmp_path / "gpt4_summarized_notes.csv", [f"scan_{i}" for i in range(12)])
    with pytest.raises(DataError, match=r"gpt4_summarized_notes\.csv: field filename: none of "
                                        r"its 12 ids match an npz file \(e\.g\. 'scan_0'\); "
                                        r"expected npz file names such as data_00000\.npz"):
        load_fairvlmed(tmp_path)


def test_notes_csv_gaps_refused_and_extra_rows_counted(tmp_path):
    ids = make_tree(tmp_path, note=False)
    write_notes(tmp_path / "gpt4_summarized_notes.csv", [*ids, "data_99999"])
    table = load_fairvlmed(tmp_path)
    assert table.warnings == ["gpt4_summarized_notes.csv: 1 rows match no usable npz file and "
                              "were ignored"]
    write_notes(tmp_path / "gpt4_summarized_notes.csv", ids[:-1])
    with pytest.raises(DataError, match=r"no note for 1 npz file\(s\), e\.g\. data_00011\.npz"):
        load_fairvlmed(tmp_path)


def test_no_notes_anywhere_refused(tmp_path):
    make_tree(tmp_path, note=False)
    with pytest.raises(DataError, match="no field 'note' and no notes file"):
        load_fairvlmed(tmp_path)


def test_empty_data_set_refused(tmp_path):
    for folder in SPLIT_SIZES:
        (tmp_path / folder).mkdir()
    with pytest.raises(DataError, match=r"no \.npz files in Training, Validation, Test; "
                                        r"expected data_XXXXX\.npz files"):
        load_fairvlmed(tmp_path)
    (tmp_path / "Training" / "data_00000.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match=r"none of the 1 npz files can be used; first problem: "
                                        r".*data_00000\.npz: not a readable npz archive"):
        load_fairvlmed(tmp_path)


def test_non_utf8_notes_csv_refused_with_offset(tmp_path):
    ids = make_tree(tmp_path, note=False)
    lines = ["filename,note,gpt4_summary"] + [f"{i}.npz,x,fine" for i in ids]
    raw = "\n".join(lines).encode("utf-8").replace(b"fine", b"caf\xe9", 1)
    (tmp_path / "gpt4_summarized_notes.csv").write_bytes(raw)
    offset = raw.index(b"\xe9")
    with pytest.raises(DataError, match=rf"gpt4_summarized_notes\.csv: not UTF-8 text \(byte "
                                        rf"0xe9 at offset {offset}, line 2\); expected UTF-8"):
        load_fairvlmed(tmp_path)


def test_non_utf8_note_bytes_in_npz_refused(tmp_path):
    make_tree(tmp_path)
    path = tmp_path / "Training" / "data_00003.npz"
    write_npz(path, 3, note=np.bytes_(b"two\nlines ol\xe9"))
    with pytest.raises(DataError) as error:
        load_fairvlmed(tmp_path)
    assert str(error.value) == (f"{path}: field note: not UTF-8 text (byte 0xe9 at offset 12, "
                                "line 2); expected UTF-8, re-save the file as UTF-8")


def test_fingerprint_is_stable_and_sees_edits(tmp_path):
    ids = make_tree(tmp_path, note=False)
    write_notes(tmp_path / "gpt4_summarized_notes.csv", ids)
    first = load_fairvlmed(tmp_path).fingerprint()
    assert load_fairvlmed(tmp_path).fingerprint() == first
    assert load_dataset(tmp_path).fingerprint() == first
    summaries = write_notes(tmp_path / "gpt4_summarized_notes.csv", ids)
    summaries[ids[5]] += " Edited."
    with (tmp_path / "gpt4_summarized_notes.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "note", "gpt4_summary"])
        writer.writerows([f"{i}.npz", "n", summaries[i]] for i in ids)
    edited_note = load_fairvlmed(tmp_path).fingerprint()
    assert edited_note != first
    image = fundus(7)
    image[3, 3] += 1.0  # one pixel, same shape and file layout
    write_npz(tmp_path / "Validation" / "data_00007.npz", 7, with_note=False,
              slo_fundus=image)
    assert load_fairvlmed(tmp_path).fingerprint() not in (first, edited_note)


def test_duplicate_ids_across_splits_refused(tmp_path):
    make_tree(tmp_path)
    write_npz(tmp_path / "Test" / "data_00000.npz", 0)
    with pytest.raises(DataError, match="field id: duplicate sample id 'data_00000'"):
        load_fairvlmed(tmp_path)


def test_only_generated_demo_folders_are_synthetic(tmp_path, small_demo_dir):
    make_tree(tmp_path)
    assert load_fairvlmed(tmp_path).synthetic is False  # no demo_config.json
    demo = load_fairvlmed(small_demo_dir)
    assert demo.synthetic is True and demo.subset("test").synthetic is True
