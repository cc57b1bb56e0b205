"""Readers and writers of bsafusion.io: formats, bit depths, metadata, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from bsafusion.errors import InputError
from bsafusion.io import file_stem, load_image, read_image, write_image

RNG = np.random.default_rng(0)


def _ramp(h=40, w=48, dtype=np.uint8):
    top = np.iinfo(dtype).max
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_8bit_grey_roundtrip(tmp_path, suffix):
    arr = _ramp()
    path = tmp_path / f"a{suffix}"
    Image.fromarray(arr).save(path)
    img = load_image(path)
    assert img.meta["bits"] == 8 and img.array.dtype == np.float32
    np.testing.assert_allclose(img.array, arr / 255.0, atol=1e-7)
    write_image(tmp_path / f"b{suffix}", img.array, bits=8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"b{suffix}")), arr)


def test_jpeg_colour(tmp_path):
    arr = np.stack([_ramp(), _ramp()[::-1], np.full((40, 48), 128, np.uint8)], axis=-1)
    Image.fromarray(arr).save(tmp_path / "c.jpg", quality=95)
    img = load_image(tmp_path / "c.jpg")
    assert img.array.shape == (40, 48, 3)
    assert np.abs(img.array - arr / 255.0).mean() < 0.02


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_roundtrip(tmp_path, suffix):
    arr = _ramp(dtype=np.uint16)
    path = tmp_path / f"a{suffix}"
    (tifffile.imwrite(path, arr) if suffix == ".tif" else Image.fromarray(arr).save(path))
    img = load_image(path)
    assert img.meta["bits"] == 16
    np.testing.assert_allclose(img.array, arr / 65535.0, atol=1e-7)
    out = write_image(tmp_path / f"out{suffix}", img.array, bits=16)
    back = tifffile.imread(out) if suffix == ".tif" else np.asarray(Image.open(out))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, arr)


def test_32bit_float_tiff_keeps_its_range(tmp_path):
    arr = RNG.uniform(-300, 700, (40, 30)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr)
    img = load_image(tmp_path / "f.tif")
    assert img.meta["bits"] == 32 and img.array.min() == 0.0 and img.array.max() == 1.0
    out = write_image(tmp_path / "o.tif", img.array, bits=32, meta=img.meta)
    np.testing.assert_allclose(tifffile.imread(out), arr, rtol=0, atol=1e-3)


def test_opaque_alpha_is_dropped_with_a_warning(tmp_path, caplog):
    rgba = np.dstack([RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                      np.full((32, 32), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").shape == (32, 32, 3)
    assert "alpha" in caplog.text


def test_dicom_rescale_slope_intercept(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    raw = (np.arange(32 * 32).reshape(32, 32) % 1000).astype(np.uint16)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = raw.tobytes()
    path = tmp_path / "ct.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    img = load_image(path)
    hu = raw * 2.0 - 1024.0
    assert img.meta["range"] == (hu.min(), hu.max())
    np.testing.assert_allclose(img.array, (hu - hu.min()) / np.ptp(hu), atol=1e-6)


def test_nifti_volume_keeps_affine_and_header(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = RNG.uniform(-5, 20, (20, 24, 6)).astype(np.float32)
    affine = np.diag([0.9, 1.1, 2.5, 1.0])
    affine[:3, 3] = (10, -20, 5)
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "v.nii.gz")
    img = load_image(tmp_path / "v.nii.gz")
    assert img.is_volume and img.array.shape == vol.shape
    assert file_stem(tmp_path / "v.nii.gz") == "v"
    out = write_image(tmp_path / "o.nii.gz", img.array, meta=img.meta)
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_allclose(back.header.get_zooms(), (0.9, 1.1, 2.5), rtol=1e-6)
    np.testing.assert_allclose(back.get_fdata(), vol, atol=1e-4)


def _huge_png_header(path, side=40000):
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                    8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


BAD = {
    "missing": (lambda p: None, "no such file"),
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "text": (lambda p: p.write_text("not an image"), "is not an image"),
    "tiny": (lambda p: Image.fromarray(np.zeros((1, 1), np.uint8)).save(p), "too small"),
    "huge": (_huge_png_header, "too large"),
    "grey_alpha": (lambda p: Image.fromarray(
        np.dstack([np.zeros((20, 20), np.uint8), np.arange(400, dtype=np.uint8).reshape(20, 20)]),
        "LA").save(p), "2 channels"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_raise_input_error_naming_the_file(tmp_path, case):
    make, message = BAD[case]
    path = tmp_path / f"{case}.png"
    make(path)
    with pytest.raises(InputError, match=message) as info:
        load_image(path)
    assert info.value.where == str(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_tiff(tmp_path, value):
    arr = RNG.random((20, 20)).astype(np.float32)
    arr[4, 5] = value
    tifffile.imwrite(tmp_path / "x.tif", arr)
    with pytest.raises(InputError, match="NaN or infinite"):
        load_image(tmp_path / "x.tif")


def test_nothing_half_written_when_a_writer_fails(tmp_path):
    with pytest.raises(TypeError):
        write_image(tmp_path / "o.png", np.zeros((8, 8, 5)), bits=8)
    assert list(tmp_path.iterdir()) == []
