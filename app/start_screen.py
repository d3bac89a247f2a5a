"""The start screen: a small Qt window shown at once, before napari is imported.

napari's viewer takes seconds to build, so ``paraspinal-app`` without arguments first shows
this window (recent projects, new or open project, open files, open the sample) and builds
the main window only once the user has chosen. Only Qt and the light settings module are
imported here, never napari or torch. Each choice is a plain method that ends in the
:attr:`StartScreen.chosen` signal with a :class:`Launch`; the file dialogs are injected
callables, so a test drives every action without a modal dialog.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_paraspinal import __version__

from .settings import SettingsStore

#: The file a project folder holds (``napari_paraspinal.project.schema.DB_NAME``; not
#: imported, the project package loads numpy and SimpleITK).
PROJECT_DB = "project.sqlite"
#: The sample the start screen opens.
SAMPLE = "L4-L5"
IMAGE_FILTER = ("Images (*.dcm *.DCM *.ima *.IMA *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd);;"
                "All files (*)")

#: ``(parent, caption, start folder) -> folder`` ("" when cancelled).
ChooseFolder = Callable[[QWidget, str, str], str]
#: ``(parent, caption, start folder) -> files`` (empty when cancelled).
ChooseFiles = Callable[[QWidget, str, str], Sequence[str]]


@dataclass(frozen=True)
class Launch:
    """What the main window opens: image files or folders, a project, a sample level."""

    files: tuple[str, ...] = ()
    project: str | None = None
    sample: str | None = None


def dialog_folder(parent: QWidget, caption: str, start: str) -> str:
    """Qt's folder dialog."""
    return QFileDialog.getExistingDirectory(parent, caption, start)


def dialog_files(parent: QWidget, caption: str, start: str) -> list[str]:
    """Qt's dialog for several image files."""
    files, _ = QFileDialog.getOpenFileNames(parent, caption, start, IMAGE_FILTER)
    return list(files)


def is_project(folder: str | Path) -> bool:
    """Whether ``folder`` holds a paraspinal project."""
    return (Path(folder) / PROJECT_DB).is_file()


class StartScreen(QWidget):
    """Recent projects and the ways in; emits :attr:`chosen` once, then stays disabled."""

    #: A :class:`Launch`: what the user chose to open.
    chosen = Signal(object)

    def __init__(self, store: SettingsStore, choose_folder: ChooseFolder = dialog_folder,
                 choose_files: ChooseFiles = dialog_files, parent: QWidget | None = None,
                 ) -> None:
        super().__init__(parent)
        self.store = store
        self.choose_folder = choose_folder
        self.choose_files = choose_files
        self.viewer: object | None = None  # the main window opened from here (kept alive)
        self.setWindowTitle("napari-paraspinal")

        title = QLabel("<b>Lumbar paraspinal muscles</b>")
        self.recent_list = QListWidget()
        self.recent_list.setMinimumWidth(420)
        # a long folder shows its start and end, never a horizontal scroll bar
        self.recent_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent_list.itemActivated.connect(lambda item: self.open_recent(
            item.data(Qt.ItemDataRole.UserRole)))
        self.new_button = QPushButton("New project…")
        self.open_button = QPushButton("Open project…")
        self.files_button = QPushButton("Open files…")
        self.folder_button = QPushButton("Open DICOM folder…")
        self.sample_button = QPushButton(f"Open sample ({SAMPLE} phantom)")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.version_label = QLabel(f"napari-paraspinal {__version__} · BSD-3-Clause")
        self.version_label.setEnabled(False)  # greyed: information, not an action

        buttons = QVBoxLayout()
        for button in (self.new_button, self.open_button, self.files_button,
                       self.folder_button, self.sample_button):
            buttons.addWidget(button)
        buttons.addStretch()
        recent = QVBoxLayout()
        recent.addWidget(QLabel("Recent projects (double-click to open)"))
        recent.addWidget(self.recent_list)
        body = QHBoxLayout()
        body.addLayout(recent, 1)
        body.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(body)
        layout.addWidget(self.status)
        layout.addWidget(self.version_label)

        self.new_button.clicked.connect(lambda: self.new_project())
        self.open_button.clicked.connect(lambda: self.open_project())
        self.files_button.clicked.connect(lambda: self.open_files())
        self.folder_button.clicked.connect(lambda: self.open_folder())
        self.sample_button.clicked.connect(lambda: self.open_sample())
        self.fill_recent()

    def fill_recent(self) -> None:
        """List the recent projects that still exist, most recent first."""
        self.recent_list.clear()
        for folder in self.store.current.existing_recent():
            item = QListWidgetItem(f"{Path(folder).name}    {folder}")
            item.setData(Qt.ItemDataRole.UserRole, folder)
            item.setToolTip(folder)
            self.recent_list.addItem(item)
        if not self.recent_list.count():
            item = QListWidgetItem("no recent projects")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent_list.addItem(item)

    # ------------------------------------------------------------------ actions

    def new_project(self) -> Launch | None:
        """Ask for an empty folder (or an existing project) and open it as the project."""
        folder = self.choose_folder(self, "New project: choose an empty folder",
                                    self._start_folder())
        if not folder:
            return None
        path = Path(folder)
        if path.is_dir() and any(path.iterdir()) and not is_project(path):
            self.status.setText(f"{path} is not empty: choose an empty folder for a new "
                                "project")
            return None
        return self._choose(Launch(project=str(path)))

    def open_project(self) -> Launch | None:
        """Ask for a project folder and open it."""
        folder = self.choose_folder(self, "Open project folder", self._start_folder())
        if not folder:
            return None
        return self.open_recent(folder)

    def open_recent(self, folder: str | None) -> Launch | None:
        """Open the project in ``folder`` (a recent one, or one just chosen)."""
        if not folder:
            return None
        if not is_project(folder):
            self.status.setText(f"{folder} holds no project ({PROJECT_DB} is missing)")
            return None
        return self._choose(Launch(project=str(folder)))

    def open_files(self) -> Launch | None:
        """Ask for DICOM, NIfTI, NRRD or MHA files and open them without a project."""
        files = tuple(self.choose_files(self, "Open images", self._start_folder()))
        if not files:
            return None
        self.store.update(last_folder=str(Path(files[0]).parent))
        return self._choose(Launch(files=files))

    def open_folder(self) -> Launch | None:
        """Ask for a DICOM folder (a series) and open it without a project."""
        folder = self.choose_folder(self, "Open a DICOM folder", self._start_folder())
        if not folder:
            return None
        self.store.update(last_folder=str(Path(folder).parent))
        return self._choose(Launch(files=(folder,)))

    def open_sample(self) -> Launch:
        """Open the phantom slice (no files needed)."""
        return self._choose(Launch(sample=SAMPLE))

    def reset(self, message: str) -> None:
        """Offer the choices again (the main window could not be opened), saying why."""
        for button in self.findChildren(QPushButton):
            button.setEnabled(True)
        self.recent_list.setEnabled(True)
        self.fill_recent()
        self.status.setText(message)

    # ------------------------------------------------------------------ helpers

    def _start_folder(self) -> str:
        last = self.store.current.last_folder
        return last if last and Path(last).is_dir() else str(Path.home())

    def _choose(self, launch: Launch) -> Launch:
        """Say what is opening, then emit :attr:`chosen` (once)."""
        for button in self.findChildren(QPushButton):
            button.setEnabled(False)
        self.recent_list.setEnabled(False)
        self.status.setText("opening the main window…")
        self.chosen.emit(launch)
        return launch
