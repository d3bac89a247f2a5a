"""The app's start screen and settings: shown before napari is imported, remembered between
runs, a bad settings file never stops the app. Plain Qt (offscreen works); no napari here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from napari_paraspinal.project import Project

START_SCRIPT = textwrap.dedent("""
    import sys
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    app = QApplication(sys.argv)
    from paraspinal_app.main import main
    from paraspinal_app.start_screen import StartScreen

    def shown():
        screens = [w for w in QApplication.topLevelWidgets()
                   if isinstance(w, StartScreen) and w.isVisible()]
        print("shown", len(screens), "napari" in sys.modules, "torch" in sys.modules,
              flush=True)
        QApplication.quit()

    QTimer.singleShot(0, shown)
    sys.exit(main([]))
""")


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings in a temporary folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("PARASPINAL_APP_CONFIG_DIR", str(folder))
    return folder


def test_start_screen_shows_without_importing_napari_or_torch(tmp_path, config_dir) -> None:
    """``paraspinal-app`` with no arguments shows the start screen from a plain Qt import;
    the time to it is printed for the README (not asserted: the machine may be busy)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "PARASPINAL_APP_CONFIG_DIR": str(config_dir)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", START_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "shown 1 False False" in done.stdout, done.stdout + done.stderr
    print(f"process start to start screen shown: {elapsed:.2f} s")


def test_recent_projects_are_remembered_newest_first_and_only_existing(tmp_path,
                                                                       config_dir) -> None:
    from paraspinal_app.settings import MAX_RECENT, SettingsStore, settings_path

    folders = [tmp_path / f"p{k}" for k in range(MAX_RECENT + 2)]
    for folder in folders:
        folder.mkdir()
    store = SettingsStore()
    assert store.path == config_dir / "settings.json" == settings_path()
    for folder in folders:
        store.add_recent(folder)
    store.add_recent(folders[3])  # opened again: first, and only once
    store.update(device="cpu")
    folders[-1].rmdir()  # a project folder deleted since: not offered

    again = SettingsStore()
    assert again.current == store.current
    assert again.current.device == "cpu"
    recent = again.current.recent_projects
    assert len(recent) == MAX_RECENT and recent[0] == str(folders[3].resolve())
    assert recent.count(str(folders[3].resolve())) == 1
    assert str(folders[0].resolve()) not in recent  # the oldest fell off the end
    assert again.current.existing_recent() == [p for p in recent
                                               if p != str(folders[-1].resolve())]


@pytest.mark.parametrize("text, why", [
    ("{not json", "not valid JSON"),
    ('{"version": 99, "device": "cpu"}', "unknown version 99"),
    ("[1, 2]", "not a JSON object"),
])
def test_a_corrupt_or_unknown_settings_file_gives_the_defaults(config_dir, text, why) -> None:
    from paraspinal_app.settings import AppSettings, SettingsStore, SettingsWarning

    config_dir.mkdir()
    (config_dir / "settings.json").write_text(text, encoding="utf-8")
    with pytest.warns(SettingsWarning, match=why):
        store = SettingsStore()
    assert store.current == AppSettings()
    store.update(device="cuda")  # and the next save replaces the bad file
    assert json.loads((config_dir / "settings.json").read_text())["device"] == "cuda"


def test_invalid_values_fall_back_one_by_one(config_dir) -> None:
    from paraspinal_app.settings import SettingsWarning, load_settings

    from napari_paraspinal.fat_options import DEFAULT_METHOD

    config_dir.mkdir()
    (config_dir / "settings.json").write_text(json.dumps(
        {"version": 1, "device": "tpu", "fat_method": "gmm", "recent_projects": ["/x"]}))
    with pytest.warns(SettingsWarning, match="device 'tpu'"):
        settings = load_settings()
    assert (settings.device, settings.fat_method, settings.recent_projects) == (
        "auto", "gmm", ("/x",))
    assert DEFAULT_METHOD != "gmm"  # the valid value was kept, not the default


def test_project_marker_is_the_stores_database() -> None:
    from paraspinal_app.start_screen import PROJECT_DB

    from napari_paraspinal.project.schema import DB_NAME

    assert PROJECT_DB == DB_NAME


def _screen(qtbot, folders: list[str] | None = None, files: list[str] | None = None):
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.start_screen import StartScreen

    folders = list(folders or [])
    screen = StartScreen(SettingsStore(),
                         choose_folder=lambda *_: folders.pop(0) if folders else "",
                         choose_files=lambda *_: list(files or []))
    qtbot.addWidget(screen)
    chosen = []
    screen.chosen.connect(chosen.append)
    return screen, chosen


def test_start_screen_actions_emit_what_to_open(qtbot, tmp_path) -> None:
    from paraspinal_app.start_screen import Launch
    from qtpy.QtCore import Qt

    full = tmp_path / "full"
    full.mkdir()
    (full / "note.txt").write_text("x")
    screen, chosen = _screen(qtbot, folders=[str(full), str(tmp_path / "new")])
    assert screen.new_project() is None and "not empty" in screen.status.text()
    assert screen.new_project() == Launch(project=str(tmp_path / "new"))
    assert not screen.sample_button.isEnabled()  # chosen once: the screen waits

    screen, chosen = _screen(qtbot, folders=[str(full)])
    assert screen.open_project() is None and "holds no project" in screen.status.text()
    assert chosen == [] and screen.open_sample() == Launch(sample="L4-L5")
    assert chosen == [Launch(sample="L4-L5")]

    image = tmp_path / "a.nii.gz"
    screen, chosen = _screen(qtbot, files=[str(image)])
    qtbot.mouseClick(screen.files_button, Qt.MouseButton.LeftButton)
    assert chosen == [Launch(files=(str(image),))]
    assert screen.store.current.last_folder == str(tmp_path)
    screen.reset("could not open")
    assert screen.sample_button.isEnabled() and screen.status.text() == "could not open"


def test_recent_project_opens_on_double_click(qtbot, tmp_path) -> None:
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.start_screen import Launch
    from qtpy.QtCore import Qt

    Project.init(tmp_path / "study").close()
    SettingsStore().add_recent(tmp_path / "study")
    SettingsStore().add_recent(tmp_path / "gone")  # never a project folder: not listed
    screen, chosen = _screen(qtbot)
    screen.show()
    qtbot.waitExposed(screen)
    assert screen.recent_list.count() == 1
    item = screen.recent_list.item(0)
    assert item.data(Qt.ItemDataRole.UserRole) == str((tmp_path / "study").resolve())
    rect = screen.recent_list.visualItemRect(item)
    viewport = screen.recent_list.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert chosen == []  # a click selects
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())
    assert chosen == [Launch(project=str((tmp_path / "study").resolve()))]
