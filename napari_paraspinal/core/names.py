"""Safe, bounded, readable ids from file names: the one rule for case ids and output names.

An id is ASCII letters, digits, ``_``, ``.`` and ``-`` (never starting with ``.`` or ``-``),
at most :data:`MAX_ID` characters, so ``<id>.nii.gz`` and the atomic writers' temporary
``.<id>.<random>.nii.gz`` stay far below the 255-byte name limit of common file systems.
Accented letters are transliterated (``Müller`` -> ``Muller``). Where letters had to be
dropped (other scripts) or the name was cut, a short hash of the whole name is appended, so
distinct names keep distinct ids and the same name always gets the same id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: Longest id (characters, all ASCII).
MAX_ID = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def name_hash(name: str) -> str:
    """Eight hex digits identifying ``name`` (stable across runs and machines)."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def safe_id(name: str, fallback: str = "case", max_len: int = MAX_ID) -> str:
    """``name`` as a file-system-safe id (see the module docstring); ``fallback-<hash>``
    when nothing readable is left (a name of dots, or of letters with no ASCII form)."""
    ascii_text, lost = _transliterate(name)
    base = _UNSAFE.sub("_", ascii_text).strip("_.-")
    if not base:
        return f"{fallback}-{name_hash(name)}"
    if lost or len(base) > max_len:
        base = base[: max_len - 9].rstrip("_.-") + "-" + name_hash(name)
    return base


def _transliterate(name: str) -> tuple[str, bool]:
    """ASCII form of ``name`` and whether a letter, digit or symbol had none."""
    out, lost = [], False
    for ch in name:
        if ch.isascii():
            out.append(ch)
            continue
        ascii_ch = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        if not ascii_ch and unicodedata.category(ch)[0] not in "MPZ":
            lost = True  # a letter, digit or symbol (not an accent, dash or space)
        out.append(ascii_ch or "_")
    return "".join(out), lost
