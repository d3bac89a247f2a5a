"""Process-wide thread settings: held while any user runs, restored by the last one out."""

from __future__ import annotations

import threading

import SimpleITK as sitk
from threadpoolctl import threadpool_info

from napari_paraspinal.core.shared_setting import SharedSetting
from napari_paraspinal.preprocess.chain import default_atlases, preprocess_slice


def test_setting_is_restored_only_when_the_last_user_leaves() -> None:
    state = {"threads": 4}

    def apply() -> int:
        before, state["threads"] = state["threads"], 1
        return before

    setting = SharedSetting(apply, lambda before: state.update(threads=before))
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with setting.held():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    assert inside.wait(10)
    with setting.held(), setting.held():  # concurrent and nested
        assert state["threads"] == 1
    assert state["threads"] == 1  # the worker still holds it
    release.set()
    thread.join()
    assert state["threads"] == 4


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_registration_in_threads_leaves_itk_and_blas_threads_as_they_were(phantom) -> None:
    itk_before, blas_before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), \
        _blas_threads()
    case = phantom(820020, level='L5-S1')
    pre = preprocess_slice(case.image, default_atlases(), "auto")  # levels and starts in threads
    assert pre.level == "L5-S1"
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == itk_before
    assert _blas_threads() == blas_before
