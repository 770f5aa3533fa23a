"""What the app may read and write: hostile uploads, and server-side paths outside the data
roots. Each is refused with one exact line; nothing is extracted or saved, nothing escapes.

Uploads go through :func:`fairvlm.uploads.save_upload` (what the app's "Load upload" button
calls; the command line has no uploads) and then through the app itself, in one session.
Server-side paths exist only in the app (the command line reads what its user can read); the
rule they break is :func:`fairvlm.paths.require_within_roots`.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import fairvlm.uploads
from fairvlm.errors import DataError
from fairvlm.uploads import MAX_BYTES_ENV, save_upload

CAP_HINT = ("(set FAIRVLM_UPLOAD_MAX_BYTES, or put the data on the server and load it by "
            "path)")
ESCAPE = "has an absolute or escaping path; expected paths relative to the archive's top, "\
         "without '..'"
# An absolute entry aimed at a file that must never appear.
ABSOLUTE_TARGET = f"/tmp/fairvlm-robustness-{uuid.uuid4().hex}.txt"


@dataclass(frozen=True)
class UploadCase:
    """A hostile upload: ``build(make)`` gives the file's bytes, uploaded as ``file_name``.
    ``environment`` and ``patch`` (attributes of :mod:`fairvlm.uploads`) are set while it is
    stored; ``in_app`` is False where the browser's file picker already refuses it."""

    name: str
    file_name: str
    build: Callable[[type], bytes]
    message: str
    environment: dict[str, str] = field(default_factory=dict)
    patch: dict[str, int] = field(default_factory=dict)
    in_app: bool = True


def _entries(*names: str) -> Callable[[type], bytes]:
    return lambda make: make.zip({"data/manifest.csv": b"image,text,label\n",
                                  **{name: b"bad" for name in names}})


def symlink(make) -> bytes:
    link = zipfile.ZipInfo("data/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return make.zip([("data/manifest.csv", b"image,text,label\n"), (link, b"/etc/passwd")])


def deflate_bomb(make) -> bytes:
    """64 MiB of zeros deflated to about 64 KiB: a ratio of 1000."""
    return make.zip({"data/zeros.bin": bytes(64 * 1024**2)})


def declared_bomb(make) -> bytes:
    """A tiny archive whose directory declares 3 GiB: refused before a byte is extracted."""
    raw = bytearray(make.zip({"data/big.bin": b"x" * 100}))
    struct.pack_into("<I", raw, raw.rfind(b"PK\x01\x02") + 24, 3 * 1024**3)
    return bytes(raw)


def many_entries(make) -> bytes:
    return make.zip({f"data/empty{i:03d}.txt": b"" for i in range(51)})


def encrypted(make) -> bytes:
    raw = bytearray(make.zip({"data/secret.txt": b"data"}))
    for offset in (6, raw.rfind(b"PK\x01\x02") + 8):  # the "encrypted" bit of both headers
        struct.pack_into("<H", raw, offset, struct.unpack_from("<H", raw, offset)[0] | 0x1)
    return bytes(raw)


def duplicate_entry(make) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns: "Duplicate name"
        return make.zip([("data/notes.csv", b"a"), ("data/notes.csv", b"b")])


UPLOADS = [
    UploadCase("zip-slip", "evil.zip", _entries("../../escaped.txt"),
               f"upload 'evil.zip': entry '../../escaped.txt' {ESCAPE}"),
    UploadCase("zip-absolute-entry", "abs.zip", _entries(ABSOLUTE_TARGET),
               f"upload 'abs.zip': entry '{ABSOLUTE_TARGET}' {ESCAPE}"),
    UploadCase("zip-windows-drive", "win.zip", _entries("C:\\escaped.txt"),
               f"upload 'win.zip': entry 'C:\\\\escaped.txt' {ESCAPE}"),  # the name's repr
    UploadCase("zip-symlink", "link.zip", symlink,
               "upload 'link.zip': entry 'data/link' is a symbolic link; expected plain files "
               "and folders only"),
    UploadCase("zip-bomb-deflated", "bomb.zip", deflate_bomb,
               f"upload 'bomb.zip': more than 1 MiB once extracted; expected at most 1 MiB "
               f"{CAP_HINT}", environment={MAX_BYTES_ENV: str(1024**2)}),
    UploadCase("zip-bomb-declared-size", "big.zip", declared_bomb,
               f"upload 'big.zip': more than 2 GiB once extracted; expected at most 2 GiB "
               f"{CAP_HINT}"),
    UploadCase("zip-of-many-empty-files", "many.zip", many_entries,
               "upload 'many.zip': 51 entries; expected at most 50 files and folders",
               patch={"MAX_ENTRIES": 50}),
    UploadCase("zip-encrypted", "secret.zip", encrypted,
               "upload 'secret.zip': entry 'data/secret.txt' is encrypted; expected an archive "
               "without a password"),
    UploadCase("zip-duplicate-entry", "twice.zip", duplicate_entry,
               "upload 'twice.zip': entry 'data/notes.csv' appears twice; expected unique file "
               "names"),
    UploadCase("not-a-zip", "scans.zip", lambda make: b"%PDF-1.7 not a zip",
               "upload 'scans.zip': not a readable zip archive (File is not a zip file); "
               "expected a complete .zip file"),
    UploadCase("empty-csv", "pairs.csv", lambda make: b"",
               "upload 'pairs.csv': the file is empty; expected a CSV manifest"),
    UploadCase("csv-over-the-cap", "pairs.csv", lambda make: b"image,text,label\n" * 10,
               f"upload 'pairs.csv': larger than 100 bytes; expected at most 100 bytes "
               f"{CAP_HINT}", environment={MAX_BYTES_ENV: "100"}),
    UploadCase("neither-zip-nor-csv", "scan.dcm", lambda make: b"\x00" * 132,
               "upload 'scan.dcm': not a zip archive or CSV manifest; expected a file ending "
               "in .zip or .csv", in_app=False),
]


def _escaped(tmp_root: Path) -> list[Path]:
    """Files an escaping entry would have written."""
    return [*tmp_root.rglob("escaped.txt"), *[p for p in [Path(ABSOLUTE_TARGET)] if p.exists()]]


@pytest.mark.parametrize("case", UPLOADS, ids=lambda case: case.name)
def test_save_upload_refuses_in_one_line(case: UploadCase, tmp_path: Path, make, messages,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.environment.items():
        monkeypatch.setenv(name, value)
    for name, value in case.patch.items():
        monkeypatch.setattr(fairvlm.uploads, name, value)
    root = tmp_path / "uploads"
    with pytest.raises(DataError) as refused:
        save_upload(case.file_name, io.BytesIO(case.build(make)), root=root)
    messages.check(str(refused.value), case.message, [repr(case.file_name)])
    assert not root.exists() or list(root.iterdir()) == []
    assert _escaped(tmp_path) == []


def test_the_app_refuses_the_same_uploads(app_user, robust_home: Path, make, messages,
                                          snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """One app session uploads every case; nothing is stored, the data in use stays."""
    wrong = []
    for case in [case for case in UPLOADS if case.in_app]:
        in_use = app_user.data_in_use
        before = snapshot(robust_home)
        with monkeypatch.context() as patched:
            for name, value in case.environment.items():
                patched.setenv(name, value)
            for name, value in case.patch.items():
                patched.setattr(fairvlm.uploads, name, value)
            app_user.upload(case.file_name, case.build(make))
        if len(app_user.errors) != 1 or not messages.shown(case.message, app_user.errors):
            wrong.append((case.name, app_user.errors))
        if app_user.data_in_use != in_use:
            wrong.append((case.name, "the data in use changed"))
        if snapshot(robust_home) != before or any((robust_home / "uploads").iterdir()):
            wrong.append((case.name, "files under the home changed"))
    assert not wrong
    assert _escaped(robust_home.parent) == []


# --- server-side paths ----------------------------------------------------------------------


@dataclass(frozen=True)
class PathCase:
    """A server-side path the app must not read: ``build(home, outside, make)`` writes what
    is needed and returns the path to type; ``message`` and ``names`` are templates of
    ``{home}``, ``{outside}`` and ``{path}``. ``model`` paths go into the model spec box."""

    name: str
    build: Callable[[Path, Path, type], str]
    message: str
    names: tuple[str, ...] = ("{path}",)
    model: bool = False


ROOTS_HINT = "(set FAIRVLM_DATA_ROOTS to change them)"


def outside_folder(home: Path, outside: Path, make) -> str:
    make.fairvlmed(outside / "fairvlmed")
    return str(outside / "fairvlmed")


def dot_dot(home: Path, outside: Path, make) -> str:
    return f"{home}/../{outside.name}/fairvlmed"


def linked_folder(home: Path, outside: Path, make) -> str:
    (home / "linked").symlink_to(outside / "fairvlmed", target_is_directory=True)
    return str(home / "linked")


def manifest_of_outside_images(home: Path, outside: Path, make) -> str:
    make.gray(outside / "a.png")
    make.gray(outside / "b.png")
    return str(make.csv(home / "pairs" / "manifest.csv", ["image", "text", "label", "split"],
                        [[outside / "a.png", "note a", 1, "train"],
                         [outside / "b.png", "note b", 0, "test"]]))


def outside_checkpoint(home: Path, outside: Path, make) -> str:
    (outside / "model.safetensors").write_bytes((home / "tiny.safetensors").read_bytes())
    return str(outside / "model.safetensors")


PATHS = [
    PathCase("folder-outside-the-roots", outside_folder,
             f"{{path}}: outside the allowed data roots; expected a path under one of: {{home}} "
             f"{ROOTS_HINT}"),
    PathCase("dot-dot-out-of-the-root", dot_dot,
             f"{{path}}: outside the allowed data roots; expected a path under one of: {{home}} "
             f"{ROOTS_HINT}"),
    PathCase("symlinked-folder-out-of-the-root", linked_folder,
             f"{{path}}: outside the allowed data roots; expected a path under one of: {{home}} "
             f"{ROOTS_HINT}"),
    PathCase("manifest-of-images-outside", manifest_of_outside_images,
             "{outside}/a.png: image outside the allowed data roots; expected images under "
             "one of: {home}", names=("{outside}/a.png",)),
    PathCase("checkpoint-outside-the-roots", outside_checkpoint,
             "{path}: outside the allowed data roots; expected a path under one of: {home}, "
             f"{{home}}/runs {ROOTS_HINT}", model=True),
]


def test_the_app_refuses_paths_outside_its_roots(app_user, robust_home: Path,
                                                 tmp_path_factory: pytest.TempPathFactory,
                                                 make, messages, snapshot) -> None:
    """One app session types every path; the data and model in use stay as they were."""
    outside = tmp_path_factory.mktemp("outside-the-roots")
    app_user.load_model(str(robust_home / "tiny.safetensors"))
    for case in PATHS:
        path = case.build(robust_home, outside, make)
        values = {"home": robust_home, "outside": outside, "path": path}
        in_use = (app_user.data_in_use, app_user.model_in_use)
        before = snapshot(robust_home)
        if case.model:
            app_user.load_model(path)
        else:
            app_user.load_server(path)
        assert len(app_user.errors) == 1, (case.name, app_user.errors)
        messages.check(app_user.errors[0], case.message.format(**values),
                       [name.format(**values) for name in case.names])
        assert (app_user.data_in_use, app_user.model_in_use) == in_use, case.name
        assert snapshot(robust_home) == before, case.name


def test_a_symlinked_image_does_not_lead_out_of_the_roots(app_user, robust_home: Path,
                                                          tmp_path_factory, make) -> None:
    outside = tmp_path_factory.mktemp("secret")
    make.gray(outside / "secret.png")
    folder = robust_home / "linked-image"
    make.gray(folder / "b.png")
    (folder / "a.png").symlink_to(outside / "secret.png")
    manifest = make.csv(folder / "manifest.csv", ["image", "text", "label", "split"],
                        [["a.png", "note a", 1, "train"], ["b.png", "note b", 0, "test"]])
    app_user.load_server(manifest)
    assert app_user.errors == [f"{folder}/a.png: image outside the allowed data roots (a link "
                               f"to {outside}/secret.png); expected images under one of: "
                               f"{robust_home}"]


def test_a_path_with_a_nul_byte_is_one_line(app_user, robust_home: Path, messages) -> None:
    app_user.load_server(f"{robust_home}/demo\x00/data")
    assert app_user.errors == [f"'{robust_home}/demo\\x00/data': not a usable path (embedded "
                               "null byte); expected a file or folder path"]


def test_nothing_was_written_outside_the_roots() -> None:
    assert not Path(ABSOLUTE_TARGET).exists()
    assert not os.path.lexists(ABSOLUTE_TARGET)
