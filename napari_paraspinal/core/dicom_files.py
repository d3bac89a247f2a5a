"""Which files are DICOM, and their headers.

A file is DICOM by its suffix, its preamble ("DICM" at byte 128) or, without one, by starting
like a DICOM data set. Headers are read with pydicom without pixel data, so listing a series is
cheap; a file that does not parse to a DICOM object is an :class:`InputError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from .errors import InputError

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def _head(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of a regular file (b"" for anything else: a pipe would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def has_dicom_magic(path: str | os.PathLike[str]) -> bool:
    """True when the file has the DICOM preamble marker ("DICM" at byte 128); never raises."""
    head = _head(path, 132)
    return len(head) == 132 and head[128:] == b"DICM"


def looks_like_bare_dataset(path: str | os.PathLike[str]) -> bool:
    """True when a file without the preamble starts like a DICOM data set (little-endian
    group 0002 or 0008, explicit or implicit VR), as some scanners and tools write them."""
    head = _head(path, 8)
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00") or head[3] != 0:
        return False
    if head[4:6].isalpha() and head[4:6].isupper():  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a short element
    return length < 1024 and length % 2 == 0


def is_dicom_candidate(path: Path) -> bool:
    """A file that should be read as DICOM: DICOM suffix, preamble, or a bare data set
    (never DICOMDIR)."""
    if path.name.upper() == "DICOMDIR":
        return False
    return (path.name.lower().endswith(DICOM_SUFFIXES) or has_dicom_magic(path)
            or looks_like_bare_dataset(path))


def folder_has_dicom(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one DICOM file; never raises."""
    try:
        with os.scandir(folder) as entries:
            return any(
                e.is_file() and not e.name.startswith(".") and is_dicom_candidate(Path(e.path))
                for e in entries
            )
    except OSError:
        return False


def read_header(path: Path, tags: Sequence[str] | None = None) -> Dataset:
    """The header (no pixel data) of a DICOM file; InputError when it is not DICOM.

    Files without the preamble are read with ``force`` and accepted when they parse to a
    DICOM object (an image, or an object with a SOP class).
    """
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)")
    magic = has_dicom_magic(path)
    if tags and not magic:
        tags = [*tags, "Rows", "Columns", "SOPClassUID"]  # what tells DICOM from noise
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not magic,
                             specific_tags=list(tags) if tags else None)
    except Exception as err:
        if magic:
            raise
        raise InputError(path, "is not a DICOM file (no 'DICM' marker and no readable "
                               "DICOM header)") from err
    if not magic and not (("Rows" in ds and "Columns" in ds) or "SOPClassUID" in ds):
        raise InputError(path, "is not a DICOM file (no 'DICM' marker and no readable "
                               "DICOM header)")
    return ds
