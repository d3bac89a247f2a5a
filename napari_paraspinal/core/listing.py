"""Inputs as cases: the folder listing every command shares (run, info, project add, ...).

Only regular files and folders are ever opened: every path is ``os.stat``-ed first, so a
named pipe, socket or device is reported instead of blocking a read for ever, and a symbolic
link loop, a broken link, an over-long path or a folder without permission is reported with
its reason instead of escaping as a traceback. Within a folder such entries, hidden entries
(names starting with ``.``) and links to folders (not followed) are *skipped with a note*
(:class:`Listing`); the good files beside them are still listed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import dicom, dicom_files, raster
from .errors import InputError

NIFTI = (".nii", ".nii.gz")
ITK = (".nrrd", ".nhdr", ".mha", ".mhd")
SUPPORTED = "DICOM, NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), " \
            "PNG, TIFF, JPEG"

_log = logging.getLogger("napari_paraspinal.inputs")

_KINDS = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass(frozen=True)
class InputRef:
    """One input: a file, or a DICOM series (its folder and, when known, its series UID);
    ``note`` is said on the case's rows (e.g. why a Dixon series was not paired)."""

    path: Path
    series_uid: str | None = None
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))

    def __str__(self) -> str:
        if self.series_uid is None:
            return str(self.path)
        uid = self.series_uid
        short = uid if len(uid) <= 24 else f"{uid[:10]}…{uid[-10:]}"
        return f"{self.path}{os.sep} (series {short})"


@dataclass
class Listing:
    """The cases found, and what was skipped (each an :class:`InputError` with the reason)."""

    refs: list[InputRef] = field(default_factory=list)
    skipped: list[InputError] = field(default_factory=list)


def path_problem(err: OSError) -> str:
    """Why a path cannot be used or written, in words (for any ``OSError``)."""
    reasons = {
        errno.ENOENT: "not found: no such file or folder",
        errno.ELOOP: "is a symbolic link loop (a link that leads back to itself)",
        errno.ENAMETOOLONG: "the path is too long for the file system "
                            f"({len(os.fsencode(err.filename or ''))} bytes)",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "not found: a part of the path is a file, not a folder",
        errno.ENOSPC: "no space left on device (the disk is full)",
        getattr(errno, "EDQUOT", -1): "disk quota exceeded",
        errno.EROFS: "read-only file system",
    }
    return reasons.get(err.errno, err.strerror or str(err))


def stat_input(path: Path, source: str | None = None) -> os.stat_result:
    """``os.stat`` of an input that must be a regular file or a folder; :class:`InputError`
    with the reason otherwise (a broken link is "not found")."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise InputError(source or path, path_problem(err)) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(source or path, f"is {kind}, not a regular file: not read (only "
                                         "files and folders are read)")
    return st


def format_of(path: Path) -> str | None:
    """'nifti', 'itk', 'raster' or 'dicom' by suffix, then by DICOM content; else None.
    Content is only looked at in regular files."""
    name = path.name.lower()
    if name.endswith(NIFTI):
        return "nifti"
    if name.endswith(ITK):
        return "itk"
    if name.endswith(raster.RASTER_SUFFIXES):
        return "raster"
    if dicom_files.is_dicom_candidate(path):
        return "dicom"
    return None


def list_inputs(paths: Sequence[str | os.PathLike[str]]) -> Listing:
    """Inputs as cases: files as given; a folder gives one case per DICOM series in each of
    its folders plus every other supported file, walked in sorted order.

    A given path that cannot be used raises :class:`InputError` (missing, a link loop, too
    long, ...); a given file that is no regular file is listed and refused when read.
    """
    listing = Listing()
    for raw in paths:
        p = Path(raw)
        try:
            st = os.stat(p)
        except OSError as err:
            raise InputError(p, path_problem(err)) from None
        if stat.S_ISDIR(st.st_mode):
            skipped: list[InputError] = []
            found = _walk(p, skipped)
            if not found:
                why = "".join(f"; skipped {e}" for e in skipped[:3])
                raise InputError(p, f"no supported images in this folder ({SUPPORTED}){why}")
            listing.refs.extend(found)
            listing.skipped.extend(skipped)
        else:
            listing.refs.append(InputRef(p))
    return listing


def expand_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[InputRef]:
    """:func:`list_inputs`' cases; what it skipped is logged as a warning (shown on stderr
    unless logging is set up otherwise), so no command skips silently."""
    listing = list_inputs(paths)
    for err in listing.skipped:
        _log.warning("skipped %s", err)
    return listing.refs


def _walk(root: Path, skipped: list[InputError]) -> list[InputRef]:
    """Depth-first, sorted, without recursion (deep trees are fine)."""
    refs: list[InputRef] = []
    hidden: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        files, subdirs = _entries(folder, skipped, hidden)
        formats = {p: format_of(p) for p in files}
        series, unreadable = dicom.group_series([p for p in files if formats[p] == "dicom"])
        refs.extend(InputRef(folder, uid) for uid in series)
        refs.extend(InputRef(p) for p in unreadable)
        refs.extend(InputRef(p) for p in files if formats[p] not in (None, "dicom"))
        pending.extend(reversed(subdirs))
    if hidden:
        shown = ", ".join(hidden[:3]) + (", ..." if len(hidden) > 3 else "")
        skipped.append(InputError(root, f"{len(hidden)} hidden file(s) or folder(s) (names "
                                        f"starting with '.') not read: {shown}"))
    return refs


def _entries(folder: Path, skipped: list[InputError], hidden: list[str]
             ) -> tuple[list[Path], list[Path]]:
    """Regular files and folders directly in ``folder``, sorted; the rest noted."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        skipped.append(InputError(folder, f"folder not read: {path_problem(err)}"))
        return [], []
    files, subdirs = [], []
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            hidden.append(entry.name)
            continue
        try:
            st = os.stat(path)
        except OSError as err:
            broken = err.errno == errno.ENOENT and entry.is_symlink()
            skipped.append(InputError(path, "is a broken symbolic link (its target does not "
                                            "exist)" if broken else path_problem(err)))
            continue
        if stat.S_ISDIR(st.st_mode):
            if entry.is_symlink():
                skipped.append(InputError(path, "a link to a folder: not followed (give "
                                                "the folder itself to read it)"))
            else:
                subdirs.append(path)
        elif stat.S_ISREG(st.st_mode):
            files.append(path)
        else:
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            skipped.append(InputError(path, f"is {kind}: not read"))
    return files, subdirs
