"""AppTest of the Data & model page on a small demo set.

Counts shown by the page are checked against the npz files themselves (read here with numpy,
not through fairvlm's loader).

AppTest quirk (streamlit 1.67): because the app has a ``pages/`` folder, AppTest re-runs only
the current page file after the first run, not ``app.py``; the sidebar (drawn by ``app.py``)
is therefore checked on first runs, and after an interaction through the session state it
draws from.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_driver import open_app, run, shown
from model_files import unnamed_checkpoint
from PIL import Image
from streamlit.testing.v1 import AppTest

from fairvlm.models import load_model
from fairvlm.models.architectures import DEMO_ARCH
from fairvlm.ui.state import LOADED_DATA_KEY, LOADED_MODEL_KEY, MODEL_KEY, ModelChoice

SPLIT_FOLDERS = {"train": "Training", "val": "Validation", "test": "Test"}
RACE_NAMES = {0: "Asian", 1: "Black", 2: "White"}


@pytest.fixture()
def app_home(tmp_path: Path, small_demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FAIRVLM_HOME whose built-in demo is the small demo set; it is the only root."""
    home = tmp_path / "home"
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    monkeypatch.setenv("FAIRVLM_HOME", str(home))
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", str(home))
    return home


def _npz_facts(root: Path) -> pd.DataFrame:
    """split, race and glaucoma of every npz file, read straight from the files."""
    rows = []
    for split, folder in SPLIT_FOLDERS.items():
        for path in sorted((root / folder).glob("*.npz")):
            with np.load(path) as archive:
                rows.append((split, int(archive["race"]), int(archive["glaucoma"])))
    return pd.DataFrame(rows, columns=["split", "race", "glaucoma"])



def _split_table(app: AppTest) -> pd.DataFrame:
    return next(frame.value for frame in app.dataframe if "split" in frame.value.columns)


def _group_table(app: AppTest, attribute: str) -> pd.DataFrame:
    tab = next(tab for tab in app.tabs if tab.label == attribute)
    return tab.dataframe[0].value


def test_demo_page_shows_the_right_counts(app_home: Path) -> None:
    app = open_app()
    facts = _npz_facts(app_home / "demo" / "data")
    assert not app.error
    tiles = {metric.label: metric.value for metric in app.metric}
    assert tiles["Pairs"] == f"{len(facts):,}"
    assert tiles["Test"] == str((facts["split"] == "test").sum())
    assert tiles["Positives"] == str(facts["glaucoma"].sum())

    splits = _split_table(app).set_index("split")
    for split in SPLIT_FOLDERS:
        in_split = facts[facts["split"] == split]
        assert splits.loc[split, "n"] == len(in_split)
        assert splits.loc[split, "positives"] == in_split["glaucoma"].sum()
        assert splits.loc[split, "prevalence"] == pytest.approx(in_split["glaucoma"].mean())
    assert splits.loc["total", "n"] == len(facts)

    races = _group_table(app, "race").set_index("group")
    for code, name in RACE_NAMES.items():
        members = facts[facts["race"] == code]
        assert races.loc[name, "n"] == len(members)
        assert races.loc[name, "positives"] == members["glaucoma"].sum()
        assert races.loc[name, "share"] == pytest.approx(len(members) / len(facts))

    assert any("small or have one class" in w.value for w in app.warning)
    assert len(app.get("image")) == 8
    sidebar = " ".join(str(m.value) for m in app.sidebar.markdown)
    assert "Built-in demo" in sidebar
    assert any("synthetic" in info.value for info in app.sidebar.info)


def test_count_tables_follow_the_split_choice(app_home: Path) -> None:
    app = open_app()
    app.selectbox(key="data.counts.split").set_value("test")
    run(app)
    facts = _npz_facts(app_home / "demo" / "data")
    test = facts[facts["split"] == "test"]
    races = _group_table(app, "race").set_index("group")
    assert races["n"].to_dict() == {RACE_NAMES[c]: n
                                    for c, n in sorted(Counter(test["race"]).items())}


def test_path_outside_the_roots_is_one_error_line(app_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    app = open_app()
    _load_from_server(app, outside)
    assert len(app.error) == 1
    message = shown(app.error[0].value)
    assert "outside the allowed data roots" in message and "\n" not in message
    assert str(app_home) in message
    assert any(caption.value.startswith("Hint:") for caption in app.caption)
    # The demo stays in use.
    assert {metric.label: metric.value for metric in app.metric}["Pairs"] == "240"


def test_server_folder_inside_the_roots_loads(app_home: Path, small_demo_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", f"{app_home}:{small_demo_dir.parent}")
    app = open_app()
    _load_from_server(app, small_demo_dir)
    assert not app.error
    assert any("Loaded" in s.value for s in app.success)
    loaded = app.session_state[LOADED_DATA_KEY]  # what the sidebar shows (see module docstring)
    assert (loaded.name, loaded.n_pairs) == (small_demo_dir.name, 240)
    assert Path(loaded.path) == small_demo_dir.resolve()


def test_manifest_pointing_outside_the_roots_is_refused(app_home: Path,
                                                        small_demo_dir: Path) -> None:
    first, second = sorted((small_demo_dir / "Training").glob("*.npz"))[:2]
    manifest = app_home / "pairs" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"image,text,label,split\n{first},a note,1,train\n"
                        f"{second},another note,0,test\n", encoding="utf-8")
    app = open_app()
    _load_from_server(app, manifest)
    assert len(app.error) == 1
    assert "image outside the allowed data roots" in app.error[0].value


def test_shuffle_and_filters_change_the_samples(app_home: Path) -> None:
    app = open_app()

    def shown_ids() -> list[str]:
        return [m.value.split("**")[1].replace("\\", "") for m in app.markdown
                if m.value.startswith("**data")]

    first = shown_ids()
    app.button(key="data.samples.shuffle").click()
    run(app)
    assert shown_ids() != first and len(shown_ids()) == 8
    app.selectbox(key="data.samples.attribute").set_value("race")
    run(app)
    app.selectbox(key="data.samples.race").set_value(1)
    app.selectbox(key="data.samples.split").set_value("test")
    run(app)
    facts = _npz_facts(app_home / "demo" / "data")
    black_test = ((facts["race"] == 1) & (facts["split"] == "test")).sum()
    captions = [c.value for c in app.caption if "race" in c.value]
    assert len(shown_ids()) == min(8, black_test)
    assert all("race Black" in caption for caption in captions)


def test_bad_model_spec_is_one_error_line(app_home: Path) -> None:
    app = open_app()
    app.selectbox(key="model.preset").set_value("other")
    run(app)
    app.text_input(key="model.spec").input(str(app_home / "missing.safetensors"))
    run(app)
    app.button(key="model.load").click()
    run(app)
    assert len(app.error) == 1
    assert "file not found" in app.error[0].value and "\n" not in app.error[0].value


def test_error_line_shows_a_path_with_markdown_characters_as_written(app_home: Path) -> None:
    folder = app_home / "scans__x__*2024*"
    folder.mkdir()
    app = open_app()
    _load_from_server(app, folder)
    (error,) = app.error
    assert shown(error.value) == (
        f"{folder}: neither a Harvard-FairVLMed folder nor a manifest folder; expected "
        "Training/Validation/Test folders, or manifest.csv or manifest.parquet")
    assert re.search(r"(?<!\\)[*_]", error.value) is None  # no emphasis marker left bare


def test_checkpoint_needing_its_architecture_loads_once_it_is_chosen(
        app_home: Path, tiny_checkpoint: Path) -> None:
    path = unnamed_checkpoint(tiny_checkpoint, app_home / "exported.safetensors")
    app = open_app()
    app.selectbox(key="model.preset").set_value("other")
    run(app)
    assert app.selectbox(key="model.arch").value == "infer"
    app.text_input(key="model.spec").input(str(path))
    run(app)
    app.button(key="model.load").click()
    run(app)
    (error,) = app.error
    assert shown(error.value) == (
        f"{path}: cannot tell the architecture from its 165 tensors; closest is {DEMO_ARCH}: "
        "1 with the wrong shape (logit_scale [1] vs []); choose its open_clip architecture "
        "(e.g. ViT-B-16) with --arch (command line) or the Architecture field (app)")
    assert MODEL_KEY not in app.session_state  # the model in use stays the default one

    app.selectbox(key="model.arch").set_value(DEMO_ARCH)
    run(app)
    app.button(key="model.load").click()
    run(app)
    assert not app.error, [e.value for e in app.error]
    assert app.session_state[MODEL_KEY] == ModelChoice(str(path), "auto", DEMO_ARCH)
    loaded = app.session_state[LOADED_MODEL_KEY]
    reference = load_model(str(tiny_checkpoint), device="cpu")
    assert (loaded.arch, loaded.fingerprint) == (DEMO_ARCH, reference.fingerprint)
    captions = [shown(c.value) for c in app.caption if c.value.startswith("In use:")]
    assert captions == [f"In use: {path} · {DEMO_ARCH} on {loaded.device} · weights "
                        f"`{reference.fingerprint[:16]}`"]


def _uploader(app: AppTest):
    return next(element for element in app.get("file_uploader") if element.key == "data.upload")


def _zip_folder(folder: Path, top: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def test_uploaded_zip_of_a_fairvlmed_folder_loads(app_home: Path, small_demo_dir: Path) -> None:
    app = open_app()
    app.radio(key="data.source").set_value("upload")
    run(app)
    _uploader(app).upload("fairvlmed.zip", _zip_folder(small_demo_dir, "FairVLMed"),
                          "application/zip")
    run(app)
    app.button(key="data.load_upload").click()
    run(app)
    assert not app.error
    loaded = app.session_state[LOADED_DATA_KEY]
    assert (loaded.name, loaded.n_pairs) == ("fairvlmed.zip", 240)
    assert Path(loaded.path).parent.parent == app_home / "uploads"
    assert Path(loaded.path).name == "FairVLMed"


def test_uploaded_zip_escaping_its_folder_is_refused(app_home: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/manifest.csv", "image,text,label\n")
        archive.writestr("../../escaped.txt", "bad")
    app = open_app()
    app.radio(key="data.source").set_value("upload")
    run(app)
    _uploader(app).upload("evil.zip", buffer.getvalue(), "application/zip")
    run(app)
    app.button(key="data.load_upload").click()
    run(app)
    assert len(app.error) == 1 and "absolute or escaping path" in app.error[0].value
    assert not list((app_home / "uploads").iterdir())
    assert not any(app_home.parent.rglob("escaped.txt"))


def test_uploaded_csv_manifest_with_attribute_columns(app_home: Path) -> None:
    images = app_home / "images"
    images.mkdir()
    rows = ["image,text,label,split,sex"]
    sexes = ["F", "M", "F", "F", "M", "F"]
    for i, sex in enumerate(sexes):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(images / f"im{i}.png")
        rows.append(f"{images / f'im{i}.png'},note {i},{i % 2},{('train', 'test')[i % 2]},{sex}")
    app = open_app()
    app.radio(key="data.source").set_value("upload")
    run(app)
    _uploader(app).upload("pairs.csv", "\n".join(rows).encode(), "text/csv")
    app.text_input(key="data.upload_attributes").input("sex")
    run(app)
    app.button(key="data.load_upload").click()
    run(app)
    assert not app.error
    sexes_shown = _group_table(app, "sex").set_index("group")
    assert sexes_shown["n"].to_dict() == {"F": 4, "M": 2}
    assert sexes_shown.loc["F", "positives"] == 2  # rows 0, 2, 3, 5 have labels 0, 0, 1, 1


def _load_from_server(app: AppTest, path: Path) -> None:
    """Choose "server", type ``path`` and press Load, as a user does."""
    app.radio(key="data.source").set_value("server")
    run(app)
    app.text_input(key="data.server_path").input(str(path))
    run(app)
    app.button(key="data.load_server").click()
    run(app)
