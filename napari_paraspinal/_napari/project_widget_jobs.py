"""The Project widget's long jobs and models: batch segmentation, fine-tuning, activation.

A mixin of :class:`.project_widget.ProjectWidget`. Batch segmentation and fine-tuning run
in a child process (a thread in a frozen application) behind a generator worker
(:func:`.job_worker.job_worker`), on their own connection to the project
(:mod:`.project_jobs`); their :class:`..jobs.Progress` events come back to the GUI thread
through the worker's ``yielded`` signal, relayed by the widget's :class:`ProgressRelay`, and
Cancel sets the job's cancel token (checked between cases, between training batches). The
worker is not asked to quit: a quitting worker does not return its result, and a cancelled
run's result says what was kept.
"""

from __future__ import annotations

from typing import Any

from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_warning
from qtpy.QtCore import QObject, Signal

from ..jobs import Progress
from .case_layers import blocking_edits
from .job_worker import job_worker
from .project_jobs import run_batch, run_finetune
from .project_text import TRAINING, batch_summary, finetune_summary, train_step


class ProgressRelay(QObject):
    """The widget's progress signal: the running job's :class:`..jobs.Progress` events, in
    the GUI thread (observers connect here once, whichever worker runs)."""

    progress = Signal(object)


class JobActions:
    """Start, follow and cancel the long jobs; make a registered model active."""

    def segment_new(self) -> GeneratorWorker | None:
        """Segment the new and failed cases in a worker (refused while one of them has
        unsaved edits: mark it first)."""
        if not self._can_start():
            return None
        blocked = blocking_edits(self.project, list(self.viewer.layers))
        if blocked:
            self.status.setText(f"unsaved edits in {', '.join(blocked)}: mark the case "
                                "corrected or verified first (segmenting would replace them)")
            return None
        self.progress.setRange(0, 0)
        return self._start("segment", run_batch, self.project.root,
                           self.device_combo.currentText())

    def start_finetune(self, **overrides: Any) -> GeneratorWorker | None:
        """Fine-tune the active model on the corrected and verified cases in a worker.

        ``overrides`` are further :class:`FinetuneConfig` fields (tests, experts).
        """
        if not self._can_start():
            return None
        # the settings alone: the trainer (torch and all) is imported in the worker thread
        from ..project.finetune_config import FinetuneConfig

        minutes = self.minutes_spin.value()
        try:
            config = FinetuneConfig(**{
                "epochs": self.epochs_spin.value(), "max_minutes": minutes or None,
                "device": self.device_combo.currentText(), **overrides})
        except (TypeError, ValueError) as err:
            self.status.setText(f"bad settings: {err}")
            return None
        self.history = []
        self.curve.set_history([])
        self.result_label.setText("")
        self.progress.setRange(0, 0)
        return self._start("finetune", run_finetune, self.project.root, config)

    def cancel(self) -> None:
        """Stop the running job at its next check (between cases or training batches)."""
        if self.worker is None:
            return
        self._cancel.set()
        self.job_status.setText("cancelling…")

    def activate(self, model_id: str) -> None:
        """Make a registered model (an earlier version too) the active one."""
        if self.project is None:
            return
        if self.worker is not None and self.job == "finetune":
            self.status.setText("wait for fine-tuning to finish before changing the model")
            return
        try:
            self.project.activate(model_id)
        except ValueError as err:
            self.status.setText(f"cannot activate: {err}")
            return
        self.status.setText(f"active model: {model_id}")
        self.refresh()

    def _can_start(self) -> bool:
        if self.project is None or self.worker is not None:
            return False
        self._cancel.clear()
        return True

    def _start(self, job: str, func: Any, *args: Any) -> GeneratorWorker:
        # in a child process where one can be started: the GUI keeps its interpreter
        worker = job_worker(func, *args, process=True, cancel=self._cancel)
        worker.yielded.connect(self._relay.progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker, self.job, self.last_result = worker, job, None
        self.job_status.setText("starting…")
        self._set_enabled()
        worker.start()
        return worker

    def _on_progress(self, event: Progress) -> None:
        if self.job == "segment":
            done, total = event.done, event.total
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(done)
            self.job_status.setText("done" if event.stage == "done" else
                                    f"segmenting {event.case} ({done + 1}/{total})")
            return
        done, text = train_step(event)
        stage = event.stage
        if stage in ("prepare", "replay"):
            self.progress.setRange(0, event.total)
            self.progress.setValue(done)
        elif stage in TRAINING:
            self.history.append(event)
            self.curve.set_history([e.values or {} for e in self.history])
            self.progress.setRange(0, max(1, self._epochs()))
            self.progress.setValue(min(self._epochs(), sum(
                1 for e in self.history if e.done > 0)))
        elif stage == "validate":
            self.progress.setRange(0, 0)
        self.job_status.setText(text)

    def _on_returned(self, result: Any) -> None:
        self.last_result = result
        if self.job == "segment":
            self.job_status.setText(batch_summary(result))
            if self.case_id in result.segmented:
                self._reload_open_case()
        else:
            self.job_status.setText(result.status)
            self.result_label.setText(finetune_summary(result))

    def _on_error(self, err: Exception) -> None:
        self.job_status.setText(f"failed: {err}")
        show_warning(f"{self.job} failed: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        self.progress.setRange(0, 1)
        complete = self.last_result is not None and not self._cancel.is_set()
        self.progress.setValue(1 if complete else 0)
        self._set_enabled()
        self.refresh()

    def _epochs(self) -> int:
        return self.epochs_spin.value()

    def _activate_selected(self) -> None:
        row = self.models_table.currentRow()
        item = self.models_table.item(row, 1) if row >= 0 else None
        if item is not None:
            self.activate(item.text())
