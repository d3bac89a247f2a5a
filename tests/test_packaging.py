"""A wheel built from the repo (not editable) carries the manifest, the app and the models."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True, capture_output=True)
    (whl,) = out.glob("napari_paraspinal-*.whl")
    return whl


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "napari_paraspinal/napari.yaml" in names
    assert "paraspinal_app/main.py" in names
    assert "napari_paraspinal/models/__init__.py" in names
    # every file of the model folders: a card hashes its log and curve too, and a bundle
    # missing one is refused on load
    shipped = [p for p in (ROOT / "models").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    for p in shipped:
        assert f"napari_paraspinal/models/{p.relative_to(ROOT / 'models').as_posix()}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "paraspinal = napari_paraspinal.cli:main" in text
    assert "paraspinal-app = paraspinal_app.main:main" in text
    assert "napari-paraspinal = napari_paraspinal:napari.yaml" in text


def test_installed_wheel_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    code = ("import napari_paraspinal, napari_paraspinal.models as m, paraspinal_app.main\n"
            "from napari_paraspinal.segment import load_model\n"
            "print(napari_paraspinal.__file__); print(m.MODELS_DIR)\n"
            "print(load_model(device='cpu').path)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert all(line.startswith(str(target)) for line in out), out
    help_text = subprocess.run([sys.executable, "-m", "napari_paraspinal", "--help"],
                               cwd=tmp_path, env=env, check=True, capture_output=True,
                               text=True).stdout
    assert "run" in help_text and "phantom" in help_text


def test_gui_packages_are_an_extra(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    requires = [line.split(":", 1)[1].strip() for line in metadata.decode().splitlines()
                if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    gui = [r for r in requires if "extra == \"gui\"" in r]
    for package in ("napari", "PySide6", "npe2"):
        assert not any(r.startswith(package) for r in base), base
        assert any(r.startswith(package) for r in gui), gui
    assert any(r.startswith("torch") for r in base)
