"""Progress events on the terminal: a tqdm bar on a terminal, one line per step in a log."""

from __future__ import annotations

import io

from napari_paraspinal.cli_progress import progress_reporter, say
from napari_paraspinal.jobs import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_step() -> None:
    log = io.StringIO()
    with progress_reporter("slice", log) as progress:
        for k in range(1, 4):
            progress(Progress("run", k, 3, "stack", f"stack.nii.gz slice {k}"))
        progress(Progress("segment", 4, 4, case="case-7"))  # no message: the case
    assert log.getvalue().splitlines() == [f"[{k}/3] stack.nii.gz slice {k}"
                                           for k in range(1, 4)] + ["[4/4] case-7"]


def test_a_terminal_gets_a_bar_that_ends_full() -> None:
    term = Terminal()
    with progress_reporter("case", term) as progress:
        progress(Progress("segment", 0, 4, case="a"))
        progress(Progress("segment", 2, 4, case="b"))
        progress(Progress("done", 4, 4, message="done"))
    text = term.getvalue()
    assert "\r" in text  # redrawn in place, not a line per step
    final = text.split("\r")[-1]
    assert "100%" in final and "4/4" in final and "case" in final and "done" in final


def test_a_notice_during_a_bar_gets_its_own_line() -> None:
    term = Terminal()
    with progress_reporter("case", term) as progress:
        progress(Progress("run", 1, 4, case="a"))
        say("tables not updated: disk full", term)
        progress(Progress("run", 2, 4, case="b"))
    lines = term.getvalue().replace("\r", "\n").splitlines()
    assert "tables not updated: disk full" in lines  # a whole line, not glued to the bar
    log = io.StringIO()
    say("no bar: a plain line", log)
    assert log.getvalue() == "no bar: a plain line\n"
