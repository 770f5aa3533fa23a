"""Tests of the synthetic demo generator (fairvlm.data.demo) and the ``fairvlm demo`` command."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fairvlm.cli import main
from fairvlm.data import demo
from fairvlm.data.demo import DemoConfig, generate_demo, is_complete_demo, sample_subjects
from fairvlm.data.demo_images import render_fundus
from fairvlm.errors import ConfigError, DataError

TINY = DemoConfig(n_subjects=60, image_size=32, seed=3)
LARGE_N = 20000
CDR_IN_TEXT = re.compile(
    r"(?:C/D|cup-to-disc ratio|CDR|vertical c:d|cupping ~|c/d ratio of) ?(\d\.\d+)"
)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _within(observed: float, expected: float, n: int, slack: float = 0.0) -> bool:
    """|observed - expected| within 4 binomial standard errors (plus ``slack``)."""
    return abs(observed - expected) <= 4 * math.sqrt(expected * (1 - expected) / n) + slack


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    """A large subject table (no images written) for proportions and rates."""
    return sample_subjects(DemoConfig(n_subjects=LARGE_N, image_size=32, seed=11))


@pytest.fixture(scope="module")
def truth(small_demo_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(small_demo_dir / "demo_truth.csv")
    return frame.fillna({"partner_filename": "", "duplicate_role": ""})


@pytest.fixture(scope="module")
def notes(small_demo_dir: Path) -> pd.Series:
    frame = pd.read_csv(small_demo_dir / "gpt4_summarized_notes.csv")
    return frame.set_index("filename")["gpt4_summary"]


def _npz(root: Path, row: pd.Series) -> dict[str, np.ndarray]:
    """The fields of the npz that truth row ``row`` describes."""
    with np.load(root / row["split"] / row["filename"]) as data:
        return {k: data[k] for k in data.files}


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_trees_and_another_seed_differs(tmp_path: Path) -> None:
    first = _tree_bytes(generate_demo(tmp_path / "a", TINY))
    second = _tree_bytes(generate_demo(tmp_path / "b", TINY))
    other = _tree_bytes(generate_demo(tmp_path / "c", replace(TINY, seed=4)))
    assert first == second
    assert first.keys() == other.keys()
    npz_names = [name for name in first if name.endswith(".npz")]
    assert len(npz_names) == TINY.n_subjects
    assert all(first[name] != other[name] for name in npz_names)
    assert first["demo_truth.csv"] != other["demo_truth.csv"]


def test_adding_an_evaluation_set_leaves_the_main_set_unchanged(tmp_path: Path) -> None:
    plain = _tree_bytes(generate_demo(tmp_path / "plain", TINY))
    with_eval = _tree_bytes(generate_demo(tmp_path / "eval", replace(TINY, eval_size=30)))
    for name, content in plain.items():
        if name not in {"demo_config.json", "README.txt"}:
            assert with_eval[name] == content, name


# --- layout ----------------------------------------------------------------------------------


def test_layout_and_fields_follow_fairvlmed(small_demo_dir: Path, truth: pd.DataFrame,
                                            notes: pd.Series) -> None:
    counts = {f: len(list((small_demo_dir / f).glob("data_*.npz")))
              for f in ("Training", "Validation", "Test")}
    assert counts == {"Training": 168, "Validation": 24, "Test": 48}
    columns = pd.read_csv(small_demo_dir / "gpt4_summarized_notes.csv", nrows=0).columns
    assert list(columns) == ["filename", "gpt4_summary"]
    assert sorted(notes.index) == sorted(truth["filename"])
    allowed = {"glaucoma": {0, 1}, "race": {0, 1, 2}, "gender": {0, 1},
               "ethnicity": {-1, 0, 1}, "language": {-1, 0, 1, 2},
               "maritalstatus": {-1, 0, 1, 2, 3, 4}}
    for _, row in truth.iloc[::20].iterrows():
        fields = _npz(small_demo_dir, row)
        image = fields["slo_fundus"]
        assert image.dtype == np.float32 and image.shape == (64, 64)
        assert image.min() >= 0 and image.max() <= 255
        assert np.array_equal(image, np.rint(image))
        assert fields["tds"].shape == (52,)
        assert 20 <= float(fields["age"]) <= 95
        for name, codes in allowed.items():
            assert fields[name].shape == () and int(fields[name]) in codes
            if name in truth.columns:
                assert int(fields[name]) == row[name]
    manifest = json.loads((small_demo_dir / "demo_config.json").read_text())
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["notice"]
    assert manifest["config"]["seed"] == 7 and manifest["generator_version"]
    assert "SYNTHETIC" in (small_demo_dir / "README.txt").read_text()


def test_disc_is_brighter_than_the_background(small_demo_dir: Path, truth: pd.DataFrame) -> None:
    for _, row in truth.iloc[:10].iterrows():
        image = _npz(small_demo_dir, row)["slo_fundus"]
        size = image.shape[0]
        column = int(size * (0.67 if row["eye"] == 0 else 0.33))
        disc = image[size // 2 - 2:size // 2 + 3, column - 2:column + 3].mean()
        fundus = image[size // 2 - 3:size // 2 + 4, size // 2 - 3:size // 2 + 4].mean()
        corner = image[:4, :4].mean()
        assert disc > fundus + 20 > corner + 20


# --- population ------------------------------------------------------------------------------


def test_attribute_proportions_match_fairvlmed(population: pd.DataFrame) -> None:
    n = len(population)
    for code, share in zip((0, 1, 2), (0.08, 0.15, 0.77), strict=True):
        assert _within((population["race"] == code).mean(), share, n)
    for code, share in zip((0, 1, 2, -1), (0.92, 0.03, 0.03, 0.02), strict=True):
        assert _within((population["language"] == code).mean(), share, n)
    assert _within((population["gender"] == 0).mean(), 0.56, n)
    assert _within(population["glaucoma"].mean(), 0.5, n)
    assert _within((population["ethnicity"] == 1).mean(), 0.04, n, slack=0.003)
    assert _within((population["ethnicity"] == -1).mean(), 0.03, n)
    spanish = population[population["language"] == 1]
    assert (spanish["ethnicity"] == 1).mean() > 0.8
    assert population["age"].between(20, 95).all()
    assert population["split"].value_counts().to_dict() == {
        "Training": 14000, "Validation": 2000, "Test": 4000}


def test_cdr_separates_the_labels_with_the_designed_ranges(population: pd.DataFrame) -> None:
    assert roc_auc_score(population["glaucoma"], population["cdr"]) > 0.93
    black = population["race"] == 1
    plain = ~population["cdr_overlap"] & ~black
    sick = population["glaucoma"] == 1
    assert population.loc[plain & sick, "cdr"].between(0.55, 0.90).all()
    assert population.loc[plain & ~sick, "cdr"].between(0.15, 0.50).all()
    assert population.loc[population["cdr_overlap"] & ~black, "cdr"].between(0.45, 0.62).all()
    assert _within(population["cdr_overlap"].mean(), 0.15, len(population))


def test_image_borne_difficulty_for_black_patients(population: pd.DataFrame) -> None:
    black = population["race"] == 1
    healthy = (population["glaucoma"] == 0) & ~population["cdr_overlap"]
    shift = (population.loc[black & healthy, "cdr"].mean()
             - population.loc[~black & healthy, "cdr"].mean())
    assert shift == pytest.approx(0.05, abs=0.012)
    assert population.loc[black, "disc_radius"].min() >= 0.14
    assert population.loc[~black, "disc_radius"].max() <= 0.14
    assert population.loc[black, "contrast"].max() <= 0.70
    assert population.loc[~black, "contrast"].min() >= 0.80


def test_language_changes_only_the_notes(population: pd.DataFrame) -> None:
    spanish = population["language"] == 1
    english = population["language"] == 0
    own_note = population["corruption"] != "faulty_swap"  # a swapped note is someone else's
    for group, rate in ((spanish, 0.8), (english, 0.02)):
        rows = group & own_note
        assert _within(population.loc[rows, "note_terse"].mean(), rate, int(rows.sum()))
    terse = population[population["note_terse"]]
    assert terse["note_cdr"].isna().all()
    assert terse["text"].map(lambda text: CDR_IN_TEXT.search(text) is None).all()
    for column in ("contrast", "disc_radius", "cdr"):  # the images do not depend on language
        gap = population.loc[spanish, column].mean() - population.loc[english, column].mean()
        assert abs(gap) < 4 * population[column].std() / math.sqrt(spanish.sum())


def test_without_difficulty_removes_the_group_effects() -> None:
    config = DemoConfig(n_subjects=LARGE_N, image_size=32, seed=11).without_difficulty()
    frame = sample_subjects(config)
    black = frame["race"] == 1
    assert frame.loc[black, "contrast"].min() >= 0.80
    assert frame.loc[black, "disc_radius"].max() <= 0.14
    healthy = (frame["glaucoma"] == 0) & ~frame["cdr_overlap"]
    assert frame.loc[black & healthy, "cdr"].max() <= 0.50
    spanish = frame["language"] == 1
    assert frame.loc[spanish, "note_terse"].mean() < 0.1


# --- corruption ------------------------------------------------------------------------------


def test_corruption_rates_and_minority_elevation(population: pd.DataFrame) -> None:
    train = population[population["split"] == "Training"]
    assert (population.loc[population["split"] != "Training", "corruption"] == "none").all()
    spanish = train["language"] == 1
    swapped = train["corruption"] == "faulty_swap"
    assert swapped[~spanish].mean() == pytest.approx(0.05, abs=0.002)
    assert swapped[spanish].mean() == pytest.approx(0.12, abs=0.01)
    assert (train["duplicate_role"] == "copy").sum() == round(0.02 * len(train))
    assert (train["duplicate_role"] == "source").sum() == round(0.02 * len(train))
    assert train["note_swapped"].equals(swapped)
    clean = sample_subjects(DemoConfig(n_subjects=2000, image_size=32).without_corruption())
    assert (clean["corruption"] == "none").all()


def test_swapped_notes_belong_to_an_opposite_label_partner(
    small_demo_dir: Path, truth: pd.DataFrame, notes: pd.Series
) -> None:
    by_name = truth.set_index("filename", drop=False)
    swapped = truth[truth["corruption"] == "faulty_swap"]
    spanish_train = ((truth["split"] == "Training") & (truth["language"] == 1)).sum()
    assert len(swapped) == round(0.05 * (168 - spanish_train)) + round(0.12 * spanish_train)
    for _, row in swapped.iterrows():
        partner = by_name.loc[row["partner_filename"]]
        own_label = int(_npz(small_demo_dir, row)["glaucoma"])
        assert own_label != int(_npz(small_demo_dir, partner)["glaucoma"])
        assert notes[row["filename"]] == notes[row["partner_filename"]]
        assert partner["corruption"] == "none" and partner["split"] == "Training"
        written = CDR_IN_TEXT.search(notes[row["filename"]])
        if written:  # the CDR in the carried note describes the partner's eye
            assert abs(float(written.group(1)) - partner["cdr"]) < 0.3


def test_the_note_cdr_is_a_noisy_copy_of_the_true_cdr(truth: pd.DataFrame,
                                                      notes: pd.Series) -> None:
    clean = truth[(truth["corruption"] == "none") & ~truth["note_terse"]]
    errors = []
    for _, row in clean.iterrows():
        written = CDR_IN_TEXT.search(notes[row["filename"]])
        assert written, notes[row["filename"]]
        errors.append(float(written.group(1)) - row["cdr"])
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.02
    assert 0.03 < errors.std() < 0.08  # N(0, 0.05) noise plus rounding


def test_duplicate_pairs_are_near_identical_with_the_same_note(
    small_demo_dir: Path, truth: pd.DataFrame, notes: pd.Series
) -> None:
    copies = truth[truth["duplicate_role"] == "copy"]
    assert len(copies) == round(0.02 * 168)
    by_name = truth.set_index("filename", drop=False)
    for _, copy in copies.iterrows():
        source = by_name.loc[copy["partner_filename"]]
        assert source["duplicate_role"] == "source"
        a, b = _npz(small_demo_dir, copy), _npz(small_demo_dir, source)
        difference = np.abs(a["slo_fundus"] - b["slo_fundus"])
        assert 0 < difference.mean() < 0.02 * 255
        assert notes[copy["filename"]] == notes[source["filename"]]
        for name in ("glaucoma", "race", "gender", "ethnicity", "language", "age", "md"):
            assert a[name] == b[name]


# --- images ----------------------------------------------------------------------------------


def _one_disc(cdr: float, contrast: float, size: int = 96) -> np.ndarray:
    subject = {"disc_x": [0.67], "disc_y": [0.5], "disc_radius": [0.15], "cdr": [cdr],
               "contrast": [contrast], "brightness": [0.36], "eye": [0], "image_seed": [5],
               "jitter_seed": [0]}
    return render_fundus({k: np.array(v) for k, v in subject.items()}, image_size=size,
                         pixel_noise_sd=0.0)[0]


def _ring_mean(image: np.ndarray, inner: float, outer: float) -> float:
    size = image.shape[0]
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    distance = np.hypot(xx - 0.67, (yy - 0.5) / 1.08) / 0.15  # in disc radii
    return float(image[(distance >= inner) & (distance <= outer)].mean())


def test_cup_to_disc_ratio_and_contrast_are_visible_in_the_pixels() -> None:
    # between 0.3 and 0.6 disc radii: rim for CDR 0.2, cup for CDR 0.8
    small, large = _one_disc(0.2, 1.0), _one_disc(0.8, 1.0)
    cup_step = _ring_mean(large, 0.3, 0.6) - _ring_mean(small, 0.3, 0.6)
    assert cup_step == pytest.approx(0.30 * 255, rel=0.25)  # cup gain x contrast x full scale
    low_contrast = _one_disc(0.8, 0.5)
    dimmer_step = _ring_mean(low_contrast, 0.3, 0.6) - _ring_mean(_one_disc(0.2, 0.5), 0.3, 0.6)
    assert dimmer_step / cup_step == pytest.approx(0.5, abs=0.1)
    assert _ring_mean(small, 0.0, 0.8) > _ring_mean(small, 1.5, 2.5) + 40  # disc vs fundus


def test_rendering_does_not_depend_on_the_batch() -> None:
    frame = sample_subjects(TINY)
    columns = ["disc_x", "disc_y", "disc_radius", "cdr", "contrast", "brightness", "eye",
               "image_seed", "jitter_seed"]
    whole = render_fundus({c: frame[c].to_numpy() for c in columns}, image_size=32,
                          pixel_noise_sd=0.03, jitter_sd=0.01)
    part = render_fundus({c: frame[c].to_numpy()[7:9] for c in columns}, image_size=32,
                         pixel_noise_sd=0.03, jitter_sd=0.01)
    assert np.array_equal(whole[7:9], part)


# --- evaluation set --------------------------------------------------------------------------


def test_evaluation_set_is_a_separate_uncorrupted_fairvlmed_tree(tmp_path: Path) -> None:
    config = replace(TINY, eval_size=45, eval_oversample_minorities=True)
    root = generate_demo(tmp_path / "demo", config)
    evaluation = root / "eval"
    assert len(list((evaluation / "Test").glob("data_*.npz"))) == 45
    assert not any((evaluation / "Training").iterdir())
    assert not any((evaluation / "Validation").iterdir())
    eval_truth = pd.read_csv(evaluation / "demo_truth.csv")
    assert (eval_truth["corruption"] == "none").all() and (eval_truth["split"] == "Test").all()
    main_truth = pd.read_csv(root / "demo_truth.csv")
    assert not set(eval_truth["filename"]) & set(main_truth["filename"])
    assert json.loads((evaluation / "demo_config.json").read_text())["subset"] == "evaluation"
    assert "SYNTHETIC" in (evaluation / "README.txt").read_text()
    assert is_complete_demo(root, config)


def test_oversampling_balances_race_and_language_in_the_evaluation_set() -> None:
    config = DemoConfig(n_subjects=100, image_size=32, eval_size=8000,
                        eval_oversample_minorities=True)
    frame = sample_subjects(config, evaluation=True)
    for code in (0, 1, 2):
        assert _within((frame["race"] == code).mean(), 1 / 3, len(frame))
    for code in (0, 1, 2, -1):
        assert _within((frame["language"] == code).mean(), 1 / 4, len(frame))


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "field"), [
    ({"n_subjects": 5}, "n_subjects"),
    ({"swap_rate": 1.5}, "swap_rate"),
    ({"race_proportions": (0.5, 0.5, 0.5)}, "race_proportions"),
    ({"cdr_normal_range": (0.6, 0.2)}, "cdr_normal_range"),
    ({"eval_oversample_minorities": True}, "eval_oversample_minorities"),
])
def test_bad_config_values_raise_one_line(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        DemoConfig(**changes)
    assert field in str(caught.value) and "\n" not in str(caught.value)


def test_config_round_trips_through_its_json_form() -> None:
    config = DemoConfig(seed=9, eval_size=10, eval_oversample_minorities=True).without_corruption()
    assert DemoConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# --- writing safely --------------------------------------------------------------------------


def test_refuses_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        generate_demo(tmp_path, TINY)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_an_interrupted_run_leaves_no_partial_demo(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = generate_demo(tmp_path / "demo", TINY)
    before = _tree_bytes(out)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "render_fundus", fail)
    with pytest.raises(KeyboardInterrupt):
        generate_demo(out, replace(TINY, seed=5))
    with pytest.raises(KeyboardInterrupt):
        generate_demo(tmp_path / "fresh", TINY)
    assert _tree_bytes(out) == before  # the previous demo is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


# --- command line ----------------------------------------------------------------------------


def test_cli_writes_the_demo_and_prints_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--subjects", "40", "--image-size", "32", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "SYNTHETIC" in printed[0] and "40" in printed[0]
    assert len(list((out / "Training").glob("*.npz"))) == 28

    (out / "marker").write_text("")
    assert main([*args, "--if-missing"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "marker").exists()  # nothing was rewritten

    (out / "Test" / "data_00040.npz").unlink()  # an incomplete demo is rebuilt
    assert main([*args, "--if-missing"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (out / "Test" / "data_00040.npz").exists() and not (out / "marker").exists()

    assert main([*args, "--if-missing", "--seed", "5", "--no-difficulty", "--no-corruption"]) == 0
    config = json.loads((out / "demo_config.json").read_text())["config"]
    assert config["seed"] == 5 and config["swap_rate"] == 0 and config["duplicate_rate"] == 0
    assert config["normal_cdr_shift_black"] == 0


def test_cli_defaults_to_the_home_demo_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FAIRVLM_HOME", str(tmp_path))
    assert main(["demo", "--subjects", "20", "--image-size", "16", "--quiet"]) == 0
    assert (tmp_path / "demo" / "data" / "demo_config.json").is_file()
    assert str(tmp_path / "demo" / "data") in capsys.readouterr().out


def test_cli_reports_user_errors_in_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine.txt").write_text("")
    assert main(["demo", "--out", str(tmp_path), "--subjects", "20", "--quiet"]) == 2
    assert main(["demo", "--out", str(tmp_path / "x"), "--subjects", "3", "--quiet"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
