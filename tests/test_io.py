"""Reading slices and labels from every supported format, on real files: pydicom's bundled
DICOM test files, DICOM series and multi-frame files built here, NIfTI written by nibabel,
NRRD/MHA written by SimpleITK, PNG/TIFF/JPEG written by Pillow and tifffile."""

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import tifffile
from _helpers_io import bundled, lps_world, write_multiframe, write_series
from PIL import Image
from scipy.spatial.transform import Rotation

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.io import (
    InputRef,
    SliceInfo,
    expand_inputs,
    is_supported,
    list_slices,
    read_labels,
    read_slice,
    validate_slice,
)
from napari_paraspinal.core.writers import write_image, write_labels

# ----------------------------------------------------------------------------- DICOM files

MR_SMALL_VARIANTS = [
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_expb.dcm",
]


def test_dicom_file_pixels_and_geometry() -> None:
    path = bundled("MR_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_slice(path)
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data, ds.pixel_array)
    g = image.geometry
    assert g.shape == (ds.Rows, ds.Columns)
    assert g.spacing[:2] == (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]))
    np.testing.assert_allclose(g.origin, [float(v) for v in ds.ImagePositionPatient])
    np.testing.assert_allclose(g.matrix[:, :2].T.ravel(),
                               [float(v) for v in ds.ImageOrientationPatient])
    assert image.meta["modality"] == "MR"
    assert image.meta["series_uid"] == ds.SeriesInstanceUID
    assert image.meta["patient_id"] == ds.PatientID
    assert image.meta["patient_name"] == str(ds.PatientName)
    assert image.notes == []
    validate_slice(image)


@pytest.mark.parametrize("name", MR_SMALL_VARIANTS)
def test_compressed_and_other_encodings_decode_to_the_same_pixels(name: str) -> None:
    reference = read_slice(bundled("MR_small.dcm"))
    image = read_slice(bundled(name))
    np.testing.assert_array_equal(image.data, reference.data)
    assert image.geometry.same_grid(reference.geometry)


def test_rescale_slope_and_intercept_are_applied() -> None:
    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    assert float(ds.RescaleIntercept) == -1024
    image = read_slice(bundled("CT_small.dcm"))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.data, expected)
    assert image.meta["modality"] == "CT"


def test_stream_pydicom_cannot_decode_falls_back_to_gdcm() -> None:
    # JPEG-lossy.dcm is a 12-bit lossy JPEG that pylibjpeg refuses; the same picture as
    # JPGExtended.dcm, which pydicom decodes
    image = read_slice(bundled("JPEG-lossy.dcm"))
    same = read_slice(bundled("JPGExtended.dcm"))
    assert any("GDCM" in note for note in image.notes)
    np.testing.assert_allclose(image.data, same.data, atol=1)
    assert any("no patient position/orientation" in note for note in image.notes)


def test_jpeg2000_matches_gdcm_decode() -> None:
    path = bundled("JPEG2000.dcm")
    image = read_slice(path)
    gdcm = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0]
    np.testing.assert_array_equal(image.data, gdcm)
    assert image.geometry.spacing[:2] == (2.26, 2.26)


def test_rgb_dicom_is_refused() -> None:
    path = bundled("SC_rgb_rle.dcm")
    with pytest.raises(InputError, match="colour") as err:
        read_slice(path)
    assert "SC_rgb_rle.dcm" in str(err.value)


def test_rgb_dicom_with_equal_channels_is_taken_as_greyscale(tmp_path: Path) -> None:
    ds = pydicom.dcmread(bundled("SC_rgb_rle.dcm"))
    ds.decompress()
    rgb = ds.pixel_array.copy()
    rgb[..., 1] = rgb[..., 0]
    rgb[..., 2] = rgb[..., 0]
    ds.PixelData = rgb.tobytes()
    ds.save_as(tmp_path / "grey_rgb.dcm")
    image = read_slice(tmp_path / "grey_rgb.dcm")
    np.testing.assert_array_equal(image.data, rgb[..., 0])
    assert any("identical R, G and B" in note for note in image.notes)


def test_missing_pixel_spacing_can_be_given(tmp_path: Path) -> None:
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    del ds.PixelSpacing
    ds.save_as(tmp_path / "nospacing.dcm")
    image = read_slice(tmp_path / "nospacing.dcm", spacing=(0.7, 0.9))
    assert image.geometry.spacing[:2] == (0.7, 0.9)
    assert any("no PixelSpacing" in note for note in image.notes)


def test_multiframe_file_is_a_volume_sorted_by_position(tmp_path: Path) -> None:
    path = tmp_path / "multiframe.dcm"
    frames = write_multiframe(path, offsets=[6.0, 0.0, 3.0])
    z0 = float(pydicom.dcmread(bundled("MR_small.dcm")).ImagePositionPatient[2])
    assert [s.position for s in list_slices(path)] == pytest.approx([z0, z0 + 3, z0 + 6])
    for k, frame in enumerate([1, 2, 0]):  # file frames in position order
        image = read_slice(path, index=k)
        np.testing.assert_array_equal(image.data, frames[frame] * 2.0 - 5.0)
        assert image.geometry.origin[2] == pytest.approx(z0 + 3 * k)
        assert image.geometry.spacing == pytest.approx((0.6, 0.4, 3.0))
    assert "middle" in read_slice(path).notes[0]


def test_classic_multiframe_positions_follow_grid_frame_offsets() -> None:
    path = bundled("rtdose.dcm")
    ds = pydicom.dcmread(path)
    infos = list_slices(path)
    z0 = float(ds.ImagePositionPatient[2])
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert [s.position for s in infos] == pytest.approx([z0 + o for o in offsets])
    image = read_slice(path, index=4)
    np.testing.assert_array_equal(image.data, ds.pixel_array[4])
    volume = sitk.ReadImage(str(path))
    assert image.geometry.same_grid(Geometry.from_sitk(volume, 4))


# ----------------------------------------------------------------------------- DICOM series


def test_series_is_sorted_along_the_normal_like_simpleitk(tmp_path: Path) -> None:
    uid, origins, pixels = write_series(tmp_path / "series", n=5, step=3.0, tilt=10.0)
    (ref,) = expand_inputs([tmp_path])
    assert ref == InputRef(tmp_path / "series", uid)
    infos = list_slices(ref)
    assert [s.index for s in infos] == list(range(5))
    assert np.diff([s.position for s in infos]) == pytest.approx([3.0] * 4)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series"), uid))
    volume = reader.Execute()
    for k in range(5):
        image = read_slice(ref, index=k)
        np.testing.assert_array_equal(image.data, pixels[k])
        np.testing.assert_allclose(image.geometry.origin, origins[k], atol=1e-6)
        assert image.geometry.same_grid(Geometry.from_sitk(volume, k))
        np.testing.assert_array_equal(image.data, sitk.GetArrayFromImage(volume)[k])
    # DICOM PixelSpacing is (row, column): 0.5 between rows, 0.8 between columns
    assert image.geometry.spacing == pytest.approx((0.8, 0.5, 3.0))


def test_series_default_middle_and_nearest_position(tmp_path: Path) -> None:
    uid, origins, pixels = write_series(tmp_path, n=5, step=3.0)
    ref = InputRef(tmp_path, uid)
    image = read_slice(ref)
    np.testing.assert_array_equal(image.data, pixels[2])
    assert "middle" in image.notes[0] and "5 slices" in image.notes[0]
    assert image.meta["slice_index"] == 2 and image.meta["slice_count"] == 5
    positions = [s.position for s in list_slices(ref)]
    near = read_slice(ref, position=positions[3] + 1.2)
    np.testing.assert_array_equal(near.data, pixels[3])
    assert "nearest" in near.notes[0]
    assert read_slice(ref, index=0).notes == []
    assert uid[:10] in str(ref) and str(tmp_path) in str(ref)


def test_folder_with_two_series_gives_two_cases(tmp_path: Path) -> None:
    uid_a, _, _ = write_series(tmp_path / "study", n=3, description="a")
    uid_b, _, pix_b = write_series(tmp_path / "tmp", n=2, description="b")
    for f in (tmp_path / "tmp").iterdir():
        shutil.move(f, tmp_path / "study" / f"B{f.name}")
    refs = expand_inputs([tmp_path / "study"])
    assert {r.series_uid for r in refs} == {uid_a, uid_b}
    ref_b = next(r for r in refs if r.series_uid == uid_b)
    assert len(list_slices(ref_b)) == 2
    np.testing.assert_array_equal(read_slice(ref_b, index=1).data, pix_b[1])
    with pytest.raises(InputError, match="2 DICOM series"):
        read_slice(tmp_path / "study")


# ----------------------------------------------------------------------------- inputs


def test_expand_inputs_walks_folders_in_sorted_order(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4))
    (tmp_path / "b").mkdir()
    nib.save(img, tmp_path / "b" / "z.nii.gz")
    nib.save(img, tmp_path / "a.nii")
    Image.fromarray(np.ones((4, 4), np.uint8)).save(tmp_path / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.nii").write_bytes(b"")
    uid, _, _ = write_series(tmp_path / "b" / "dicom", n=2)
    refs = expand_inputs([tmp_path, tmp_path / "a.nii"])
    assert refs == [
        InputRef(tmp_path / "a.nii"),
        InputRef(tmp_path / "c.png"),
        InputRef(tmp_path / "b" / "z.nii.gz"),
        InputRef(tmp_path / "b" / "dicom", uid),
        InputRef(tmp_path / "a.nii"),
    ]


def test_is_supported(tmp_path: Path) -> None:
    shutil.copy(bundled("MR_small.dcm"), tmp_path / "IM0001")
    (tmp_path / "notes.txt").write_text("text")
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert is_supported(tmp_path / "IM0001")  # DICOM preamble, no suffix
    assert is_supported(tmp_path / "scan.nii.gz")
    assert is_supported(str(tmp_path))  # a folder holding DICOM files
    assert not is_supported(tmp_path / "notes.txt")
    assert not is_supported(tmp_path / "sub")
    assert not is_supported(tmp_path / "missing.nii.gz")
    assert not is_supported("\0bad")


# ----------------------------------------------------------------------------- NIfTI


def _affine(flip_x: bool = True) -> np.ndarray:
    rot = Rotation.from_euler("xz", [12, 5], degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-0.8 if flip_x else 0.8, 0.9, 4.0])
    affine[:3, 3] = [60.0, -30.0, 15.0]
    return affine


def test_nifti_2d_world_positions_match_the_affine(tmp_path: Path) -> None:
    data = np.arange(30 * 20, dtype=np.float32).reshape(30, 20)  # (i, j)
    affine = _affine()
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "slice.nii.gz")
    image = read_slice(tmp_path / "slice.nii.gz")
    g = image.geometry
    assert g.shape == (20, 30)
    np.testing.assert_array_equal(image.data, data.T)
    for i, j in [(0, 0), (29, 0), (0, 19), (13, 7)]:
        np.testing.assert_allclose(g.index_to_world(i, j), lps_world(affine, i, j), atol=1e-4)
    assert g.spacing[:2] == pytest.approx((0.8, 0.9))
    assert image.notes == []


def test_nifti_3d_slices_match_the_affine(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((24, 18, 7)).astype(np.float32)
    affine = _affine()
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "vol.nii")
    infos = list_slices(tmp_path / "vol.nii")
    assert len(infos) == 7 and np.diff([s.position for s in infos]) == pytest.approx([4.0] * 6)
    middle = read_slice(tmp_path / "vol.nii")
    assert "middle" in middle.notes[0] and "7 slices" in middle.notes[0]
    np.testing.assert_array_equal(middle.data, data[:, :, 3].T)
    for k in (0, 5):
        g = read_slice(tmp_path / "vol.nii", index=k).geometry
        for i, j in [(0, 0), (23, 17), (5, 11)]:
            np.testing.assert_allclose(g.index_to_world(i, j), lps_world(affine, i, j, k),
                                       atol=1e-4)
    near = read_slice(tmp_path / "vol.nii", position=infos[5].position - 1.5)
    np.testing.assert_array_equal(near.data, data[:, :, 5].T)


def test_nifti_4d_with_one_volume_and_scaling(tmp_path: Path) -> None:
    data = np.arange(6 * 5 * 3, dtype=np.int16).reshape(6, 5, 3, 1)
    img = nib.Nifti1Image(data, np.diag([0.7, 0.7, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, tmp_path / "one_volume.nii.gz")
    image = read_slice(tmp_path / "one_volume.nii.gz", index=2)
    np.testing.assert_allclose(image.data, data[:, :, 2, 0].T * 0.5 + 10)


def test_float64_nifti_reads_as_float32(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((8, 8, 3)) * 1000
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "f64.nii.gz")
    image = read_slice(tmp_path / "f64.nii.gz", index=1)
    assert image.data.dtype == np.float32
    np.testing.assert_allclose(image.data, data[:, :, 1].T, rtol=1e-6)


# ----------------------------------------------------------------------------- NRRD, MHA


def _sitk_volume() -> sitk.Image:
    arr = np.random.default_rng(3).integers(0, 3000, (6, 20, 16)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 5.0))
    img.SetOrigin((-40.0, 12.5, 100.0))
    rot = Rotation.from_euler("x", 8, degrees=True).as_matrix() @ np.diag([-1.0, 1.0, -1.0])
    img.SetDirection(tuple(rot.ravel()))
    return img


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_nrrd_and_metaimage_round_trip(tmp_path: Path, suffix: str) -> None:
    volume = _sitk_volume()
    path = tmp_path / f"vol{suffix}"
    sitk.WriteImage(volume, str(path), useCompression=True)
    assert len(list_slices(path)) == 6
    for k in (0, 4):
        image = read_slice(path, index=k)
        assert image.geometry.same_grid(Geometry.from_sitk(volume, k))
        np.testing.assert_array_equal(image.data, sitk.GetArrayFromImage(volume)[k])
    assert read_slice(path).meta["slice_index"] == 3


def test_2d_metaimage(tmp_path: Path) -> None:
    img = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    img.SetSpacing((0.5, 0.6))
    img.SetOrigin((3.0, 4.0))
    sitk.WriteImage(img, str(tmp_path / "flat.mha"))
    image = read_slice(tmp_path / "flat.mha")
    assert image.geometry.same_grid(Geometry.from_sitk(img))
    np.testing.assert_array_equal(image.data, sitk.GetArrayFromImage(img))


def test_write_image_round_trip(tmp_path: Path) -> None:
    g = Geometry(shape=(10, 12), spacing=(0.8, 0.8, 4.0), origin=(1.0, 2.0, 3.0),
                 direction=tuple(np.diag([-1.0, 1.0, -1.0]).ravel()))
    data = np.random.default_rng(4).random((10, 12)).astype(np.float32)
    write_image(SliceImage(data=data, geometry=g), tmp_path / "slice.nii.gz")
    image = read_slice(tmp_path / "slice.nii.gz")
    assert image.geometry.same_grid(g)
    np.testing.assert_array_equal(image.data, data)
    assert list_slices(tmp_path / "slice.nii.gz") == [SliceInfo(0, pytest.approx(-3.0))]


# ----------------------------------------------------------------------------- raster


def test_png_and_tiff_need_and_use_the_given_spacing(tmp_path: Path) -> None:
    grey16 = (np.arange(40 * 30) * 37 % 4000).astype(np.uint16).reshape(40, 30)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    tifffile.imwrite(tmp_path / "float.tif", grey16.astype(np.float32) / 7)
    for name, expected in (("grey16.png", grey16), ("float.tif", grey16 / np.float32(7))):
        image = read_slice(tmp_path / name, spacing=(0.6, 0.7))
        np.testing.assert_array_equal(image.data, expected.astype(np.float32))
        assert image.geometry == Geometry(shape=(40, 30), spacing=(0.6, 0.7, 1.0))
        assert any("radiological view" in note for note in image.notes)


def test_rgb_with_equal_channels_is_accepted(tmp_path: Path) -> None:
    grey = (np.arange(20 * 16) % 251).astype(np.uint8).reshape(20, 16)
    rgb = np.stack([grey] * 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "grey_rgb.png")
    tifffile.imwrite(tmp_path / "grey_rgb.tif", rgb, photometric="rgb")
    for name in ("grey_rgb.png", "grey_rgb.tif"):
        image = read_slice(tmp_path / name, spacing=(1.0, 1.0))
        np.testing.assert_array_equal(image.data, grey)
        assert any("identical R, G and B" in note for note in image.notes)


@pytest.mark.parametrize("name", ["colour.png", "colour.tif", "colour.jpg"])
def test_real_colour_raster_is_refused(tmp_path: Path, name: str) -> None:
    rgb = np.zeros((20, 16, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[5:10, :, 2] = 90
    if name.endswith(".tif"):
        tifffile.imwrite(tmp_path / name, rgb, photometric="rgb")
    else:
        Image.fromarray(rgb).save(tmp_path / name)
    with pytest.raises(InputError, match="colour") as err:
        read_slice(tmp_path / name, spacing=(1.0, 1.0))
    assert name in str(err.value)


def test_jpeg_greyscale_with_a_lossy_note(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "g.jpg")
    image = read_slice(tmp_path / "g.jpg", spacing=(0.5, 0.5))
    assert image.shape == (8, 8)
    assert any("lossy" in note for note in image.notes)


# ----------------------------------------------------------------------------- labels


def _grid() -> Geometry:
    rot = Rotation.from_euler("x", -9, degrees=True).as_matrix()
    return Geometry(shape=(30, 40), spacing=(0.9, 0.9, 4.0), origin=(-20.0, 5.0, 33.0),
                    direction=tuple(rot.ravel()))


def test_labels_round_trip(tmp_path: Path) -> None:
    g = _grid()
    labels = (np.arange(30 * 40) % 9).astype(np.uint8).reshape(30, 40)
    write_labels(labels, g, tmp_path / "labels.nii.gz")
    out = read_labels(tmp_path / "labels.nii.gz", g)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)
    np.testing.assert_array_equal(read_labels(tmp_path / "labels.nii.gz"), labels)


def test_labels_from_a_volume_take_the_slice_of_the_image(tmp_path: Path) -> None:
    vol = np.zeros((10, 12, 5), np.int16)
    for k in range(5):
        vol[..., k] = k
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "lab.nii.gz")
    image = read_slice(tmp_path / "img.nii.gz", index=3)
    assert np.all(read_labels(tmp_path / "lab.nii.gz", image.geometry) == 3)
    assert np.all(read_labels(tmp_path / "lab.nii.gz", index=1) == 1)


def test_labels_on_another_grid_are_refused(tmp_path: Path) -> None:
    g = _grid()
    write_labels(np.zeros(g.shape, np.uint8), g, tmp_path / "labels.nii.gz")
    moved = Geometry(shape=g.shape, spacing=g.spacing, origin=(0.0, 0.0, 33.0),
                     direction=g.direction)
    with pytest.raises(InputError, match="grid.*origin") as err:
        read_labels(tmp_path / "labels.nii.gz", moved)
    assert "labels.nii.gz" in str(err.value)
    other = Geometry(shape=(30, 41), spacing=g.spacing, origin=g.origin, direction=g.direction)
    with pytest.raises(InputError, match="shape"):
        read_labels(tmp_path / "labels.nii.gz", other)


@pytest.mark.parametrize("value, word", [(9, "0–8"), (-1, "0–8"), (2.5, "whole numbers")])
def test_label_values_must_be_0_to_8(tmp_path: Path, value: float, word: str) -> None:
    g = _grid()
    data = np.zeros(g.shape, np.float32)
    data[3, 4] = value
    write_image(SliceImage(data=data, geometry=g), tmp_path / "bad_labels.nii.gz")
    with pytest.raises(InputError, match=word) as err:
        read_labels(tmp_path / "bad_labels.nii.gz", g)
    assert "bad_labels.nii.gz" in str(err.value)


def test_labels_must_be_a_volume_format(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "labels.png")
    with pytest.raises(InputError, match="NIfTI"):
        read_labels(tmp_path / "labels.png")
