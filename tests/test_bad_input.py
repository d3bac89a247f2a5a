"""Every kind of bad input raises InputError naming the file and the problem, and nothing
else escapes: missing, empty, truncated, corrupt and mislabelled files, non-finite or empty
pixels, 4-D data, absurd spacing, oversized images, unsupported types, bad slice choices."""

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import tifffile
from _helpers_io import bundled, write_raw_nifti, write_series
from PIL import Image

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.io import (
    expand_inputs,
    list_slices,
    read_labels,
    read_slice,
    validate_slice,
)

SPACING = (0.8, 0.8)


def refused(path: Path, word: str, call: Callable[[], object] | None = None) -> InputError:
    """Assert the call (default: read and validate ``path``) raises InputError whose message
    names the file and contains ``word``."""
    call = call or (lambda: validate_slice(read_slice(path, spacing=SPACING)))
    with pytest.raises(InputError) as err:
        call()
    message = str(err.value)
    assert path.name in message, message
    assert word.lower() in message.lower(), message
    return err.value


def _noise_nifti(path: Path, shape: tuple[int, ...] = (64, 64, 8)) -> Path:
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 4.0, 1.0])), path)
    return path


def _truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ----------------------------------------------------------------------------- files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.nii.gz"
    refused(path, "not found")
    refused(path, "not found", lambda: list_slices(path))
    refused(path, "not found", lambda: expand_inputs([path]))
    refused(path, "not found", lambda: read_labels(path))


@pytest.mark.parametrize("name", ["empty.nii.gz", "empty.dcm", "empty.png", "empty.mha"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    refused(path, "empty")


def test_truncated_nifti_gz(tmp_path: Path) -> None:
    # SimpleITK would fill the missing half with zeros without a word
    path = _truncate(_noise_nifti(tmp_path / "half.nii.gz"))
    assert gzip.open(path).read(348)  # the header is intact, the data are not
    refused(path, "truncated")


def test_truncated_uncompressed_nifti(tmp_path: Path) -> None:
    path = _truncate(_noise_nifti(tmp_path / "half.nii"), 0.7)
    refused(path, "truncated")


def test_truncated_nifti_header(tmp_path: Path) -> None:
    path = tmp_path / "stub.nii.gz"
    path.write_bytes(gzip.compress(b"\x5c\x01\x00\x00" + b"\0" * 96))
    refused(path, "truncated")


def _png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    return path


def _tiff(path: Path) -> Path:
    tifffile.imwrite(path, np.random.default_rng(0).random((64, 64)).astype(np.float32))
    return path


def _jpeg(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    return path


def _itk(path: Path) -> Path:
    arr = np.random.default_rng(0).integers(0, 1000, (4, 32, 32)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path), useCompression=True)
    return path


def _dicom(path: Path) -> Path:
    shutil.copy(bundled("MR_small.dcm"), path)
    return path


def _dicom_jpeg_ls(path: Path) -> Path:
    shutil.copy(bundled("MR_small_jpeg_ls_lossless.dcm"), path)
    return path


@pytest.mark.parametrize("make, name", [
    (_png, "cut.png"), (_tiff, "cut.tif"), (_jpeg, "cut.jpg"), (_itk, "cut.nrrd"),
    (_itk, "cut.mha"), (_dicom, "cut.dcm"), (_dicom_jpeg_ls, "cut_jls.dcm"),
    (_noise_nifti, "cut.nii.gz"),
])
def test_truncated_files_of_every_format(tmp_path: Path, make, name: str) -> None:
    path = _truncate(make(tmp_path / name), 0.6)
    refused(path, "cannot be read")


def test_bundled_truncated_dicom() -> None:
    refused(bundled("MR_truncated.dcm"), "truncated")


def test_text_file_renamed_dcm(tmp_path: Path) -> None:
    path = tmp_path / "report.dcm"
    path.write_text("Patient report\nNo image here, just text.\n" * 20)
    refused(path, "not a DICOM file")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd",
                                    ".png", ".tif", ".jpg", ".dcm"])
def test_garbage_with_every_suffix(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(5).integers(0, 256, 3000, np.uint8).tobytes())
    problem = refused(path, path.name).problem  # an InputError, never another exception
    assert "cannot be read" in problem or "is not a" in problem, problem


def test_dicom_without_an_image() -> None:
    refused(bundled("rtplan.dcm"), "without an image")


def test_unsupported_extension(tmp_path: Path) -> None:
    for name in ("scan.bmp", "scan"):
        path = tmp_path / name
        path.write_bytes(b"BM" + b"\0" * 200)
        refused(path, "unsupported file type")


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    refused(tmp_path, "no supported images", lambda: expand_inputs([tmp_path]))


# ----------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_non_finite_pixels(tmp_path: Path, value: float, word: str) -> None:
    data = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    data[4, 5, 1] = value
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nonfinite.nii.gz")
    refused(tmp_path / "nonfinite.nii.gz", word)
    tiff = tmp_path / "nonfinite.tif"
    tifffile.imwrite(tiff, data[..., 1])
    refused(tiff, word)


def test_all_zero_and_constant_images(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 3), np.int16), np.eye(4)), tmp_path / "z.nii")
    refused(tmp_path / "z.nii", "zero")
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "flat.png")
    refused(tmp_path / "flat.png", "constant")


def test_4d_nifti(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((8, 8, 4, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "dwi.nii.gz")
    refused(tmp_path / "dwi.nii.gz", "4-D")


def test_4d_metaimage(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(np.ones((2, 3, 8, 8), np.float32), isVector=False)
    sitk.WriteImage(img, str(tmp_path / "series.mha"))
    refused(tmp_path / "series.mha", "4-D")


def test_rgb_raster_needs_equal_channels(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 255
    Image.fromarray(rgb).save(tmp_path / "green.png")
    refused(tmp_path / "green.png", "colour (RGB)")


# ----------------------------------------------------------------------------- spacing


@pytest.mark.parametrize("pixdim, word", [
    ((0.0, 0.8, 4.0), "spacing 0 ×"),
    ((-0.8, 0.8, 4.0), "spacing -0.8 ×"),
    ((0.8, 12.0, 4.0), "12 mm"),
    ((0.8, np.nan, 4.0), "nan"),
    ((0.8, 0.8, 0.0), "thickness"),
])
def test_absurd_nifti_pixdim(tmp_path: Path, pixdim: tuple[float, ...], word: str) -> None:
    data = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    path = write_raw_nifti(tmp_path / "badspacing.nii.gz", data, pixdim=pixdim)
    assert nib.Nifti1Header.from_fileobj(gzip.open(path), check=False)["pixdim"][1] \
        == np.float32(pixdim[0])
    refused(path, word)


def test_absurd_sform_scale(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    path = write_raw_nifti(tmp_path / "bigsform.nii", data, affine=np.diag([25, 0.8, 4, 1.0]),
                           pixdim=(0.8, 0.8, 4.0))
    refused(path, "sform")


def test_absurd_metaimage_spacing(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(np.random.default_rng(0).random((3, 8, 8)))
    img.SetSpacing((20.0, 0.5, 3.0))
    sitk.WriteImage(img, str(tmp_path / "coarse.mha"))
    refused(tmp_path / "coarse.mha", "spacing 20")


@pytest.mark.parametrize("spacing", [(0.0, 0.8), (-1.0, 0.8), (0.8, 11.0)])
def test_absurd_given_spacing(tmp_path: Path, spacing: tuple[float, float]) -> None:
    path = _png(tmp_path / "slice.png")
    refused(path, "not plausible", lambda: read_slice(path, spacing=spacing))


def test_absurd_dicom_pixel_spacing(tmp_path: Path) -> None:
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    ds.PixelSpacing = [0, 0.5]
    ds.save_as(tmp_path / "zero_spacing.dcm")
    refused(tmp_path / "zero_spacing.dcm", "not plausible")


def test_raster_without_spacing(tmp_path: Path) -> None:
    path = _png(tmp_path / "slice.png")
    refused(path, "needs an explicit pixel spacing", lambda: read_slice(path))
    tiff = _tiff(tmp_path / "slice.tif")
    refused(tiff, "needs an explicit pixel spacing", lambda: read_slice(tiff))


def test_dicom_without_pixel_spacing(tmp_path: Path) -> None:
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    del ds.PixelSpacing
    ds.save_as(tmp_path / "nospacing.dcm")
    refused(tmp_path / "nospacing.dcm", "no PixelSpacing", lambda: read_slice(
        tmp_path / "nospacing.dcm"))


# ----------------------------------------------------------------------------- size


def test_huge_nifti_is_refused_from_its_header(tmp_path: Path) -> None:
    # the header claims 5000 × 5000 × 2 float32 (200 MB); only a few bytes follow
    path = write_raw_nifti(tmp_path / "huge.nii.gz", np.ones((2, 2, 1), np.float32),
                           shape=(5000, 5000, 2))
    assert path.stat().st_size < 1000
    refused(path, "larger than the 4096 × 4096 limit")


def test_huge_png_and_dicom(tmp_path: Path) -> None:
    Image.fromarray(np.ones((8, 4100), np.uint8)).save(tmp_path / "wide.png")
    refused(tmp_path / "wide.png", "4096")
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    ds.Rows, ds.Columns = 5000, 2
    ds.PixelData = np.ones((5000, 2), np.int16).tobytes()
    ds.save_as(tmp_path / "tall.dcm")
    refused(tmp_path / "tall.dcm", "4096")


# ----------------------------------------------------------------------------- choosing


def test_index_out_of_range(tmp_path: Path) -> None:
    path = _noise_nifti(tmp_path / "vol.nii.gz", (16, 16, 5))
    for index in (5, -1):
        refused(path, "out of range", lambda index=index: read_slice(path, index=index))
    png = _png(tmp_path / "slice.png")
    refused(png, "out of range", lambda: read_slice(png, index=1, spacing=SPACING))
    refused(path, "out of range", lambda: read_labels(path, index=9))


def test_position_out_of_range(tmp_path: Path) -> None:
    path = _noise_nifti(tmp_path / "vol.nii.gz", (16, 16, 5))  # slices at 0 … 16 mm
    assert read_slice(path, position=17.9).meta["slice_index"] == 4
    refused(path, "out of range", lambda: read_slice(path, position=18.5))
    refused(path, "out of range", lambda: read_slice(path, position=float("nan")))


def test_index_and_position_together(tmp_path: Path) -> None:
    path = _noise_nifti(tmp_path / "vol.nii.gz", (16, 16, 5))
    refused(path, "not both", lambda: read_slice(path, index=1, position=4.0))


def test_series_folder_with_an_unknown_series(tmp_path: Path) -> None:
    from napari_paraspinal.core.io import InputRef

    write_series(tmp_path / "s", n=2)
    ref = InputRef(tmp_path / "s", "1.2.3.4")
    refused(tmp_path / "s", "no readable DICOM images of this series",
            lambda: read_slice(ref))


def test_unreadable_file_in_a_series_folder_is_its_own_case(tmp_path: Path) -> None:
    uid, _, _ = write_series(tmp_path, n=3)
    (tmp_path / "broken.dcm").write_text("not DICOM")
    refs = expand_inputs([tmp_path])
    assert [r.series_uid for r in refs] == [uid, None]
    assert read_slice(refs[0]).meta["slice_count"] == 3
    assert any("could not be read" in n for n in read_slice(refs[0]).notes)
    refused(tmp_path / "broken.dcm", "not a DICOM file", lambda: read_slice(refs[1]))
