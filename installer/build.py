"""Build the napari-paraspinal bundle with PyInstaller (installer/paraspinal.spec).

    python installer/build.py [--archive] [--no-trim] [--out build/installer]

Writes OUT/dist/napari-paraspinal/ (the folder to ship: `paraspinal-app` and `paraspinal`
beside `_internal/`), PyInstaller's work files under OUT/work, and with --archive
OUT/napari-paraspinal-<os>-<machine>.tar.gz (a .zip on Windows). Run it with the Python of
an environment that has `.[gui]`, the CPU torch and pyinstaller installed; the recipe is the
same on Linux, Windows and macOS (see .github/workflows/installer-*.yml).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAME = "napari-paraspinal"


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def archive_name() -> str:
    system = {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(sys.platform,
                                                                          sys.platform)
    return f"{NAME}-{system}-{platform.machine().lower()}"


def make_archive(bundle: Path, out: Path) -> Path:
    """The bundle folder as a .tar.gz (links kept), or a .zip on Windows."""
    base = out / archive_name()
    if sys.platform == "win32":
        return Path(shutil.make_archive(str(base), "zip", bundle.parent, bundle.name))
    target = base.with_name(base.name + ".tar.gz")
    tmp = target.with_name(target.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=bundle.name)
    tmp.replace(target)
    return target


def editable_install() -> bool:
    """Whether napari-paraspinal is installed in editable mode (``pip install -e``)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution(NAME).read_text("direct_url.json") or "{}"
    except PackageNotFoundError:
        raise SystemExit(f"{NAME} is not installed: pip install '.[gui]'") from None
    return bool(json.loads(text).get("dir_info", {}).get("editable"))


def stage(out: Path) -> Path:
    """A plain (non-editable) install of the checkout's packages into ``out``, no
    dependencies: PyInstaller follows files on its search path, not the import hook of an
    editable install (which maps ``paraspinal_app`` to app/ and ``napari_paraspinal.models``
    to models/)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
           "--target", str(out), str(REPO)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(-1, "--no-build-isolation")  # works offline with the installed setuptools
    subprocess.run(cmd, check=True)
    return out


def build(out: Path, trim: bool = True, archive: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PARASPINAL_INSTALLER_TRIM="1" if trim else "0")
    if editable_install():
        env["PARASPINAL_INSTALLER_SRC"] = str(stage(out / "src"))
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(out / "dist"), "--workpath", str(out / "work"),
           str(HERE / "paraspinal.spec")]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=out)  # not REPO: its *.egg-info
    bundle = out / "dist" / NAME
    seconds = time.perf_counter() - start
    print(f"bundle: {bundle} ({folder_size(bundle) / 1e6:.0f} MB, built in {seconds:.0f} s)")
    if archive:
        start = time.perf_counter()
        path = make_archive(bundle, out)
        print(f"archive: {path} ({path.stat().st_size / 1e6:.0f} MB, "
              f"{time.perf_counter() - start:.0f} s)")
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "installer",
                        help="output folder (default: build/installer)")
    parser.add_argument("--archive", action="store_true",
                        help="also pack the bundle (.tar.gz; .zip on Windows)")
    parser.add_argument("--no-trim", action="store_true",
                        help="keep what the recipe excludes (to measure what trimming saves)")
    args = parser.parse_args(argv)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        print("PyInstaller is not installed: pip install pyinstaller", file=sys.stderr)
        return 2
    build(args.out.resolve(), trim=not args.no_trim, archive=args.archive)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
