"""File › Settings…: device, model and fat method, the settings the widgets start with.

A plain dialog over :class:`.settings.AppSettings`: :meth:`SettingsDialog.settings` reads the
controls, so a test sets them and reads the result without showing the dialog modally. The
model folder is chosen with an injected callable (a Qt folder dialog by default).
"""

from __future__ import annotations

from dataclasses import replace

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_paraspinal.fat_options import METHODS, PAPER_METHOD

from .settings import DEVICES, AppSettings
from .start_screen import ChooseFolder, dialog_folder

SHIPPED = "the shipped model"


class SettingsDialog(QDialog):
    """Edit device, model folder and fat method; :meth:`settings` is the result."""

    def __init__(self, settings: AppSettings, choose_folder: ChooseFolder = dialog_folder,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.original = settings
        self.choose_folder = choose_folder
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setCurrentText(settings.device)
        self.model_edit = QLineEdit(settings.model_path or "")
        self.model_edit.setPlaceholderText(SHIPPED)
        self.model_button = QPushButton("Choose…")
        self.shipped_button = QPushButton("Shipped")
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.method_combo.setCurrentText(settings.fat_method)
        self.method_combo.setToolTip(f"{METHODS[0]}: the default; {PAPER_METHOD}: the paper's")

        model = QHBoxLayout()
        model.addWidget(self.model_edit)
        model.addWidget(self.model_button)
        model.addWidget(self.shipped_button)
        form = QFormLayout()
        form.addRow("device", self.device_combo)
        form.addRow("model folder", model)
        form.addRow("fat method", self.method_combo)
        note = QLabel("Applied to the Segment, Project, Fat and areas and Export widgets now "
                      "and whenever the app starts.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.model_button.clicked.connect(lambda: self.choose_model())
        self.shipped_button.clicked.connect(lambda: self.model_edit.clear())

    def choose_model(self) -> None:
        """Ask for a model bundle folder."""
        folder = self.choose_folder(self, "Model bundle folder", self.model_edit.text())
        if folder:
            self.model_edit.setText(folder)

    def settings(self) -> AppSettings:
        """The original settings with the dialog's device, model and fat method."""
        model = self.model_edit.text().strip() or None
        return replace(self.original, device=self.device_combo.currentText(),
                       model_path=model, fat_method=self.method_combo.currentText())
