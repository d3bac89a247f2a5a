"""Reading the files of an untrusted folder (a model bundle, an atlas) safely.

A bundle may come from anyone, so every name it gives is confined to its folder (no absolute
paths, no ``..``, no symlink leading out), only regular files are opened (a named pipe or a
device would block or never end) and every read has a size cap. Failures are
:class:`BundleError`, which names the folder, the field or file, and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import InputError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class BundleError(InputError):
    """A model bundle or atlas folder cannot be trusted.

    ``field`` says where: a card field (``network.crf.iterations``) or a file of the folder
    (``atlases/L4-L5/image.nii.gz``). Still an :class:`InputError`, so batch runners report
    it like any other unusable input.
    """

    def __init__(self, folder: str | os.PathLike[str], field: str, problem: str) -> None:
        self.field = field
        super().__init__(folder, f"{field}: {problem}")


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a lowercase hex SHA-256 (64 digits)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def confined(root: str | os.PathLike[str], name: object, field: str) -> Path:
    """``root / name`` resolved, refused unless it stays inside ``root``.

    ``name`` must be a relative path with ``/`` separators and no ``..``; a symlink is
    followed only as long as its target is inside ``root`` too.
    """
    base = Path(root)
    if not isinstance(name, str) or not name or len(name) > 255 or "\x00" in name:
        raise BundleError(base, field, f"must be a relative file name, got {name!r}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith("\\"):
        raise BundleError(base, field, f"absolute path {name!r} is not allowed: names are "
                                       "relative to the folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise BundleError(base, field, f"{name!r} leads out of the folder ('..')")
    top = base.resolve()
    path = (top / posix).resolve()
    if path != top and top not in path.parents:
        raise BundleError(base, field, f"{name!r} leads out of the folder (symlink to {path})")
    return path


def _check_regular(mode: int, size: int, root: Path, field: str, cap: int) -> None:
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                else "a device or socket")
        raise BundleError(root, field, f"is {kind}, not a regular file")
    if size > cap:
        raise BundleError(root, field, f"is {size} bytes, more than the {cap} allowed")


def regular_size(path: Path, root: str | os.PathLike[str], field: str, cap: int) -> int:
    """Size of ``path``; BundleError unless it is a regular file of at most ``cap`` bytes.

    Checked with :func:`os.stat` before anything opens the file, so a FIFO never blocks.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BundleError(root, field, "is missing") from None
    except OSError as err:
        raise BundleError(root, field, f"cannot be read ({err.strerror})") from None
    _check_regular(st.st_mode, st.st_size, Path(root), field, cap)
    return st.st_size


def _open_regular(path: Path, root: Path, field: str, cap: int) -> int:
    """A read-only descriptor of a regular file (stat first; non-blocking open, then fstat
    again, so a file swapped for a FIFO in between still never blocks)."""
    regular_size(path, root, field, cap)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise BundleError(root, field, f"cannot be opened ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode, st.st_size, root, field, cap)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, root: str | os.PathLike[str], field: str, cap: int) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes (see :func:`regular_size`)."""
    root = Path(root)
    fd = _open_regular(path, root, field, cap)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise BundleError(root, field, f"is more than the {cap} bytes allowed")
    return data


def read_json(root: str | os.PathLike[str], name: str, cap: int) -> object:
    """The JSON in ``root/name``: a regular file inside ``root`` of at most ``cap`` bytes."""
    return parse_json(read_regular(confined(root, name, name), root, name, cap), root, name)


def parse_json(raw: bytes, root: str | os.PathLike[str], name: str) -> object:
    """``raw`` as JSON; :class:`BundleError` naming the file when it is not valid JSON
    (nesting past the parser's depth included)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BundleError(Path(root), name, f"is not valid JSON ({err})") from None


def sha256_regular(path: Path, root: str | os.PathLike[str], field: str, cap: int) -> str:
    """Hex SHA-256 of a regular file of at most ``cap`` bytes, read in chunks."""
    root = Path(root)
    fd = _open_regular(path, root, field, cap)
    h, total = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            total += len(chunk)
            if total > cap:
                raise BundleError(root, field, f"is more than the {cap} bytes allowed")
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Path, root: str | os.PathLike[str], field: str, expected: object,
                 cap: int) -> None:
    """Refuse ``path`` unless its SHA-256 is ``expected``; a missing or empty hash is an
    error too (a hash that can be left out protects nothing)."""
    if not is_sha256(expected):
        raise BundleError(root, field, f"has no valid SHA-256 in the card (got {expected!r}); "
                                       "every file of a bundle must be hashed")
    if sha256_regular(path, root, field, cap) != expected:
        raise BundleError(root, field, "does not match its SHA-256 in the card (corrupt or "
                                       "replaced file)")
