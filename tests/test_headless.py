"""The core never imports Qt or napari: it must run on servers and in batch jobs."""

import subprocess
import sys

CORE_MODULES = [
    "napari_paraspinal.cli",
    "napari_paraspinal.pipeline",
    "napari_paraspinal.overlay",
    "napari_paraspinal.export",
    "napari_paraspinal.core.io",
    "napari_paraspinal.phantom",
    "napari_paraspinal._napari.layers",
]


def test_core_imports_no_gui() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE_MODULES)
        + "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'PyQt5', 'PyQt6', 'qtpy', 'napari', 'vispy', 'magicgui', 'superqt')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"GUI modules imported by the core: {out.stdout}"
