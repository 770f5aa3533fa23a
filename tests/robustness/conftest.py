"""Builders and checks of the malformed-input corpus (``test_*_inputs.py`` in this folder).

Each of those modules holds one family of bad inputs as a table: a builder that writes the
input into a fresh folder, the command line (and app action) that reads it, and the exact
one-line message expected. The fixtures here

- write inputs: :class:`Make` (images, CSV files, Harvard-FairVLMed trees, zips, a pickle
  payload),
- run ``fairvlm`` in this process (:func:`run_cli`; torch is imported once, not per case),
- read a refusal off the command's stderr and check a message (:class:`Messages`),
- snapshot folders, to show that a refused input changed nothing already saved,
- give the app a home: the small demo in use and the tiny checkpoint, under the only data
  root (:func:`robust_home`); :class:`AppUser` drives its Data & model page.
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from app_driver import open_app, run, shown
from cli_runner import Outcome, run_fairvlm
from PIL import Image
from streamlit.testing.v1 import AppTest

from fairvlm.ui.state import (
    DATA_KEY,
    LOADED_DATA_KEY,
    LOADED_MODEL_KEY,
    DataChoice,
    LoadedModelInfo,
)
from fairvlm.ui.text import plain

CANARY = "CANARY"


# --- running the command line ----------------------------------------------------------------


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., Outcome]:
    """``run_cli("inspect", "--data", path)``: ``fairvlm.cli.main`` in this process."""
    return run_fairvlm


class Messages:
    """Where a message shows, and the checks every message of the corpus passes."""

    @staticmethod
    def refusal(outcome: Outcome) -> str:
        """The message of a refused command: exit status 2, stderr ``error: <message>`` and at
        most a ``hint:`` line after it, nothing on stdout."""
        assert outcome.status == 2, (outcome.status, outcome.err[-2000:])
        lines = outcome.err.splitlines()
        assert lines and lines[0].startswith("error: "), outcome.err[-2000:]
        assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), \
            outcome.err[-2000:]
        assert outcome.out == ""
        return lines[0].removeprefix("error: ")

    @staticmethod
    def warnings(outcome: Outcome) -> list[str]:
        """The warning lines of a successful ``fairvlm inspect``."""
        assert outcome.status == 0, outcome.err[-2000:]
        assert outcome.err == ""
        lines = outcome.out.splitlines()
        if "warnings:" not in lines:
            return []
        block = lines[lines.index("warnings:") + 1:]
        return [line.removeprefix("  - ") for line in block[:block.index("")]]

    @staticmethod
    def check(message: str, expected: str, names: Iterable[str]) -> None:
        """One line, no traceback, exactly ``expected``, naming each of ``names``."""
        assert "\n" not in message and "Traceback" not in message, message
        assert message == expected
        for name in names:
            assert name in message, f"{message!r} does not name {name!r}"

    @staticmethod
    def shown(message: str, elements: Iterable[str]) -> bool:
        """Whether the app shows ``message`` in one of ``elements`` (errors, warnings and a
        run's state escape Markdown with :func:`plain`; a message without Markdown syntax
        reads the same either way)."""
        return any(value in (message, plain(message)) for value in elements)


@pytest.fixture(scope="session")
def messages() -> type[Messages]:
    return Messages


# --- writing inputs ------------------------------------------------------------------------


class CanaryPayload:
    """Unpickling this creates ``<folder>/CANARY``: it stands for any code a pickle may run."""

    def __init__(self, folder: Path) -> None:
        self.canary = str(folder / CANARY)

    def __reduce__(self):
        return (open, (self.canary, "w"))


class Make:
    """Writers of the corpus' inputs; every one returns the path it wrote."""

    CANARY = CANARY
    canary_payload = CanaryPayload

    @staticmethod
    def png(path: Path, pixels: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        return path

    @staticmethod
    def gray(path: Path, value: int = 90, size: tuple[int, int] = (8, 8)) -> Path:
        """A uniform 8-bit grayscale PNG."""
        return Make.png(path, np.full(size, value, dtype=np.uint8))

    @staticmethod
    def npy(path: Path, array: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
        return path

    @staticmethod
    def csv(path: Path, header: list[str], rows: Iterable[Iterable[object]], *,
            encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding=encoding) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        return path

    @staticmethod
    def fundus(index: int) -> np.ndarray:
        """A float image in [0, 255], as Harvard-FairVLMed stores ``slo_fundus``."""
        return ((np.arange(48, dtype=np.float32).reshape(8, 6) * 5 + 10 * index) % 256)

    @staticmethod
    def fairvlmed(root: Path, *, sizes: tuple[int, int, int] = (3, 2, 2), notes: bool = True,
                  overrides: dict[int, dict[str, object]] | None = None) -> list[Path]:
        """A Harvard-FairVLMed tree (Training/Validation/Test) of ``data_0000i.npz`` files,
        every attribute field present; ``overrides[i]`` replaces fields of file ``i``."""
        files = []
        for folder, size in zip(("Training", "Validation", "Test"), sizes, strict=True):
            (root / folder).mkdir(parents=True)
            for _ in range(size):
                index = len(files)
                fields: dict[str, object] = {
                    "slo_fundus": Make.fundus(index), "glaucoma": index % 2,
                    "race": index % 3, "gender": index % 2, "ethnicity": index % 2,
                    "language": index % 3, "maritalstatus": index % 5, "age": 60.0 + index,
                }
                if notes:
                    fields["note"] = f"subject {index}: cup-to-disc ratio 0.{index + 2}"
                fields.update((overrides or {}).get(index, {}))
                path = root / folder / f"data_{index:05d}.npz"
                np.savez_compressed(path, **{k: np.asarray(v) for k, v in fields.items()})
                files.append(path)
        return files

    @staticmethod
    def truncate(path: Path, keep: float = 0.5) -> Path:
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * keep)])
        return path

    @staticmethod
    def zip(entries: dict[str, bytes] | Iterable[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
        """A deflated zip archive of ``entries`` (names or ZipInfo records -> bytes)."""
        items = entries.items() if isinstance(entries, dict) else entries
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in items:
                archive.writestr(name, data)
        return buffer.getvalue()


@pytest.fixture(scope="session")
def make() -> type[Make]:
    return Make


# --- what must not change ------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time (ns) of every file under ``folder``."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="session")
def snapshot() -> Callable[[Path], dict[str, tuple[int, int]]]:
    """``snapshot(folder)``: size and mtime of every file; equal before and after a refusal."""
    return _snapshot


# --- the app -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def robust_home(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path,
                tiny_checkpoint: Path) -> Path:
    """A FAIRVLM_HOME holding the small demo (the data in use) and ``tiny.safetensors``.

    The app tests make it the only data root; each module builds its corpus inside it.
    """
    home = tmp_path_factory.mktemp("robust-home")
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    shutil.copy(tiny_checkpoint, home / "tiny.safetensors")
    return home


@pytest.fixture()
def app_env(robust_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at :func:`robust_home`, its only data root; returns the home."""
    monkeypatch.setenv("FAIRVLM_HOME", str(robust_home))
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", str(robust_home))
    return robust_home


class AppUser:
    """One app session on the Data & model page, used the way a person would."""

    def __init__(self) -> None:
        self.app: AppTest = open_app()
        self._source: str | None = None

    def load_server(self, path: Path | str, attributes: str = "") -> None:
        """Type a server-side path (and attribute columns), press Load."""
        self._choose_source("server")
        self.app.text_input(key="data.server_path").input(str(path))
        self.app.text_input(key="data.server_attributes").input(attributes)
        run(self.app)
        self.app.button(key="data.load_server").click()
        run(self.app)

    def upload(self, name: str, data: bytes, attributes: str = "") -> None:
        """Upload ``data`` as file ``name``, press Load upload."""
        self._choose_source("upload")
        uploader = next(element for element in self.app.get("file_uploader")
                        if element.key == "data.upload")
        uploader.upload(name, data, "application/zip" if name.endswith(".zip") else "text/csv")
        self.app.text_input(key="data.upload_attributes").input(attributes)
        run(self.app)
        self.app.button(key="data.load_upload").click()
        run(self.app)

    def load_model(self, spec: str) -> None:
        """Choose "other", type ``spec``, press Load model."""
        self.app.selectbox(key="model.preset").set_value("other")
        run(self.app)
        self.app.text_input(key="model.spec").input(spec)
        run(self.app)
        self.app.button(key="model.load").click()
        run(self.app)

    def use_demo(self) -> None:
        """Make the built-in demo the data in use again (after a load that succeeded)."""
        self.app.session_state[DATA_KEY] = DataChoice()
        run(self.app)

    @property
    def errors(self) -> list[str]:
        """The text each ``st.error`` shows (its Markdown escapes removed)."""
        return [shown(element.value) for element in self.app.error]

    @property
    def warnings(self) -> list[str]:
        """The text each ``st.warning`` shows (its Markdown escapes removed)."""
        return [shown(element.value) for element in self.app.warning]

    @property
    def data_in_use(self) -> tuple[DataChoice, str]:
        """The data choice and the folder or file of the loaded data set."""
        return (self.app.session_state.get(DATA_KEY) or DataChoice(),
                self.app.session_state[LOADED_DATA_KEY].path)

    @property
    def model_in_use(self) -> LoadedModelInfo | None:
        """What the sidebar shows as the loaded model."""
        return self.app.session_state.get(LOADED_MODEL_KEY)

    def _choose_source(self, source: str) -> None:
        if self._source != source:
            self.app.radio(key="data.source").set_value(source)
            run(self.app)
            self._source = source


@pytest.fixture()
def app_user(app_env: Path) -> AppUser:
    """A fresh app session on the Data & model page, the demo in use."""
    return AppUser()
