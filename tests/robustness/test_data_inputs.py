"""Malformed data sets: each refused (or its bad file skipped) with one exact line, the same
from ``fairvlm inspect`` and on the app's Data & model page, and nothing saved changes.

A case's ``kind`` says how the problem shows:

- ``error``: the data set is refused: ``inspect`` exits with status 2 and ``error: <message>``;
  the app shows the message as its one ``st.error`` and keeps the data set in use.
- ``warning``: the bad file is skipped and the rest loads: ``inspect`` lists the message under
  ``warnings:``; the app loads the rest and shows the message with ``st.warning``.
- ``strict``: only decoding the image can tell (a Harvard-FairVLMed folder is loaded without
  decoding its 10,000 images): ``inspect --strict`` refuses it; the app loads it and shows the
  message on the pair's sample card instead of the image.

Every input is written under the app's only data root, so one app session walks through all
of them (the module's two tests share the corpus; ``fairvlm inspect`` runs in process).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HEADER = ["image", "text", "label", "split"]
ID_HEADER = ["id", *HEADER]
FIFTY_MIB = 50 * 1024**2


@dataclass(frozen=True)
class DataCase:
    """A bad data set. ``build(folder, make)`` writes it into ``folder`` and returns the path
    to load; ``options`` go to ``fairvlm inspect`` (an ``--attribute NAME`` is also typed into
    the app's attribute box); ``message`` and ``names`` (what the message must name) are
    templates of ``{folder}`` and ``{data}`` (the path loaded)."""

    name: str
    build: Callable[[Path, type], Path]
    message: str
    names: tuple[str, ...] = ("{data}",)
    options: tuple[str, ...] = ()
    kind: str = "error"

    def attributes(self) -> str:
        """What the app's attribute box gets: the ``--attribute`` values, comma separated."""
        return ",".join(value for flag, value in zip(self.options, self.options[1:],
                                                      strict=False) if flag == "--attribute")


def _manifest(folder: Path, make, rows: list[list[object]], header: list[str] = HEADER,
              images: tuple[str, ...] = ("a.png", "b.png", "c.png")) -> Path:
    for value, name in enumerate(images):
        make.gray(folder / name, 40 + 60 * value)
    return make.csv(folder / "manifest.csv", header, rows)


ROWS = [["a.png", "note a", 1, "train"], ["b.png", "note b", 0, "val"],
        ["c.png", "note c", 0, "test"]]


def _with_ids(*ids: str) -> list[list[object]]:
    return [[pair_id, *row] for pair_id, row in zip(ids, ROWS, strict=True)]


def _tree(folder: Path, make, **options) -> Path:
    make.fairvlmed(folder, **options)
    return folder


def truncated_npz(folder: Path, make) -> Path:
    make.truncate(make.fairvlmed(folder)[1])
    return folder


def truncated_npz_everywhere(folder: Path, make) -> Path:
    for path in make.fairvlmed(folder):
        make.truncate(path)
    return folder


def pickle_in_npz(folder: Path, make) -> Path:
    payload = np.array([make.canary_payload(folder)], dtype=object)
    return _tree(folder, make, overrides={2: {"race": payload}})


def nan_pixels(folder: Path, make) -> Path:
    make.npy(folder / "nan.npy", np.full((8, 8), np.nan, dtype=np.float32))
    rows = [row.copy() for row in ROWS]
    rows[1][0] = "nan.npy"
    return _manifest(folder, make, rows, images=("a.png", "c.png"))


def inf_pixels_everywhere(folder: Path, make) -> Path:
    image = np.ones((6, 6), dtype=np.float64)
    image[2, 3] = np.inf
    for name in ("inf.npz", "inf2.npz"):
        np.savez(folder / name, slo_fundus=image)
    return make.csv(folder / "manifest.csv", HEADER,
                    [["inf.npz", "note a", 1, "train"], ["inf2.npz", "note b", 0, "test"]])


def nan_in_fairvlmed(folder: Path, make) -> Path:
    image = make.fundus(3)
    image[4, 2] = np.nan
    return _tree(folder, make, overrides={3: {"slo_fundus": image}})


def mixed_sizes_and_channels(folder: Path, make) -> Path:
    """Eight images of seven sizes and five channel layouts; only the 2-channel one is not an
    image (test_mixed_images_reach_the_model_alike feeds the other seven to a model)."""
    rng = np.random.default_rng(0)
    make.png(folder / "gray.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    make.png(folder / "rgb.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    make.png(folder / "rgba.png", rng.integers(0, 256, (10, 10, 4), dtype=np.uint8))
    make.png(folder / "deep.png", rng.integers(0, 65536, (9, 7), dtype=np.uint16))
    make.png(folder / "photo.jpg", rng.integers(0, 256, (20, 10, 3), dtype=np.uint8))
    make.npy(folder / "chw.npy", rng.random((3, 9, 9), dtype=np.float32))
    np.savez(folder / "scan.npz", slo_fundus=make.fundus(1))
    make.npy(folder / "two.npy", rng.random((8, 8, 2), dtype=np.float32))
    names = ["gray.png", "rgb.png", "rgba.png", "deep.png", "photo.jpg", "chw.npy", "scan.npz",
             "two.npy"]
    rows = [[name, f"note {i}", i % 2, ("train", "val", "test")[i % 3]]
            for i, name in enumerate(names)]
    return make.csv(folder / "manifest.csv", HEADER, rows)


def fifty_mib_note(folder: Path, make) -> Path:
    make.fairvlmed(folder, notes=False)
    note = ("cup-to-disc ratio 0.7, " * (FIFTY_MIB // 23 + 1))[:FIFTY_MIB]
    rows = [[f"data_{i:05d}.npz", note if i == 4 else f"summary {i}"] for i in range(7)]
    make.csv(folder / "gpt4_summarized_notes.csv", ["filename", "gpt4_summary"], rows)
    return folder


def long_note_in_manifest(folder: Path, make) -> Path:
    rows = [row.copy() for row in ROWS]
    rows[1][1] = "w" * 100_001
    return _manifest(folder, make, rows)


def latin1_notes(folder: Path, make) -> Path:
    make.fairvlmed(folder, notes=False)
    rows = [[f"data_{i:05d}.npz", "café note" if i == 0 else f"summary {i}"] for i in range(7)]
    make.csv(folder / "gpt4_summarized_notes.csv", ["filename", "gpt4_summary"], rows,
             encoding="latin-1")
    return folder


def npz_in_two_splits(folder: Path, make) -> Path:
    first = make.fairvlmed(folder)[0]
    shutil.copy(first, folder / "Test" / first.name)
    return folder


def two_hundred_groups(folder: Path, make) -> Path:
    make.gray(folder / "a.png")
    rows = [[f"r{i}", "a.png", f"note {i}", i % 2, ("train", "val", "test")[i % 3],
             f"site{i % 200:03d}"] for i in range(400)]
    return make.csv(folder / "manifest.csv", [*ID_HEADER, "site"], rows)


def no_split_folder(folder: Path, make) -> Path:
    make.fairvlmed(folder)
    shutil.rmtree(folder / "Validation")
    return folder


def _bytes(name: str, content: bytes) -> Callable[[Path, type], Path]:
    def build(folder: Path, make) -> Path:
        (folder / name).write_bytes(content)
        return folder / name
    return build


def _rows(rows: list[list[object]], header: list[str] = HEADER) -> Callable[[Path, type], Path]:
    return lambda folder, make: _manifest(folder, make, rows, header)


def _replace(row: int, column: int, value: object) -> list[list[object]]:
    rows = [list(r) for r in ROWS]
    rows[row][column] = value
    return rows


NO_NPZ = "expected a complete numpy .npz file"
NOT_FINITE = "pixel values contain NaN or inf; expected finite values"
CASES = [
    DataCase("truncated-npz", truncated_npz, kind="warning",
             message=f"{{folder}}/Training/data_00001.npz: not a readable npz archive (File is "
                     f"not a zip file); {NO_NPZ}",
             names=("{folder}/Training/data_00001.npz",)),
    DataCase("truncated-npz-everywhere", truncated_npz_everywhere,
             message="{folder}: none of the 7 npz files can be used; first problem: "
                     f"{{folder}}/Training/data_00000.npz: not a readable npz archive (File is "
                     f"not a zip file); {NO_NPZ}"),
    DataCase("pickle-payload-in-npz", pickle_in_npz, kind="warning",
             message="{folder}/Training/data_00002.npz: array 'race' holds Python objects; "
                     "expected an intact numpy array that needs no unpickling",
             names=("{folder}/Training/data_00002.npz", "'race'")),
    DataCase("nan-pixels", nan_pixels, kind="warning",
             message=f"data row 2: {{folder}}/nan.npy: {NOT_FINITE}",
             names=("{folder}/nan.npy", "data row 2")),
    DataCase("inf-pixels-everywhere", inf_pixels_everywhere,
             message="{data}: none of the 2 rows has a usable image; first problem: data row "
                     f"1: {{folder}}/inf.npz: {NOT_FINITE}",
             names=("{data}", "{folder}/inf.npz")),
    DataCase("nan-pixels-fairvlmed", nan_in_fairvlmed, kind="strict",
             message=f"{{folder}}/Validation/data_00003.npz: {NOT_FINITE}",
             names=("{folder}/Validation/data_00003.npz",)),
    DataCase("mixed-sizes-and-channels", mixed_sizes_and_channels, kind="warning",
             message="data row 8: {folder}/two.npy: array of shape (8, 8, 2); expected a 2-D "
                     "grayscale (H x W) or RGB (H x W x 3) image",
             names=("{folder}/two.npy",)),
    DataCase("fifty-mib-note", fifty_mib_note,
             message="{folder}/gpt4_summarized_notes.csv: field gpt4_summary of data_00004: a "
                     "note of 52,428,800 characters; expected at most 100,000 (check that this "
                     "column holds the notes)",
             names=("{folder}/gpt4_summarized_notes.csv", "field gpt4_summary")),
    DataCase("long-note-in-manifest", long_note_in_manifest,
             message="{data}: field text in data row 2: a note of 100,001 characters; "
                     "expected at most 100,000 (check that this column holds the notes)",
             names=("{data}", "field text")),
    DataCase("notes-not-utf8", latin1_notes,
             message="{folder}/gpt4_summarized_notes.csv: not UTF-8 text (byte 0xe9 at offset "
                     "40, line 2); expected UTF-8, re-save the file as UTF-8",
             names=("{folder}/gpt4_summarized_notes.csv",)),
    DataCase("duplicate-ids", _rows(_with_ids("p1", "p2", "p1"), ID_HEADER),
             message="{data}: field id: 'p1' in data rows 1 and 3; expected a unique id per "
                     "row",
             names=("{data}", "field id")),
    DataCase("npz-in-two-splits", npz_in_two_splits,
             message="{folder}: field id: duplicate sample id 'data_00000' "
                     "(Training/data_00000.npz and Test/data_00000.npz); expected each npz file "
                     "name once across the split folders",
             names=("{folder}", "Test/data_00000.npz")),
    DataCase("id-with-path-separator", _rows(_with_ids("scans/p1", "p2", "p3"), ID_HEADER),
             message="{data}: field id: 'scans/p1' in data row 1 is not a plain name; expected "
                     "an id without / or \\, other than . and ..",
             names=("{data}", "field id")),
    DataCase("id-dot-dot", _rows(_with_ids("p1", "..", "p3"), ID_HEADER),
             message="{data}: field id: '..' in data row 2 is not a plain name; expected an id "
                     "without / or \\, other than . and ..",
             names=("{data}", "field id")),
    DataCase("attribute-with-200-groups", two_hundred_groups, options=("--attribute", "site"),
             message="{data}: field site: 200 groups; expected at most 100 per protected "
                     "attribute (merge rare values or bin them; an id or a measurement is not a "
                     "protected attribute)",
             names=("{data}", "field site")),
    DataCase("attribute-not-in-manifest", _rows(ROWS), options=("--attribute", "religion"),
             message="{data}: attribute column(s) religion not found; expected columns of the "
                     "manifest (found: image, text, label, split)",
             names=("{data}", "religion")),
    DataCase("attribute-not-in-fairvlmed", _tree, options=("--attribute", "religion"),
             message="attribute 'religion' is not in the data; available: race, gender, "
                     "ethnicity, language, maritalstatus",
             names=("religion",)),
    DataCase("manifest-without-label", _rows([r[:2] + r[3:] for r in ROWS],
                                             ["image", "text", "split"]),
             message="{data}: missing column(s) label; expected columns image, text, label "
                     "(found: image, text, split)",
             names=("{data}", "label")),
    DataCase("label-not-binary", _rows(_replace(1, 2, 2)),
             message="{data}: field label: '2' in data row 2 is not binary; expected 0 or 1",
             names=("{data}", "field label")),
    DataCase("label-not-binary-in-npz",
             lambda folder, make: _tree(folder, make, overrides={1: {"glaucoma": 3}}),
             message="{folder}/Training/data_00001.npz: field glaucoma: 3 is not binary; "
                     "expected 0 (non-glaucoma) or 1 (glaucoma)",
             names=("{folder}/Training/data_00001.npz", "field glaucoma")),
    DataCase("unknown-group-code-in-npz",
             lambda folder, make: _tree(folder, make, overrides={2: {"race": 7}}),
             message="{folder}/Training/data_00002.npz: field race: 7; expected one of 0 "
                     "(Asian), 1 (Black), 2 (White) or -1 (unknown), as codes or names",
             names=("{folder}/Training/data_00002.npz", "field race")),
    DataCase("unknown-split-name", _rows(_replace(1, 3, "holdout")),
             message="{data}: field split: 'holdout' in data row 2; expected train, val or test",
             names=("{data}", "field split")),
    DataCase("missing-split-folder", no_split_folder,
             message="{folder}: missing split folder(s) Validation; expected Training, "
                     "Validation and Test (or Testing)"),
    DataCase("empty-csv", _bytes("manifest.csv", b""),
             message="{data}: the file is empty; expected a header row and at least one data "
                     "row"),
    DataCase("csv-with-a-header-only", _bytes("manifest.csv", b"image,text,label,split\n"),
             message="{data}: no rows; expected at least one image-text pair"),
    DataCase("unclosed-quote-in-csv",
             _bytes("manifest.csv", b'image,text,label,split\na.png,"unclosed note,1,train\n'),
             message="{data}: malformed CSV (Error tokenizing data. C error: EOF inside string "
                     "starting at row 1); expected comma-separated rows with a header"),
    DataCase("image-file-missing", _rows(_replace(1, 0, "gone.png")), kind="warning",
             message="data row 2: {folder}/gone.png: no such file; expected an image file",
             names=("{folder}/gone.png",)),
    DataCase("not-a-data-set", _bytes("readme.txt", b"scans arrive next week"),
             message="{data}: not a data set; expected a Harvard-FairVLMed folder or a "
                     ".csv/.parquet manifest"),
]


@dataclass(frozen=True)
class Built:
    folder: Path
    data: Path
    message: str
    names: tuple[str, ...]


@pytest.fixture(scope="module")
def corpus(robust_home: Path, make) -> dict[str, Built]:
    """Every case written under the app's data root, its templates filled in."""
    built = {}
    for case in CASES:
        folder = robust_home / "data-corpus" / case.name
        folder.mkdir(parents=True)
        data = case.build(folder, make)
        values = {"folder": folder, "data": data}
        built[case.name] = Built(folder, data, case.message.format(**values),
                                 tuple(name.format(**values) for name in case.names))
    return built


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_inspect_names_the_problem_in_one_line(case: DataCase, corpus, app_env: Path, run_cli,
                                               messages, snapshot, make) -> None:
    built = corpus[case.name]
    before = snapshot(app_env)
    strict = ("--strict",) if case.kind == "strict" else ()
    outcome = run_cli("inspect", "--data", built.data, *case.options, *strict)
    if case.kind == "warning":
        shown = messages.warnings(outcome)
        assert built.message in shown, shown
        message = built.message
    else:
        message = messages.refusal(outcome)
    messages.check(message, built.message, built.names)
    assert snapshot(app_env) == before
    assert not (built.folder / make.CANARY).exists()


def test_the_app_shows_the_same_lines(corpus, app_user, messages, snapshot, robust_home,
                                      make) -> None:
    """One app session loads every case by its server path."""
    wrong = []
    for case in CASES:
        built = corpus[case.name]
        in_use = app_user.data_in_use
        before = snapshot(robust_home)
        app_user.load_server(built.data, case.attributes())
        if case.kind == "error":
            if len(app_user.errors) != 1 or not messages.shown(built.message, app_user.errors):
                wrong.append((case.name, app_user.errors))
            if app_user.data_in_use != in_use:
                wrong.append((case.name, "the data in use changed"))
        else:
            if app_user.errors or not messages.shown(built.message, app_user.warnings):
                wrong.append((case.name, app_user.errors, app_user.warnings))
            app_user.use_demo()
        if snapshot(robust_home) != before:
            wrong.append((case.name, "files under the home changed"))
        if (built.folder / make.CANARY).exists():
            wrong.append((case.name, "the pickle's payload ran"))
    assert not wrong


def test_mixed_images_reach_the_model_alike(corpus, tiny_checkpoint: Path) -> None:
    """The seven readable images of mixed sizes and channels become equal model inputs."""
    from fairvlm.data import PairDataset, load_dataset
    from fairvlm.models import load_model

    table = load_dataset(corpus["mixed-sizes-and-channels"].data)
    assert len(table) == 7
    loaded = load_model(str(tiny_checkpoint), device="cpu")
    dataset = PairDataset(table, range(len(table)), loaded.preprocess, loaded.tokenizer)
    shapes = {tuple(dataset[i][0].shape) for i in range(len(dataset))}
    size = loaded.model.visual.image_size
    assert shapes == {(3, *((size, size) if isinstance(size, int) else size))}
