"""What Help › About and Help › Documentation show, as plain functions (no Qt)."""

from __future__ import annotations

import sys
from pathlib import Path

TITLE = "napari-paraspinal"
LICENCE = "BSD-3-Clause"


def about_text() -> str:
    """What Help › About says: version, the shipped model (name, version, weights hash) and
    the licence; a plain function so the command line (``--version``) says the same."""
    from napari_paraspinal import __version__
    from napari_paraspinal.segment import default_model_path

    lines = [f"{TITLE} {__version__}"]
    try:
        from napari_paraspinal.nets.bundle import load_card

        card = load_card(default_model_path())
        sha = card.weights_sha256[:12]
        lines.append(f"model: {card.name} v{card.version} (weights {sha})")
    except Exception as err:  # noqa: BLE001  a missing or broken model must not stop About
        lines.append(f"model: none usable ({type(err).__name__})")
    lines.append(f"licence: {LICENCE}")
    return "\n".join(lines)


def readme_path(fallback_dir: Path | None = None) -> Path | None:
    """The README on this machine, no internet needed: the checkout's (a source or editable
    install), a frozen bundle's, else the copy inside the installed package's metadata
    written into ``fallback_dir``. None when there is none."""
    import napari_paraspinal

    candidates = [Path(napari_paraspinal.__file__).resolve().parents[1] / "README.md"]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.insert(0, Path(bundle) / "README.md")
    for path in candidates:
        if path.is_file():
            return path
    if fallback_dir is None:
        return None
    from importlib import metadata

    try:
        text = metadata.distribution(TITLE).metadata.get_payload()
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    from napari_paraspinal.core.atomic import write_text_atomic

    path = Path(fallback_dir) / "README.md"
    write_text_atomic(path, str(text))
    return path
