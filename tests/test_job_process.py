"""Long jobs in a child process (``job_process.iterate_in_process``): the same events, result,
errors and cancel as the thread version (``jobs.iterate``), on a real project's jobs."""

import os
import sys
from pathlib import Path

import pytest

from napari_paraspinal._napari.project_jobs import run_batch
from napari_paraspinal.job_process import (
    FROZEN_CHILD_ARG,
    JobError,
    can_spawn,
    child_command,
    iterate_in_process,
)
from napari_paraspinal.jobs import Cancel, Progress
from napari_paraspinal.project.store import Project

pytestmark = pytest.mark.skipif(not can_spawn(), reason="no Python child process here")


def project_of(folder: Path, phantom_files, seeds: tuple[int, ...]) -> Path:
    project = Project.init(folder)
    for seed in seeds:
        project.add([phantom_files(f"job{seed}", seed, level="L4-L5").image])
    root = project.root
    project.close()
    return root


def drain(events) -> tuple[list, object]:
    seen = []
    while True:
        try:
            seen.append(next(events))
        except StopIteration as stop:
            return seen, stop.value


def test_a_batch_in_a_child_reports_progress_and_returns_its_result(tmp_path,
                                                                   phantom_files) -> None:
    root = project_of(tmp_path / "p", phantom_files, (31, 32))
    seen, result = drain(iterate_in_process(run_batch, root))
    assert seen and all(isinstance(e, Progress) for e in seen)
    assert len(result.segmented) == 2 and not result.failed and not result.cancelled
    with Project.open(root) as project:  # the child's work is in the project
        assert {c.status for c in project.cases()} == {"predicted"}


def test_a_cancelled_child_stops_and_returns_what_it_finished(tmp_path,
                                                              phantom_files) -> None:
    # cancelled before it starts: the child sees its stdin closed before the first case,
    # whatever the machine's speed, and returns its (empty) result as the job does
    root = project_of(tmp_path / "p", phantom_files, (33, 34, 35))
    cancel = Cancel()
    cancel.set()
    _, result = drain(iterate_in_process(run_batch, root, cancel=cancel))
    assert result.cancelled and result.segmented == []
    with Project.open(root) as project:
        assert {c.status for c in project.cases()} == {"new"}


def test_the_childs_failure_is_raised_with_its_message(tmp_path) -> None:
    (tmp_path / "other.txt").write_text("not a project")
    with pytest.raises(JobError, match="not a napari-paraspinal project"):
        drain(iterate_in_process(run_batch, tmp_path))


@pytest.mark.skipif(os.name != "posix", reason="the stand-in bundle executable is a shell script")
def test_a_frozen_bundle_runs_the_job_through_its_own_executable(tmp_path, monkeypatch,
                                                                 phantom_files) -> None:
    """In a frozen bundle ``sys.executable`` is the app: the child is the app started with
    FROZEN_CHILD_ARG, which the bundle's entry point (installer/entry.py) dispatches."""
    entry = Path(__file__).resolve().parents[1] / "installer" / "entry.py"
    app = tmp_path / "paraspinal-app"  # stands in for the bundle's executable
    app.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{entry}" "$@"\n')
    app.chmod(0o755)
    root = project_of(tmp_path / "p", phantom_files, (36,))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    assert child_command() == [str(app), FROZEN_CHILD_ARG]
    seen, result = drain(iterate_in_process(run_batch, root))
    assert seen and len(result.segmented) == 1 and not result.failed
