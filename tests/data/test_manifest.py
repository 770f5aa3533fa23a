"""The manifest loader (PNG, JPEG, NPY, NPZ, real DICOM files) and data-set detection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from skimage import data as skimage_data

from fairvlm.data import load_dataset, load_manifest, read_image
from fairvlm.data.manifest import stratified_split
from fairvlm.errors import ConfigError, DataError


@pytest.fixture
def images(tmp_path) -> dict[str, str]:
    """One image per format under tmp_path/images; name -> path relative to tmp_path."""
    folder = tmp_path / "images"
    folder.mkdir()
    retina = np.ascontiguousarray(skimage_data.retina()[::8, ::8])
    Image.fromarray(retina).save(folder / "retina.png")
    Image.fromarray(retina).save(folder / "retina_photo.jpg", quality=95)
    np.save(folder / "gray.npy", np.linspace(0, 1, 64).reshape(8, 8))
    np.savez_compressed(folder / "scan.npz", slo_fundus=np.full((8, 8), 128.0))
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), folder / "mr.dcm")
    return {path.stem: f"images/{path.name}" for path in sorted(folder.iterdir())}


def manifest_frame(images: dict[str, str]) -> pd.DataFrame:
    names = list(images)
    return pd.DataFrame({
        "image": [images[n] for n in names],
        "text": [f"note for {n}, cup-to-disc 0.{i + 2}" for i, n in enumerate(names)],
        "label": [i % 2 for i in range(len(names))],
        "split": ["train", "Training", "val", "test", "TEST", "train"][: len(names)],
        "race": ["White", "Black", "Asian", "White", "unknown", "Black"][: len(names)],
        "site": [3, 1, 1, 3, 2, -1][: len(names)],
    })


def test_csv_manifest_with_every_format(tmp_path, images):
    manifest_frame(images).to_csv(tmp_path / "pairs.csv", index=False)
    table = load_manifest(tmp_path / "pairs.csv", attributes=["race", "site"])
    frame = table.frame
    assert frame["id"].tolist() == list(images)  # file stems
    assert frame["split"].tolist() == ["train", "train", "val", "test", "test", "train"]
    assert frame["label"].tolist() == [0, 1, 0, 1, 0, 1]
    for ref, relative in zip(frame["image"], images.values(), strict=True):
        assert Path(ref) == tmp_path / relative
        assert read_image(ref).ndim in (2, 3)
    retina = np.asarray(Image.open(tmp_path / images["retina"]).convert("RGB")) / 255.0
    retina_ref = frame.loc[frame["id"] == "retina", "image"].item()
    np.testing.assert_allclose(read_image(retina_ref), retina, atol=1e-7)
    race = table.attribute("race")
    assert dict(race.groups) == {0: "Asian", 1: "Black", 2: "White"}  # sorted names
    assert frame["race"].tolist() == [2, 1, 0, 2, -1, 1]
    assert dict(table.attribute("site").groups) == {1: "1", 2: "2", 3: "3"}  # codes kept
    assert frame["site"].tolist() == [3, 1, 1, 3, 2, -1]
    assert "text from column 'text'" in table.source and "splits from column 'split'" in \
        table.source
    assert table.warnings == []


def test_parquet_manifest_equals_csv(tmp_path, images):
    frame = manifest_frame(images)
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    frame.to_parquet(tmp_path / "pairs.parquet")
    from_csv = load_manifest(tmp_path / "pairs.csv", attributes=["race", "site"])
    from_parquet = load_manifest(tmp_path / "pairs.parquet", attributes=["race", "site"])
    pd.testing.assert_frame_equal(from_csv.frame, from_parquet.frame)
    assert from_csv.fingerprint() == from_parquet.fingerprint()


def test_dicom_tags_fill_blank_cells(tmp_path, images):
    frame = manifest_frame(images)
    frame["sex"] = ["", "", "Female", "Male", "", ""]  # ct, gray, mr, retina, jpg, npz
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    table = load_manifest(tmp_path / "pairs.csv", attributes=["sex"], missing_as_unknown=True,
                          dicom_tags={"sex": "PatientSex", "age": "PatientAge"})
    sex = table.attribute("sex")
    names = sex.names(table.frame["sex"].to_numpy()).tolist()
    # CT_small records PatientSex "O", MR_small "F"; non-DICOM blanks stay unknown.
    assert names == ["Other", "unknown", "Female", "Male", "unknown", "unknown"]
    assert table.frame["age"].tolist()[0] == 0.0  # CT_small: PatientAge "000Y"
    assert table.frame["age"].isna().tolist() == [False, True, True, True, True, True]
    with pytest.raises(ConfigError, match=r"'PatientGender' .* is not a DICOM keyword"):
        load_manifest(tmp_path / "pairs.csv", dicom_tags={"sex": "PatientGender"})


def test_stratified_split_is_seeded_and_order_free(tmp_path):
    ids = np.array([f"s{i:03d}" for i in range(100)])
    labels = np.array([1] * 40 + [0] * 60)
    splits = stratified_split(ids, labels, seed=3)
    for label, (train, val, test) in ((1, (28, 4, 8)), (0, (42, 6, 12))):
        counts = pd.Series(splits[labels == label]).value_counts()
        assert (counts["train"], counts["val"], counts["test"]) == (train, val, test)
    order = np.random.default_rng(9).permutation(100)
    shuffled = stratified_split(ids[order], labels[order], seed=3)
    assert dict(zip(ids[order], shuffled, strict=True)) == dict(zip(ids, splits, strict=True))
    assert not np.array_equal(stratified_split(ids, labels, seed=4), splits)


def test_manifest_without_split_column_gets_the_stratified_split(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    for i in range(20):
        np.save(folder / f"x{i:02d}.npy", np.full((4, 4), i / 20))
    frame = pd.DataFrame({"image": [f"img/x{i:02d}.npy" for i in range(20)],
                          "text": [f"note {i}" for i in range(20)],
                          "label": [i % 2 for i in range(20)]})
    frame.to_csv(tmp_path / "m.csv", index=False)
    table = load_manifest(tmp_path / "m.csv", seed=5)
    expected = stratified_split(table.ids, table.labels, seed=5)
    assert table.frame["split"].tolist() == expected.tolist()
    assert "seeded split (seed 5) stratified by label" in table.source


def test_attribute_blank_refused_unless_unknown_is_asked_for(tmp_path, images):
    frame = manifest_frame(images)
    frame.loc[3, "race"] = None
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=r"pairs\.csv: field race: 1 blank value\(s\), first in "
                                        r"data row 4; expected a group for every row"):
        load_manifest(tmp_path / "pairs.csv", attributes=["race"])
    table = load_manifest(tmp_path / "pairs.csv", attributes=["race"], missing_as_unknown=True)
    assert table.frame["race"].iloc[3] == -1


def test_continuous_attribute_refused(tmp_path, images):
    frame = manifest_frame(images)
    frame["age"] = [61.5, 40, 33, 70, 52, 48]
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=r"field age: value '61\.5' is not an integer code; "
                                        r"expected categories \(bin continuous values first\)"):
        load_manifest(tmp_path / "pairs.csv", attributes=["age"])


@pytest.mark.parametrize("column", ["image", "text", "label"])
def test_missing_required_column_refused(tmp_path, images, column):
    manifest_frame(images).drop(columns=[column]).to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=rf"pairs\.csv: missing column\(s\) {column}; expected "
                                        r"columns image, text, label"):
        load_manifest(tmp_path / "pairs.csv")


def test_unknown_attribute_column_refused(tmp_path, images):
    manifest_frame(images).to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=r"attribute column\(s\) gender not found"):
        load_manifest(tmp_path / "pairs.csv", attributes=["gender"])


@pytest.mark.parametrize("bad", [2, "yes", -1, 0.5])
def test_non_binary_labels_refused(tmp_path, images, bad):
    frame = manifest_frame(images).astype({"label": object})
    frame.loc[2, "label"] = bad
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=rf"field label: '{bad}' in data row 3 is not binary; "
                                        r"expected 0 or 1"):
        load_manifest(tmp_path / "pairs.csv")


def test_bad_split_value_and_empty_text_refused(tmp_path, images):
    frame = manifest_frame(images)
    frame.loc[1, "split"] = "holdout"
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match="field split: 'holdout' in data row 2; expected train"):
        load_manifest(tmp_path / "pairs.csv")
    frame = manifest_frame(images)
    frame.loc[5, "text"] = "   "
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match="field text: empty text in data row 6"):
        load_manifest(tmp_path / "pairs.csv")


def test_non_utf8_manifest_refused(tmp_path, images):
    manifest_frame(images).to_csv(tmp_path / "pairs.csv", index=False, encoding="latin-1")
    raw = (tmp_path / "pairs.csv").read_bytes().replace(b"note for mr", b"note f\xfcr mr")
    (tmp_path / "pairs.csv").write_bytes(raw)
    offset = raw.index(b"\xfc")
    with pytest.raises(DataError, match=rf"pairs\.csv: not UTF-8 text \(byte 0xfc at offset "
                                        rf"{offset}, line 4\); expected UTF-8"):
        load_manifest(tmp_path / "pairs.csv")


def test_empty_manifest_refused(tmp_path):
    (tmp_path / "pairs.csv").write_text("image,text,label\n")
    with pytest.raises(DataError, match="no rows; expected at least one image-text pair"):
        load_manifest(tmp_path / "pairs.csv")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        load_manifest(tmp_path / "blank.csv")


def test_broken_images_skipped_and_counted_or_refused(tmp_path, images):
    folder = tmp_path / "images"
    for name in ("retina.png", "ct.dcm"):
        raw = (folder / name).read_bytes()
        (folder / name).write_bytes(raw[: len(raw) * 3 // 4])
    frame = manifest_frame(images)
    frame.loc[len(frame)] = ["images/absent.png", "lost", 1, "train", "White", 1]
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    table = load_manifest(tmp_path / "pairs.csv")
    assert sorted(table.ids) == ["gray", "mr", "retina_photo", "scan"]
    assert table.warnings[0].startswith("skipped 3 of 7 rows whose image is missing or "
                                        "unreadable")
    assert any("ct.dcm: DICOM pixel data truncated" in w for w in table.warnings)
    assert any("retina.png: cannot decode image" in w for w in table.warnings)
    assert any("absent.png: no such file" in w for w in table.warnings)
    with pytest.raises(DataError, match=r"ct\.dcm: cannot decode DICOM pixels"):
        load_manifest(tmp_path / "pairs.csv", strict=True)


def test_ids_from_column_or_paths(tmp_path, images):
    frame = manifest_frame(images)
    frame.loc[1, "image"] = images["ct"]  # the same image in two pairs
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match="image 'images__ct' is used by several rows"):
        load_manifest(tmp_path / "pairs.csv")
    frame["pair"] = [f"p{i}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    assert load_manifest(tmp_path / "pairs.csv", id_column="pair").ids.tolist() == [
        f"p{i}" for i in range(6)]
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(tmp_path / images["gray"], other / "gray.npy")
    frame = manifest_frame(images)
    frame.loc[0, "image"] = "more/gray.npy"
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    assert load_manifest(tmp_path / "pairs.csv").ids.tolist()[:2] == ["more__gray",
                                                                     "images__gray"]


def test_load_dataset_detects_each_kind(tmp_path, images):
    frame = manifest_frame(images)
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    frame.to_parquet(tmp_path / "pairs.pq")
    assert load_dataset(tmp_path).name == "manifest"
    assert load_dataset(tmp_path / "pairs.pq", attributes=["race"]).attributes.keys() == {"race"}
    fairvlmed = tmp_path / "fairvlmed"
    for index, folder in enumerate(("Training", "Validation", "Testing")):
        (fairvlmed / folder).mkdir(parents=True)
        np.savez(fairvlmed / folder / f"data_{index}.npz", slo_fundus=np.zeros((4, 4)),
                 glaucoma=index % 2, race=index, note=f"note {index}")
    assert load_dataset(fairvlmed).frame["split"].tolist() == ["train", "val", "test"]
    with pytest.raises(ConfigError, match=r"option\(s\) attributes do not apply to fairvlmed "
                                          r"\(load_fairvlmed\)"):
        load_dataset(fairvlmed, attributes=["race"])
    with pytest.raises(DataError, match="neither a Harvard-FairVLMed folder nor a manifest"):
        load_dataset(tmp_path / "images")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"not a data set; expected a Harvard-FairVLMed folder"):
        load_dataset(tmp_path / images["ct"])


def test_no_usable_image_refused(tmp_path):
    pd.DataFrame({"image": ["a.png", "b.png"], "text": ["x", "y"], "label": [0, 1]}).to_csv(
        tmp_path / "pairs.csv", index=False)
    with pytest.raises(DataError, match=r"none of the 2 rows has a usable image; first problem: "
                                        r"data row 1: .*a\.png: no such file"):
        load_manifest(tmp_path / "pairs.csv")
