"""Image decoding: every format against an independent decode, scaling rules, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_windowing
from skimage import data as skimage_data

from fairvlm.data.images import check_image, read_image, read_npz, to_pil
from fairvlm.errors import DataError


@pytest.fixture(scope="module")
def retina() -> np.ndarray:
    """scikit-image's real fundus photograph, every 4th pixel (353 x 353 x 3, uint8)."""
    return np.ascontiguousarray(skimage_data.retina()[::4, ::4])


def truncated_copy(source: Path, target: Path, keep: float = 0.5) -> Path:
    raw = source.read_bytes()
    target.write_bytes(raw[: int(len(raw) * keep)])
    return target


def test_png_of_the_real_fundus_photo_is_exact(tmp_path, retina):
    path = tmp_path / "retina.png"
    Image.fromarray(retina).save(path)
    image = read_image(str(path))
    assert image.dtype == np.float32 and image.shape == retina.shape
    np.testing.assert_allclose(image, retina / 255.0, atol=1e-7)
    check_image(str(path))


def test_jpeg_of_the_real_fundus_photo_is_close(tmp_path, retina):
    path = tmp_path / "retina.jpg"
    Image.fromarray(retina).save(path, quality=95)
    image = read_image(str(path))
    assert image.shape == retina.shape
    assert np.abs(image - retina / 255.0).mean() < 0.02  # lossy, but the same picture
    check_image(str(path))


def test_grayscale_and_16_bit_png(tmp_path):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_allclose(read_image(str(tmp_path / "gray.png")), gray / 255.0, atol=1e-7)
    deep = (np.arange(60, dtype=np.uint16).reshape(6, 10) * 50 + 100)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    expected = (deep - 100.0) / (deep.max() - 100.0)  # 16-bit: per-image min-max
    np.testing.assert_allclose(read_image(str(tmp_path / "deep.png")), expected, atol=1e-6)


@pytest.mark.parametrize(("array", "expected"), [
    (np.array([[0, 51], [204, 255]], dtype=np.uint8), [[0.0, 0.2], [0.8, 1.0]]),
    (np.array([[0.0, 0.25], [0.5, 1.0]]), [[0.0, 0.25], [0.5, 1.0]]),
    (np.array([[0.0, 25.5], [127.5, 255.0]], dtype=np.float32), [[0.0, 0.1], [0.5, 1.0]]),
    (np.array([[-3.0, 2.0], [0.0, 7.0]]), [[0.0, 0.5], [0.3, 1.0]]),
    (np.array([[-100, 0], [100, 300]], dtype=np.int16), [[0.0, 0.25], [0.5, 1.0]]),
    (np.full((2, 2), 42.0), [[42 / 255] * 2] * 2),
    (np.full((2, 2), -5.0), [[0.0, 0.0], [0.0, 0.0]]),
    (np.array([[True, False], [False, True]]), [[1.0, 0.0], [0.0, 1.0]]),
])
def test_npy_scaling_rules(tmp_path, array, expected):
    np.save(tmp_path / "a.npy", array)
    image = read_image(str(tmp_path / "a.npy"))
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-6)


@pytest.mark.parametrize(("shape", "expected"), [
    ((5, 7, 1), (5, 7)), ((5, 7, 4), (5, 7, 3)), ((3, 5, 7), (5, 7, 3)), ((1, 5, 7), (5, 7)),
])
def test_channel_layouts(tmp_path, shape, expected):
    array = np.random.default_rng(0).random(shape)
    np.save(tmp_path / "a.npy", array)
    assert read_image(str(tmp_path / "a.npy")).shape == expected


def test_channel_first_is_moved_last(tmp_path):
    array = np.random.default_rng(0).random((3, 5, 7))
    np.save(tmp_path / "a.npy", array)
    np.testing.assert_allclose(read_image(str(tmp_path / "a.npy")), np.moveaxis(array, 0, -1),
                               atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (7,), (5, 7, 2)])
def test_non_image_shapes_refused(tmp_path, shape):
    np.save(tmp_path / "a.npy", np.zeros(shape))
    with pytest.raises(DataError, match=r"a\.npy: array of shape .*expected a 2-D"):
        read_image(str(tmp_path / "a.npy"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_pixels_refused(tmp_path, bad):
    array = np.ones((4, 4))
    array[1, 2] = bad
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=r"a\.npy: pixel values contain NaN or inf"):
        read_image(str(tmp_path / "a.npy"))


def test_npz_keys_default_explicit_and_sole(tmp_path):
    fundus = np.arange(12, dtype=np.float32).reshape(3, 4) * 20
    other = np.eye(3)
    np.savez_compressed(tmp_path / "a.npz", slo_fundus=fundus, other=other, glaucoma=1)
    np.testing.assert_allclose(read_image(str(tmp_path / "a.npz")), fundus / 255, atol=1e-7)
    np.testing.assert_allclose(read_image(f"{tmp_path / 'a.npz'}::other"), other, atol=1e-7)
    np.savez(tmp_path / "b.npz", picture=other)
    np.testing.assert_allclose(read_image(str(tmp_path / "b.npz")), other, atol=1e-7)
    with pytest.raises(DataError, match=r"no array 'missing' \(has: slo_fundus, other, "
                                        r"glaucoma\); expected the image under key"):
        read_image(f"{tmp_path / 'a.npz'}::missing")


def test_read_npz_matches_numpy_and_refuses_pickles(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.uint16).reshape(3, 4),
              "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "s": np.array("café, cup-to-disc 0.7"), "x": np.array(3.5)}
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    np.savez(tmp_path / "u.npz", **arrays)
    for name in ("c.npz", "u.npz"):
        names, read = read_npz(tmp_path / name, ["a", "f", "s", "x", "absent"])
        assert names == list(arrays) and set(read) == set(arrays)
        with np.load(tmp_path / name) as reference:
            for key in arrays:
                np.testing.assert_array_equal(read[key], reference[key])
                assert read[key].dtype == reference[key].dtype
    np.savez(tmp_path / "o.npz", o=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="holds Python objects"):
        read_npz(tmp_path / "o.npz", ["o"])


def test_to_pil_gray_and_rgb(retina):
    gray = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    image = to_pil(gray)
    assert image.mode == "RGB" and image.size == (5, 4)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    np.testing.assert_array_equal(pixels[..., 0], np.rint(gray * 255).astype(np.uint8))
    np.testing.assert_array_equal(np.asarray(to_pil(retina / 255.0)), retina)
    with pytest.raises(DataError, match="expected a 2-D"):
        to_pil(np.zeros((2, 2, 2)))


def test_dicom_ct_without_window_is_rescaled_then_min_max():
    path = get_testdata_file("CT_small.dcm")
    dataset = pydicom.dcmread(path)
    hounsfield = dataset.pixel_array * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept)
    expected = (hounsfield - hounsfield.min()) / (hounsfield.max() - hounsfield.min())
    np.testing.assert_allclose(read_image(path), expected, atol=1e-6)
    check_image(path)


def test_dicom_window_matches_pydicom(tmp_path):
    """MR_small carries a window (600/1600); CT_small gets a lung window written into it."""
    mr = get_testdata_file("MR_small.dcm")
    ct = tmp_path / "ct_lung.dcm"
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.WindowCenter, dataset.WindowWidth = -600, 1500
    dataset.save_as(ct)
    for path in (mr, str(ct)):
        dataset = pydicom.dcmread(path)
        values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
        windowed = apply_windowing(values, dataset)  # pydicom maps onto [y_min, y_max]
        low = -(2 ** (dataset.BitsStored - 1))
        high = 2 ** (dataset.BitsStored - 1) - 1
        if "RescaleSlope" in dataset:
            slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
            low, high = low * slope + intercept, high * slope + intercept
        np.testing.assert_allclose(read_image(path), (windowed - low) / (high - low), atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    source = get_testdata_file("MR_small.dcm")
    dataset = pydicom.dcmread(source)
    dataset.PhotometricInterpretation = "MONOCHROME1"
    dataset.save_as(tmp_path / "inverted.dcm")
    np.testing.assert_allclose(read_image(str(tmp_path / "inverted.dcm")),
                               1.0 - read_image(source), atol=1e-6)


def test_dicom_without_suffix_is_recognised(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "IM0001")
    assert read_image(str(tmp_path / "IM0001")).shape == (64, 64)


def test_truncated_files_refused_by_check_and_read(tmp_path, retina):
    Image.fromarray(retina).save(tmp_path / "full.png")
    Image.fromarray(retina).save(tmp_path / "full.jpg")
    np.save(tmp_path / "full.npy", retina[..., 0])
    np.savez_compressed(tmp_path / "full.npz", slo_fundus=retina[..., 0])
    broken = [truncated_copy(tmp_path / f"full{suffix}", tmp_path / f"cut{suffix}")
              for suffix in (".png", ".jpg", ".npy", ".npz")]
    broken.append(truncated_copy(Path(get_testdata_file("CT_small.dcm")),
                                 tmp_path / "cut.dcm", keep=0.8))
    for path in broken:
        for reader in (check_image, read_image):
            with pytest.raises(DataError, match=rf"{path.name}: .*expected"):
                reader(str(path))


def test_garbage_and_missing_files_refused(tmp_path):
    (tmp_path / "noise.png").write_bytes(b"not an image at all" * 10)
    (tmp_path / "noise.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 40)
    for name in ("noise.png", "noise.dcm", "absent.png"):
        for reader in (check_image, read_image):
            with pytest.raises(DataError, match=rf"{name}: .*expected"):
                reader(str(tmp_path / name))


def test_corrupted_npz_member_fails_its_crc(tmp_path):
    np.savez(tmp_path / "a.npz", slo_fundus=np.arange(4096, dtype=np.float32).reshape(64, 64))
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    raw[2000] ^= 0xFF  # inside the stored image data
    (tmp_path / "a.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="CRC"):
        read_image(str(tmp_path / "a.npz"))


def test_key_only_for_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"a\.npy: key 'x' given for a npy file; expected "
                                        r"path::key only for \.npz archives"):
        read_image(f"{tmp_path / 'a.npy'}::x")
