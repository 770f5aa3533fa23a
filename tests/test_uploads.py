"""Tests of fairvlm.uploads: uploaded zips and CSVs are stored safely or refused whole."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from fairvlm.errors import ConfigError, DataError
from fairvlm.uploads import (
    DEFAULT_MAX_BYTES,
    MAX_BYTES_ENV,
    discard_upload,
    max_upload_bytes,
    save_upload,
    uploads_dir,
)


def _zip(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def test_csv_goes_to_a_fresh_folder_each_time(tmp_path: Path) -> None:
    data = b"image,text,label\na.png,note,1\n"
    first = save_upload("my data.csv", io.BytesIO(data), root=tmp_path)
    second = save_upload("my data.csv", io.BytesIO(data), root=tmp_path)
    assert first.read_bytes() == data and second.read_bytes() == data
    assert first.parent != second.parent
    assert first.parent.parent == tmp_path and first.name == "my_data.csv"


def test_default_root_is_under_the_home_folder(session_home: Path) -> None:
    stored = save_upload("m.csv", io.BytesIO(b"image,text,label\n"))
    assert uploads_dir() == session_home / "uploads"
    assert stored.parent.parent == uploads_dir()


def test_zip_is_extracted_and_a_single_top_folder_is_entered(tmp_path: Path) -> None:
    entries = {"FairVLMed/Training/data_1.npz": b"x" * 100,
               "FairVLMed/notes.csv": b"filename,note\n", "FairVLMed/Test/": b""}
    root = save_upload("set.zip", _zip(entries), root=tmp_path)
    assert root.name == "FairVLMed" and root.parent.parent == tmp_path
    assert _files(root) == {"Training/data_1.npz": b"x" * 100, "notes.csv": b"filename,note\n"}
    assert (root / "Test").is_dir()


def test_windows_separators_become_folders_and_macos_extras_are_skipped(tmp_path: Path) -> None:
    entries = {"data\\manifest.csv": b"m", "data\\img\\a.png": b"p",
               "__MACOSX/data/._manifest.csv": b"junk"}
    root = save_upload("set.zip", _zip(entries), root=tmp_path)
    assert _files(root) == {"manifest.csv": b"m", "img/a.png": b"p"}


@pytest.mark.parametrize("member", [
    "../evil.txt", "data/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:\\evil.txt",
    "C:evil.txt",
])
def test_escaping_and_absolute_entries_are_refused_before_extracting(
        tmp_path: Path, member: str) -> None:
    root = tmp_path / "uploads"
    archive = _zip({"data/fine.txt": b"ok", member: b"bad"})
    with pytest.raises(DataError, match="absolute or escaping path") as caught:
        save_upload("set.zip", archive, root=root)
    assert "\n" not in str(caught.value)
    assert list(root.iterdir()) == []  # the fresh folder was removed, fine.txt included
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/a.txt", b"ok")
        link = zipfile.ZipInfo("data/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    buffer.seek(0)
    with pytest.raises(DataError, match="symbolic link"):
        save_upload("set.zip", buffer, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_zip({"secret.txt": b"data"}).getvalue())
    # Set bit 0 (encrypted) of the general-purpose flags in the local and central headers.
    for offset in (6, raw.rfind(b"PK\x01\x02") + 8):
        flags = struct.unpack_from("<H", raw, offset)[0]
        struct.pack_into("<H", raw, offset, flags | 0x1)
    with pytest.raises(DataError, match="encrypted"):
        save_upload("set.zip", io.BytesIO(bytes(raw)), root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_total_size_cap_is_checked_from_the_directory(tmp_path: Path) -> None:
    # 3 x 600 bytes of zeros deflate to a few bytes each: only the declared sizes show it.
    archive = _zip({f"part{i}.bin": bytes(600) for i in range(3)})
    assert len(archive.getvalue()) < 1000
    with pytest.raises(DataError, match=r"more than 1000 bytes once extracted"):
        save_upload("bomb.zip", archive, max_bytes=1000, root=tmp_path)
    assert list(tmp_path.iterdir()) == []
    ok = save_upload("fine.zip", _zip({f"part{i}.bin": bytes(600) for i in range(3)}),
                     max_bytes=1800, root=tmp_path)
    assert sum(len(v) for v in _files(ok).values()) == 1800


def test_an_entry_larger_than_it_declares_is_not_extracted_past_its_size(
        tmp_path: Path) -> None:
    payload = b"A" * 5000
    raw = bytearray(_zip({"big.bin": payload}, compression=zipfile.ZIP_STORED).getvalue())
    # Shrink the declared uncompressed size (local header offset 22, central header offset 24).
    struct.pack_into("<I", raw, 22, 10)
    central = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 10)
    with pytest.raises(DataError, match="cannot be extracted"):
        save_upload("liar.zip", io.BytesIO(bytes(raw)), max_bytes=100, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_csv_over_the_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="larger than 100 bytes"):
        save_upload("m.csv", io.BytesIO(b"x" * 101), max_bytes=100, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "data", "message"), [
    ("tool.exe", b"MZ", "not a zip archive or CSV manifest"),
    ("notes.txt", b"hello", "not a zip archive or CSV manifest"),
    ("set.zip", b"this is not a zip", "not a readable zip archive"),
    ("empty.csv", b"", "the file is empty"),
])
def test_other_files_are_refused(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        save_upload(name, io.BytesIO(data), root=tmp_path)
    assert not any(tmp_path.rglob("*.*"))


def test_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MAX_BYTES_ENV, raising=False)
    assert max_upload_bytes() == DEFAULT_MAX_BYTES == 2 * 1024**3
    monkeypatch.setenv(MAX_BYTES_ENV, "50")
    with pytest.raises(DataError, match="more than 50 bytes"):
        save_upload("set.zip", _zip({"a.bin": bytes(51)}), root=tmp_path)
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_BYTES_ENV):
        max_upload_bytes()


def test_discard_upload_removes_only_its_own_folder(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    stored = save_upload("pairs.zip", _zip({"FairVLMed/manifest.csv": b"image,text,label\n"}),
                         root=root)
    other = save_upload("other.csv", io.BytesIO(b"image,text,label\n"), root=root)
    outside = tmp_path / "keep"
    outside.mkdir()
    discard_upload(stored, root=root)
    discard_upload(outside, root=root)  # not an upload folder: left alone
    assert not stored.exists() and other.exists() and outside.exists()
    assert [p.parent for p in root.iterdir()] == [root]
