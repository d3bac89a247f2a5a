"""Placing complete files in a project under names that never existed.

A file (the database at ``init``, a label version) is written to a staging name first, with
the :data:`STAGE` prefix, and given its final name by :func:`place_new` only once it is
complete, so a name never points to a half-written file and never replaces one. ``project
check`` reports anything left under a staging name as a temporary file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..core.atomic import fsync_path

STAGE = ".stage-"


def place_new(src: Path, dst: Path) -> None:
    """Give the complete file ``src`` the name ``dst``, which must not exist yet.

    A hard link fails rather than replace an existing file. Where the file system has no
    hard links, the caller's write lock keeps the check-then-rename free of races.
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "label version file already exists",
                              str(dst)) from None
    except OSError:
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "file already exists", str(dst)) from None
        os.replace(src, dst)
    fsync_path(dst.parent)
