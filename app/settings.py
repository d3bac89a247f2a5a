"""The app's settings, remembered between runs in a JSON file in the user's config folder.

Recent projects, device, model, fat method, the file dialogs' last folder and the window
geometry. A missing file gives the defaults; a corrupt, unknown-version or invalid file gives
the defaults (or the valid part) with a :class:`SettingsWarning`, never an error, so a bad
file cannot stop the app from starting. Written atomically: a crash never leaves half a file.
No Qt and no napari here (the start screen reads these before napari is imported).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_paraspinal.core.atomic import write_text_atomic
from napari_paraspinal.fat_options import DEFAULT_METHOD, METHODS

#: Environment variable naming the folder of ``settings.json`` (tests, portable installs).
CONFIG_ENV = "PARASPINAL_APP_CONFIG_DIR"
APP_NAME = "napari-paraspinal"
FILE_NAME = "settings.json"
VERSION = 1
DEVICES = ("auto", "cpu", "cuda")
MAX_RECENT = 10


class SettingsWarning(UserWarning):
    """The settings file could not be used as it is; defaults were used instead."""


@dataclass(frozen=True)
class AppSettings:
    """What the app remembers. ``model_path`` None means the shipped model; ``geometry`` is
    the main window's ``saveGeometry()`` in base64 ("" when never saved)."""

    recent_projects: tuple[str, ...] = ()
    device: str = "auto"
    model_path: str | None = None
    fat_method: str = DEFAULT_METHOD
    last_folder: str = ""
    geometry: str = ""
    version: int = field(default=VERSION, repr=False)

    def with_recent(self, folder: str | os.PathLike[str]) -> AppSettings:
        """These settings with ``folder`` first among the recent projects (once, at most
        :data:`MAX_RECENT`), and its parent as the last folder of the file dialogs."""
        path = str(Path(folder).expanduser().resolve())
        recent = (path, *(p for p in self.recent_projects if p != path))[:MAX_RECENT]
        return replace(self, recent_projects=recent, last_folder=str(Path(path).parent))

    def existing_recent(self) -> list[str]:
        """The recent projects whose folder still exists, most recent first."""
        return [p for p in self.recent_projects if Path(p).is_dir()]


def config_dir() -> Path:
    """The folder of the settings file: ``$PARASPINAL_APP_CONFIG_DIR``, else the user's
    config folder for the app (platformdirs, else Qt's QStandardPaths)."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        return Path(override)
    try:
        from platformdirs import user_config_dir
    except ImportError:
        from qtpy.QtCore import QStandardPaths

        where = QStandardPaths.StandardLocation.GenericConfigLocation
        base = QStandardPaths.writableLocation(where)
        return Path(base) / APP_NAME
    return Path(user_config_dir(APP_NAME, appauthor=False))


def settings_path() -> Path:
    """Where the settings are stored."""
    return config_dir() / FILE_NAME


def _warn(path: Path, why: str) -> None:
    warnings.warn(f"settings {path}: {why}; using the defaults", SettingsWarning, stacklevel=3)


def from_dict(data: Any, path: Path) -> AppSettings:
    """Settings from a decoded JSON object; invalid values fall back to their defaults."""
    if not isinstance(data, dict):
        _warn(path, "not a JSON object")
        return AppSettings()
    if data.get("version") != VERSION:
        _warn(path, f"unknown version {data.get('version')!r} (this app reads {VERSION})")
        return AppSettings()
    default = AppSettings()
    values: dict[str, Any] = {}
    recent = data.get("recent_projects", [])
    if isinstance(recent, list) and all(isinstance(p, str) for p in recent):
        values["recent_projects"] = tuple(recent[:MAX_RECENT])
    checks = {"device": lambda v: v in DEVICES, "fat_method": lambda v: v in METHODS,
              "model_path": lambda v: v is None or (isinstance(v, str) and v != ""),
              "last_folder": lambda v: isinstance(v, str),
              "geometry": lambda v: isinstance(v, str)}
    for name, ok in checks.items():
        if name in data:
            if ok(data[name]):
                values[name] = data[name]
            else:
                _warn(path, f"{name} {data[name]!r} is not valid (default "
                            f"{getattr(default, name)!r})")
    return replace(default, **values)


def load_settings(path: str | os.PathLike[str] | None = None) -> AppSettings:
    """The settings in ``path`` (default :func:`settings_path`); defaults when there are none
    or they cannot be read (with a :class:`SettingsWarning`)."""
    path = Path(path) if path is not None else settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AppSettings()
    except OSError as err:
        _warn(path, f"cannot be read ({err})")
        return AppSettings()
    try:
        data = json.loads(text)
    except ValueError as err:
        _warn(path, f"not valid JSON ({err})")
        return AppSettings()
    return from_dict(data, path)


def save_settings(settings: AppSettings, path: str | os.PathLike[str] | None = None) -> bool:
    """Write ``settings`` atomically; False (with a warning) when the folder is not
    writable, which must not stop the app."""
    path = Path(path) if path is not None else settings_path()
    data = asdict(settings)
    data["recent_projects"] = list(settings.recent_projects)
    try:
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        warnings.warn(f"settings {path} not saved: {err}", SettingsWarning, stacklevel=2)
        return False
    return True


class SettingsStore:
    """The current settings and where they are saved; every change is written at once."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else settings_path()
        self.current = load_settings(self.path)

    def update(self, **changes: Any) -> AppSettings:
        """Change some fields, save, and return the new settings."""
        return self.replace(replace(self.current, **changes))

    def replace(self, settings: AppSettings) -> AppSettings:
        """Use and save ``settings``."""
        self.current = settings
        save_settings(settings, self.path)
        return settings

    def add_recent(self, folder: str | os.PathLike[str]) -> AppSettings:
        """Put a project folder first among the recent projects, and save."""
        return self.replace(self.current.with_recent(folder))
