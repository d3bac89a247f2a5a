"""The one progress/cancel protocol: Progress events, the cancel token, iterate, old callbacks.

Threads are sequenced with events and queues, never with sleeps: every wait has a timeout
only so that a broken protocol fails the test instead of hanging it.
"""

from __future__ import annotations

import dataclasses
import queue
import threading

import pytest

from napari_paraspinal.jobs import (
    Cancel,
    Progress,
    ProgressFn,
    cancelled,
    iterate,
    report,
)

WAIT = 30  # seconds; reached only when the protocol is broken


def counting(n: int, progress: ProgressFn | None = None, cancel: Cancel | None = None,
             scale: int = 1) -> int:
    for k in range(n):
        report(progress, "count", k + 1, n, f"case{k}", values={"k": float(k)})
    return n * scale


def test_progress_is_a_frozen_event_with_a_text() -> None:
    event = Progress("run", 1, 3, case="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.done = 2  # type: ignore[misc]
    assert event.text == "a"
    assert Progress("run", 1, 3, case="a", message="a slice 4").text == "a slice 4"
    assert Progress("tables", 3, 3).text == "tables"
    assert Progress("run", 0, 1).values is None


def test_report_and_cancelled_accept_none() -> None:
    report(None, "run", 1, 1)  # nothing to call
    seen: list[Progress] = []
    report(seen.append, "run", 1, 2, "c", "m", {"loss": 0.5})
    assert seen == [Progress("run", 1, 2, "c", "m", {"loss": 0.5})]
    token = Cancel()
    assert not cancelled(None) and not cancelled(token)
    token.set()
    assert cancelled(token)


def test_iterate_yields_the_events_and_returns_the_result() -> None:
    events = iterate(counting, 3, scale=2)
    got = []
    with pytest.raises(StopIteration) as end:
        while True:
            got.append(next(events))
    assert end.value.value == 6
    assert [(e.stage, e.done, e.total, e.case) for e in got] == [
        ("count", k, 3, f"case{k - 1}") for k in (1, 2, 3)]
    assert got[1].values == {"k": 1.0}


def test_iterate_returns_through_yield_from_and_leaves_the_token_alone() -> None:
    token = Cancel()
    seen: list[Progress] = []

    def consumer():  # noqa: ANN202  as a generator worker runs it
        result = yield from iterate(counting, 2, cancel=token)
        return result

    gen = consumer()
    with pytest.raises(StopIteration) as end:
        while True:
            seen.append(next(gen))
    assert end.value.value == 2 and len(seen) == 2
    assert not token.is_set()  # a job that ran to its end was not cancelled


def test_iterate_raises_the_jobs_error() -> None:
    def failing(progress: ProgressFn, cancel: Cancel) -> None:
        report(progress, "run", 1, 2)
        raise ValueError("bad input")

    events = iterate(failing)
    assert next(events).done == 1
    with pytest.raises(ValueError, match="bad input"):
        next(events)


def test_setting_the_token_makes_the_job_return_what_it_did() -> None:
    token, go = Cancel(), queue.SimpleQueue()

    def steps(progress: ProgressFn, cancel: Cancel) -> int:
        for k in range(100):
            if cancel.is_set():
                return k
            report(progress, "step", k + 1, 100)
            go.get(timeout=WAIT)  # the consumer has seen step k + 1
        return 100

    events = iterate(steps, cancel=token)
    assert next(events).done == 1
    go.put(True)
    assert next(events).done == 2
    token.set()  # as a Cancel button does, from another thread than the job's
    go.put(True)
    with pytest.raises(StopIteration) as end:
        next(events)
    assert end.value.value == 2  # stopped at its next check, with the work done so far


def test_closing_the_generator_cancels_the_job_and_waits_for_it() -> None:
    stopped = threading.Event()
    woken: list[bool] = []

    def waits(progress: ProgressFn, cancel: Cancel) -> str:
        report(progress, "wait", 0, 1)
        woken.append(cancel.wait(WAIT))  # True only when the token was set
        stopped.set()
        return "stopped"

    events = iterate(waits)
    assert next(events).stage == "wait"
    events.close()  # what a consumer that stops iterating early does
    assert stopped.is_set() and woken == [True]  # the job ended before close returned
