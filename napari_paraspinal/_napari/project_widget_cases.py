"""The Project widget's case review: open a case, follow its unsaved edits, mark it, drafts,
step through the worklist from the keyboard, and time each case.

A mixin of :class:`.project_widget.ProjectWidget` (it uses the widget's viewer, project,
open case and controls). Opening a case resets the vouch check boxes to the labels already
vouched for in that case; only :meth:`CaseActions.mark` saves a version. Before a case's
layers are replaced, edited labels are kept as a draft (:func:`.case_drafts.save_drafts`).
The time a case was open is logged when it is closed (:func:`..project.effort.record_open_time`)
for the export's ``seconds_open``.

Keys (:data:`KEYS`, none of them one of napari's): PageDown/PageUp open the next/previous case
of the worklist as shown (sorted and filtered), or with "Next: most uncertain" ticked
PageDown opens the most uncertain case still to do; Ctrl+Return accepts (marks verified),
Ctrl+Shift+Return marks corrected, each for the ticked labels.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut

from ..project.effort import record_open_time
from ..project.records import LabelVersion
from .case_drafts import save_drafts
from .case_layers import case_layers, save_layer, tidy
from .case_state import (
    DRAFT_KEY,
    VERSION_KEY,
    drafted,
    is_case_layer,
    is_labels,
    needs_saving,
    pick_labels,
    unsaved,
)
from .project_text import label_names

LABEL_EVENTS = ("paint", "data", "labels_update", "metadata")
#: Edits are kept as a draft this long after the last stroke (the :meth:`autosave_draft`
#: timer restarts with every stroke), so a crash or kill loses seconds of work, not a case.
AUTOSAVE_MS = 3000
#: The keyboard flow: action → key sequences (napari takes Ctrl+Up/Down, not these).
KEYS = {"next": ("PgDown",), "previous": ("PgUp",),
        "verified": ("Ctrl+Return", "Ctrl+Enter"),
        "corrected": ("Ctrl+Shift+Return", "Ctrl+Shift+Enter")}


class CaseActions:
    """Open, follow and mark the project's cases in the viewer."""

    def open_case(self, case_id: str) -> bool:
        """Show a case's image and latest labels (edits of the open case kept as a draft).

        The vouch check boxes are reset to the labels already vouched for in this case.
        """
        if self.project is None or not self.close_case():
            return False
        try:
            (image, kw, _), (labels, lab_kw, _) = case_layers(self.project, case_id)
            case = self.project.case(case_id)
        except (ValueError, OSError) as err:
            self.status.setText(f"cannot open case {case_id}: {err}")
            self.refresh()
            return False
        self.set_labelled(case.verified_labels)
        self.viewer.add_image(image, **kw)
        layer = self.viewer.add_labels(labels, **lab_kw)
        self.viewer.layers.selection.active = layer
        self.viewer.reset_view()
        self.case_id = case_id
        self._opened = (case_id, time.monotonic())
        self._follow(layer)
        kept = self.status.text() if self.status.text().startswith("unsaved edits") else ""
        if lab_kw["metadata"].get(DRAFT_KEY):
            text = (f"opened {case_id} with the unsaved edits kept from last time "
                    "(a draft): mark the case to save them")
        else:
            text = f"opened {case_id}"
        self.status.setText(f"{kept}; {text}" if kept else text)
        self.refresh()
        return True

    def close_case(self) -> bool:
        """Keep edited layers of the project's cases as drafts (never as a version), then
        remove the layers whose content is safe (in the store or a draft)."""
        if self.project is None:
            return True
        self._record_time_open()
        self._save_drafts(list(self.viewer.layers))
        self._follow(None)
        for layer in tidy(self.project, list(self.viewer.layers)):
            self.viewer.layers.remove(layer)
        left = [ly.name for ly in self.viewer.layers if is_labels(ly)
                and is_case_layer(ly, self.project.root) and needs_saving(ly)
                and not drafted(ly)]
        if left:
            self.status.setText("unsaved edits could not be kept as a draft, left in the "
                                f"viewer: {', '.join(left)}")
        self.case_id = None
        self.show_unsaved()
        return True

    def show_unsaved(self, *_: Any) -> bool:
        """Show whether the open case's labels have unsaved edits; returns that."""
        layer = self.labels_layer()
        pending = layer is not None and needs_saving(layer)
        self.unsaved_label.setText(
            "● unsaved edits: Mark corrected or verified saves them; opening another case "
            "keeps them as a draft" if pending else "")
        return pending

    def labels_layer(self) -> Any:
        """The labels layer of the open case that marking saves (None when there is none)."""
        if self.project is None or self.case_id is None:
            return None
        return pick_labels(list(self.viewer.layers), self.project.root, self.case_id,
                           self.viewer.layers.selection.active)

    def labelled(self) -> list[int]:
        """The label values checked as vouched for."""
        return [v for v, check in self.label_checks.items() if check.isChecked()]

    def set_labelled(self, values: Sequence[int]) -> None:
        """Check exactly these label values."""
        for v, check in self.label_checks.items():
            check.setChecked(v in values)

    def mark(self, kind: str, labelled: Sequence[int] | None = None) -> LabelVersion | None:
        """Save the open case's labels as a ``corrected`` or ``verified`` version.

        ``labelled``: the labels vouched for (None: the checked ones). The layer is turned
        back to the native grid before it is saved.
        """
        layer = self.labels_layer()
        if layer is None:
            self.status.setText("open a case first")
            return None
        marks = list(self.labelled() if labelled is None else labelled)
        if not marks:
            self.status.setText("not saved: tick the labels you vouch for first")
            return None
        try:
            version = save_layer(self.project, layer, kind, marks)
        except (ValueError, OSError) as err:
            self.status.setText(f"not saved: {err}")
            return None
        self.status.setText(f"{self.case_id}: saved v{version.version} {kind} "
                            f"({label_names(version.labelled)})")
        self.refresh()
        return version

    def _on_layer_removed(self, event: Any) -> None:
        """A case labels layer deleted by hand with unsaved edits: keep them as a draft."""
        self._save_drafts([event.value])

    def autosave_draft(self) -> list[str]:
        """Keep the open case's unsaved edits as a draft now (never as a version); the case
        ids written. Runs :data:`AUTOSAVE_MS` after the last stroke."""
        layer = self.labels_layer()
        if self.project is None or layer is None or not needs_saving(layer) or drafted(layer):
            return []
        written = save_drafts(self.project, [layer])
        if written:
            self.status.setText(f"{self.case_id}: unsaved edits kept as a draft (autosave)")
        return written

    def _on_label_event(self, *_: Any) -> None:
        if self.show_unsaved():
            self.autosave.start()  # (re)start: the draft follows the last stroke

    def _save_drafts(self, layers: list[Any]) -> None:
        if self.project is None:
            return
        written = save_drafts(self.project, layers)
        if written:
            try:
                self.status.setText("unsaved edits kept as drafts: " + ", ".join(written))
            except RuntimeError:  # the window is closing and the label is already gone
                pass

    def _follow(self, layer: Any) -> None:
        """Keep the unsaved-edits line in step with ``layer`` (the open case's labels)."""
        if self._followed is not None:
            for name in LABEL_EVENTS:
                if hasattr(self._followed.events, name):
                    getattr(self._followed.events, name).disconnect(self._on_label_event)
        self._followed = layer
        if layer is not None:
            for name in LABEL_EVENTS:
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self._on_label_event)

    def _reload_open_case(self) -> None:
        layer = self.labels_layer()
        if layer is not None and not unsaved(layer):
            self.open_case(self.case_id)

    def _show_case(self) -> None:
        if self.project is None or self.case_id is None:
            self.case_label.setText("no case open")
            return
        layer = self.labels_layer()
        case = self.project.case(self.case_id)
        version = (layer.metadata or {}).get(VERSION_KEY) if layer is not None else None
        shown = f"v{version}" if version else "no saved labels"
        self.case_label.setText(f"case {case.id}: {case.status}, showing {shown}; "
                                f"verified: {label_names(case.verified_labels) or '–'}")

    def _open_row(self, row: int) -> None:
        item = self.table.item(row, 0) if row >= 0 else None
        if item is not None:  # the row's case id, wherever sorting moved the row
            self.open_case(item.data(Qt.ItemDataRole.UserRole))

    # ----------------------------------------------------------------- keyboard flow

    def open_next(self) -> bool:
        """Open the next case: the most uncertain one not yet corrected or verified when
        "Next: most uncertain" is ticked, else the row below the open case."""
        if self.project is None:
            return False
        if not self.uncertain_check.isChecked():
            return self.step(1)
        case_id = self.project.next_case(after=self.case_id, by="uncertainty")
        if case_id is None:
            self.status.setText("no case left to correct or verify")
            return False
        return self.open_case(case_id)

    def open_previous(self) -> bool:
        """Open the case above the open one in the worklist as shown."""
        return self.step(-1)

    def step(self, delta: int) -> bool:
        """Open the case ``delta`` rows below (negative: above) the open one in the worklist
        as shown. When the open case left the list (e.g. marked while the list shows one
        status), the rows are counted from where it was."""
        ids = self.worklist_ids()
        if self.project is None or not ids:
            return False
        if self.case_id in ids:
            row = ids.index(self.case_id) + delta
        elif self.case_id is None:
            row = 0 if delta > 0 else len(ids) - 1
        else:  # the row that took the open case's place is the next one
            row = self._shown_row + (delta - 1 if delta > 0 else delta)
        if not 0 <= row < len(ids):
            self.status.setText("end of the worklist")
            return False
        return self.open_case(ids[row])

    def _make_shortcuts(self) -> None:
        """The :data:`KEYS`, active anywhere in the window the widget is docked in."""
        actions = {"next": self.open_next, "previous": self.open_previous,
                   "verified": lambda: self.mark("verified"),
                   "corrected": lambda: self.mark("corrected")}
        self.shortcuts: dict[str, QShortcut] = {}
        for name, keys in KEYS.items():
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
                shortcut.activated.connect(actions[name])
                self.shortcuts[key] = shortcut

    def _record_time_open(self) -> None:
        """Log how long the open case has been open (never stops a case from closing)."""
        opened, self._opened = self._opened, None
        if opened is None or self.project is None:
            return
        case_id, since = opened
        try:
            record_open_time(self.project, case_id, time.monotonic() - since)
        except (ValueError, OSError, sqlite3.Error) as err:
            self.status.setText(f"time open of {case_id} not recorded: {err}")
