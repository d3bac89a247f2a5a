"""The core never imports Qt or napari: it must run on servers and in batch jobs, where
``pip install napari-paraspinal`` (no ``[gui]`` extra) installs neither."""

import subprocess
import sys
import textwrap
from pathlib import Path

GUI = ("PySide6", "PyQt5", "PyQt6", "qtpy", "napari", "vispy", "magicgui", "superqt", "npe2")

# a Python in which the GUI packages cannot be imported, as on a server install
BLOCK = textwrap.dedent(f"""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {GUI!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Block())
""")


def _run(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def test_every_core_module_imports_without_gui_packages() -> None:
    out = _run("""
        import pkgutil, napari_paraspinal
        names = [m.name for m in pkgutil.walk_packages(napari_paraspinal.__path__,
                                                       'napari_paraspinal.')
                 if not m.name.startswith('napari_paraspinal._napari')
                 and not m.name.endswith('__main__')]
        for name in names:
            __import__(name)
        bad = [m for m in sys.modules if m.split('.')[0] in {GUI!r}]
        print(len(names), ','.join(bad))
    """.replace("{GUI!r}", repr(GUI)))
    assert out.returncode == 0, out.stderr
    count, bad = out.stdout.split(" ", 1)
    assert int(count) > 60  # the walk found the package's modules
    assert bad.strip() == "", f"GUI modules imported by the core: {bad}"


def test_the_main_job_runs_without_gui_packages(tmp_path: Path) -> None:
    out = _run(f"""
        from napari_paraspinal.cli import main
        assert main(['phantom', {str(tmp_path / 'data')!r}, '--n', '1', '--seed', '4242']) == 0
        code = main(['run', {str(tmp_path / 'data' / 'images')!r}, '--out',
                     {str(tmp_path / 'out')!r}])
        print('exit', code)
    """)
    assert out.returncode == 0, out.stderr
    assert "exit 0" in out.stdout
    assert (tmp_path / "out" / "measurements.xlsx").is_file()
    assert len(list((tmp_path / "out" / "labels").glob("*.nii.gz"))) == 1


def test_the_app_says_what_to_install_without_napari() -> None:
    out = _run("""
        from paraspinal_app.main import main
        print('exit', main([]))
    """)
    assert out.returncode == 0, out.stderr
    assert "exit 2" in out.stdout
    assert "napari-paraspinal[gui]" in out.stderr
