"""Decode the images a pair table refers to.

An image reference is a file path, or ``path::key`` for one array of an ``.npz`` archive
(``data_00001.npz::slo_fundus``). :func:`read_image` decodes it to a float32 array in [0, 1],
``H x W`` (grayscale) or ``H x W x 3`` (RGB); :func:`to_pil` turns that into the RGB PIL image
that open_clip's preprocessing expects. :func:`check_image` is the cheap integrity check the
manifest loader runs on every file (it catches truncated and corrupt files, and arrays that are
not images, without decoding pixels where the format allows; floating-point arrays are read,
since only their values show NaN or inf).

Formats (chosen by suffix, else by the file's first bytes, since DICOM files often have none):
PNG/JPEG/BMP/TIFF through PIL, NPY, NPZ, DICOM through pydicom.

Scaling to [0, 1]
-----------------
- ``uint8`` and bool: ``x / 255`` (bool: 0 or 1).
- other integers (16-bit PNG, raw NPY): per-image min-max, ``(x - min) / (max - min)``, because
  medical 16-bit images rarely use the full 16-bit range.
- floats: kept if already in [0, 1]; divided by 255 if in [0, 255] (8-bit values stored as
  float, as FairVLMed's ``slo_fundus``); otherwise per-image min-max.
- DICOM: the modality LUT (RescaleSlope/RescaleIntercept) first; then, if the header has a
  window, the first linear window of DICOM PS3.3 C.11.2.1.2.1 mapped onto [0, 1],
  ``y = clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)``; without a window, per-image min-max.
  MONOCHROME1 is inverted (``1 - y``) so bright always means high signal.
Min-max scaling maps a constant image to zeros. Non-finite values (NaN, inf) are refused.
"""

from __future__ import annotations

import ast
import functools
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from fairvlm.errors import DataError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DEFAULT_NPZ_KEY = "slo_fundus"
REF_SEPARATOR = "::"
PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_EXPECTED = "expected a 2-D grayscale (H x W) or RGB (H x W x 3) image"
_DICOM_EXPECTED = "expected a readable single-frame DICOM image"
_ZIP_LOCAL_HEADER_SIZE = 30


def split_ref(ref: str) -> tuple[Path, str | None]:
    """Split ``"path::key"`` into the file path and the npz key (``None`` without one)."""
    path, separator, key = str(ref).partition(REF_SEPARATOR)
    return Path(path), (key if separator else None)


def image_format(path: Path) -> str:
    """``"pil"``, ``"npy"``, ``"npz"`` or ``"dicom"``: by suffix, else by the first bytes."""
    suffix = path.suffix.lower()
    if suffix in PIL_SUFFIXES:
        return "pil"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in (".npy", ".npz"):
        return suffix[1:]
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror}); expected an image file") \
            from None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if head[128:132] == b"DICM":
        return "dicom"
    return "pil"


def read_image(ref: str) -> np.ndarray:
    """Decode the image ``ref`` points to.

    Parameters
    ----------
    ref
        A file path, or ``path::key`` for an array inside an npz archive. An npz without a key
        gives its ``slo_fundus`` array, or its only array.

    Returns
    -------
    numpy.ndarray
        float32 in [0, 1], shape ``H x W`` or ``H x W x 3`` (scaling rules in the module
        docstring).

    Raises
    ------
    DataError
        One line naming the file and what was expected, if the file is missing, truncated,
        undecodable, not 2-D, or holds NaN/inf.
    """
    path, kind, key = _locate(ref)
    if kind == "dicom":
        return _read_dicom(path)
    if kind == "pil":
        return _scale(_read_pil(path), path)
    return _scale(_read_numpy(path, kind, key), path)


def check_image(ref: str) -> None:
    """Cheap integrity check of ``ref``: raise :class:`DataError` if it cannot be decoded.

    Reads headers and structure, not pixels, where the format allows: PNG chunk CRCs and the
    end marker (PIL ``verify``); JPEG decoded at 1/8 scale (which still reads the whole entropy
    stream, so truncation shows); NPY header against the file size; NPZ zip directory, the
    member's presence and its array header; DICOM header and pixel-data length. Other PIL
    formats are fully decoded. NPY and NPZ arrays must have an image shape (checked from the
    header); floating-point arrays are read in full, since only their values can show NaN or
    inf (integer pixels cannot hold either).
    """
    path, kind, key = _locate(ref)
    if kind == "pil":
        _check_pil(path)
    elif kind == "dicom":
        _check_dicom(path)
    else:
        shape, dtype = _check_npy(path) if kind == "npy" else _check_npz_member(path, key)
        _as_image_shape(np.broadcast_to(np.zeros((), dtype=bool), shape), path)
        if dtype.kind not in "biu":  # NaN/inf (floats) and non-numbers show only in values
            _scale(_read_numpy(path, kind, key), path)


def _locate(ref: str) -> tuple[Path, str, str | None]:
    """The existing file of ``ref``, its format, and its npz key (only npz refs have one)."""
    path, key = split_ref(ref)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected an image file")
    kind = image_format(path)
    if key is not None and kind != "npz":
        raise DataError(f"{path}: key {key!r} given for a {kind} file; expected path::key "
                        "only for .npz archives")
    return path, kind, key


def npz_keys(path: Path) -> list[str]:
    """Array names in an npz archive, read from its zip directory only (no decompression)."""
    with open_npz(path) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist()]


def to_pil(image: np.ndarray) -> Image.Image:
    """An RGB PIL image from a [0, 1] array (``H x W`` gray is copied to three channels).

    Values are rounded to 8 bits: ``round(clip(x, 0, 1) * 255)``.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise DataError(f"image of shape {array.shape}: {_EXPECTED}")
    pixels = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")


def _scale(array: np.ndarray, path: Path) -> np.ndarray:
    array = _as_image_shape(np.asarray(array), path)
    if array.dtype == np.bool_ or array.dtype == np.uint8:
        return array.astype(np.float32) / (1.0 if array.dtype == np.bool_ else 255.0)
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DataError(f"{path}: pixel type {array.dtype}; expected numeric pixel values")
    _require_finite(array, path)
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return values.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 255.0:
        return (values / 255.0).astype(np.float32)
    return _min_max(values)


def _require_finite(values: np.ndarray, path: Path) -> None:
    if not np.isfinite(values).all():
        raise DataError(f"{path}: pixel values contain NaN or inf; expected finite values")


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _as_image_shape(array: np.ndarray, path: Path) -> np.ndarray:
    """``H x W`` or ``H x W x 3``: squeeze one channel, drop alpha, move leading channels."""
    if array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3) or array.size == 0:
        raise DataError(f"{path}: array of shape {array.shape}; {_EXPECTED}")
    return array


def _read_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("1", "L", "I", "F") or image.mode.startswith("I;16"):
                return np.array(image)
            return np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); expected a readable "
                        "PNG/JPEG/BMP/TIFF file") from None


def _check_pil(path: Path) -> None:
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(image.mode, (1, 1))
                image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); expected a readable "
                        "PNG/JPEG/BMP/TIFF file") from None


def open_npz(path: Path) -> zipfile.ZipFile:
    """The npz archive at ``path`` as an open zip file (reads only its directory)."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable npz archive ({error}); expected a complete "
                        "numpy .npz file") from None


def read_npz(path: Path, keys: Iterable[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """The array names of an npz archive, and the arrays among ``keys`` that it holds.

    Reads the zip directory and only the requested members, each checked against its CRC;
    never unpickles. This is the loaders' hot path (Harvard-FairVLMed: 10,000 archives of
    about nine small fields), so members are read straight from their local headers and the
    ``.npy`` headers, which repeat across archives, are parsed once each: about six times
    faster than ``numpy.load``.
    """
    try:
        with path.open("rb") as handle:
            infos = {info.filename.removesuffix(".npy"): info
                     for info in zipfile.ZipFile(handle).infolist()}
            raw = {key: _member_bytes(handle, infos[key]) for key in keys if key in infos}
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, struct.error) as error:
        raise DataError(f"{path}: not a readable npz archive ({error}); expected a complete "
                        "numpy .npz file") from None
    return list(infos), {key: _npy_from_bytes(data, path, key) for key, data in raw.items()}


def _member_bytes(handle: io.BufferedReader, info: zipfile.ZipInfo) -> bytes:
    """The uncompressed bytes of one stored or deflated zip member, CRC-checked."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise zipfile.BadZipFile(f"member {info.filename} uses compression method "
                                 f"{info.compress_type}, not stored or deflated")
    handle.seek(info.header_offset)
    local = handle.read(_ZIP_LOCAL_HEADER_SIZE)
    if len(local) < _ZIP_LOCAL_HEADER_SIZE or not local.startswith(b"PK\x03\x04"):
        raise zipfile.BadZipFile(f"bad local header of member {info.filename}")
    name_length, extra_length = struct.unpack_from("<HH", local, 26)
    handle.seek(info.header_offset + _ZIP_LOCAL_HEADER_SIZE + name_length + extra_length)
    data = handle.read(info.compress_size)
    if info.compress_type == zipfile.ZIP_DEFLATED:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    if zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"CRC mismatch in member {info.filename}")
    return data


def _npy_from_bytes(raw: bytes, path: Path, key: str) -> np.ndarray:
    """The array stored in the bytes of one ``.npy`` member."""
    expected = "expected an intact numpy array that needs no unpickling"
    if not raw.startswith(b"\x93NUMPY") or len(raw) < 12:
        raise DataError(f"{path}: array {key!r} is not in .npy format; {expected}")
    major = raw[6]
    size_format, start = ("<H", 10) if major == 1 else ("<I", 12)
    (length,) = struct.unpack_from(size_format, raw, 8)
    try:
        dtype, shape, fortran = _npy_layout(raw[start:start + length], major)
    except (ValueError, SyntaxError, KeyError, TypeError) as error:
        raise DataError(f"{path}: array {key!r} has a bad header ({error}); {expected}") from None
    if dtype.hasobject:
        raise DataError(f"{path}: array {key!r} holds Python objects; {expected}")
    try:
        array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=start + length)
    except ValueError as error:
        raise DataError(f"{path}: array {key!r} is truncated ({error}); {expected}") from None
    return array.reshape(shape, order="F" if fortran else "C")


@functools.lru_cache(maxsize=1024)
def _npy_layout(header: bytes, major: int) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, Fortran order) of a ``.npy`` header dictionary."""
    fields = ast.literal_eval(header.decode("utf-8" if major >= 3 else "latin1"))
    dtype = np.lib.format.descr_to_dtype(fields["descr"])
    return dtype, tuple(int(n) for n in fields["shape"]), bool(fields["fortran_order"])


def _npz_member(names: list[str], path: Path, key: str | None) -> str:
    """The key of the image array: ``key``, else ``slo_fundus``, else the only array."""
    if key is None:
        key = DEFAULT_NPZ_KEY if DEFAULT_NPZ_KEY in names or len(names) != 1 else names[0]
    if key not in names:
        have = ", ".join(names[:12]) or "no arrays"
        raise DataError(f"{path}: no array {key!r} (has: {have}); expected the image under "
                        f"key {key!r}")
    return key


def _read_numpy(path: Path, kind: str, key: str | None) -> np.ndarray:
    if kind == "npz":
        key = _npz_member(npz_keys(path), path, key)
        return read_npz(path, [key])[1][key]
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read numpy array ({error}); expected an intact "
                        ".npy file") from None


def _npy_header(handle: io.BufferedIOBase, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(handle)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: bad numpy header ({error}); expected an intact numpy "
                        "array") from None
    return shape, dtype


def _check_npy(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an ``.npy`` file whose size covers its data."""
    with path.open("rb") as handle:
        shape, dtype = _npy_header(handle, path)
        header_end = handle.tell()
    expected = header_end + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if dtype.hasobject or size < expected:
        raise DataError(f"{path}: {size} bytes, truncated or object array; expected "
                        f"{expected} bytes of {dtype} data")
    return shape, dtype


def _check_npz_member(path: Path, key: str | None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the image array of an npz archive, from its ``.npy`` header."""
    member = _npz_member(npz_keys(path), path, key)
    with open_npz(path) as archive, archive.open(f"{member}.npy") as handle:
        shape, dtype = _npy_header(handle, path)
    if dtype.hasobject:
        raise DataError(f"{path}: array {member!r} holds Python objects; expected an intact "
                        "numpy array that needs no unpickling")
    return shape, dtype


def _read_dicom(path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    dataset = _open_dicom(path)
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # decoder errors: truncation, missing codec, bad tags
        raise DataError(f"{path}: cannot decode DICOM pixels ({error}); "
                        f"{_DICOM_EXPECTED}") from None
    if pixels.ndim == 3:
        return _scale(pixels, path)
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    _require_finite(values, path)
    window = _first_window(dataset)
    if window is None:
        image = _min_max(values)
    else:
        center, width = window
        image = np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)
        image = image.astype(np.float32)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        image = 1.0 - image
    return image


def _first_window(dataset: Dataset) -> tuple[float, float] | None:
    """The first (center, width) of the header's linear windows; None without a usable one."""
    from pydicom.multival import MultiValue

    values = [dataset.get("WindowCenter"), dataset.get("WindowWidth")]
    if any(value is None for value in values):
        return None
    center, width = (float(v[0]) if isinstance(v, MultiValue) else float(v) for v in values)
    return (center, width) if width > 1.0 else None


def _open_dicom(path: Path) -> Dataset:
    """The pydicom dataset of a single-frame DICOM image file with pixel data."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for a malformed file
        raise DataError(f"{path}: cannot read DICOM ({error}); {_DICOM_EXPECTED}") from None
    if "PixelData" not in dataset:
        raise DataError(f"{path}: DICOM without pixel data; {_DICOM_EXPECTED}")
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{path}: DICOM with {dataset.NumberOfFrames} frames; "
                        f"{_DICOM_EXPECTED}")
    return dataset


def _check_dicom(path: Path) -> None:
    """Header, and for uncompressed transfer syntaxes the pixel-data length."""
    from pydicom.pixels.utils import get_expected_length

    dataset = _open_dicom(path)
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_compressed:
        return
    try:
        needed = get_expected_length(dataset, unit="bytes")
    except Exception as error:  # missing or inconsistent image-pixel module tags
        raise DataError(f"{path}: bad DICOM image header ({error}); "
                        f"{_DICOM_EXPECTED}") from None
    if len(dataset.PixelData) < needed:
        raise DataError(f"{path}: DICOM pixel data truncated ({len(dataset.PixelData)} of "
                        f"{needed} bytes); {_DICOM_EXPECTED}")
