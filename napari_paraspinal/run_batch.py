"""The main job as a batch: every input a case, each isolated, tables as cases finish.

Whatever goes wrong in one case (an unreadable input, an output that cannot be written, a
bug) makes it a failed row naming the problem, and the batch goes on. The tables and a run
manifest are rewritten as each case finishes (:mod:`.run_output`), so a killed run keeps its
finished cases. The cases run here one after another, or as Dask tasks with ``cluster``
(:mod:`.cluster`); each is :func:`.pipeline.process_case`. With ``resume`` the cases a
previous run in the folder finished are taken over as they are (:mod:`.run_resume`). The
work is a plain function reporting :class:`.jobs.Progress` events (stage ``run``: slices
done over all inputs) and honouring a :data:`.jobs.Cancel` token, so the CLI, the napari
plugin and the app all run the same code.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from .bids import BidsDataset, source_paths
from .bids import start as start_bids
from .bids import write_result as write_bids
from .case_input import DixonRef
from .core.errors import InputError
from .core.io import describe_error, list_inputs
from .core.listing import path_problem
from .jobs import Cancel, ProgressFn, cancelled, report
from .pipeline import (
    CaseResult,
    NoticeFn,
    RunConfig,
    Source,
    case_id,
    case_slices,
    labels_path,
    layout,
    model_available,
    overlay_name,
    process_case,
)
from .run_output import SUPERSEDED, OutputError, RunOutput, make_output_folder
from .run_resume import RESULTS, Reused, result_path, reusable, save_result
from .run_tables import table_sheets
from .segment import Model, load_model


def run(
    inputs: Sequence[str | Path | DixonRef],
    config: RunConfig,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    notice: NoticeFn | None = None,
) -> list[CaseResult]:
    """Process every input; ``measurements.csv``/``.xlsx`` and the manifest ``run.json``
    in ``config.out_dir`` are rewritten as each case finishes (:mod:`.run_output`).

    Progress (stage ``run``, then ``tables``) counts slices over all inputs. Any error of
    one case becomes its failed row and the others still run. What the folder listing
    skipped (hidden files, pipes, link loops, over-long paths, ...) goes to ``notice``, as
    does a table that could not be updated mid-run. Setting ``cancel`` stops before the next
    batch of slices; what finished is kept. A given path that does not exist, a model that
    cannot be loaded or an output folder that cannot be used raise :class:`InputError`
    before anything is written.
    """
    refs, skipped = _listed(inputs, config.out_dir, config.dixon_pairing)
    make_output_folder(config.out_dir)  # before the model loads: a bad folder fails fast
    if config.cluster:  # an unreachable scheduler fails before anything is written
        from .cluster import close_client, open_client

        client = open_client(config.cluster, config.workers)
        try:
            return _run(refs, skipped, config, progress, cancel, notice, client)
        finally:
            close_client(client)
    return _run(refs, skipped, config, progress, cancel, notice)


def _run(refs: Sequence[Source], skipped: Sequence[InputError], config: RunConfig,
         progress: ProgressFn | None, cancel: Cancel | None, notice: NoticeFn | None,
         client=None) -> list[CaseResult]:  # noqa: ANN001  a distributed.Client
    model = (load_model(config.model, config.device, sides=config.sides, mirror=config.mirror,
                        precision=config.precision)
             if model_available(config) else None)
    taken: set[str] = set()
    cids = [case_id(ref, taken) for ref in refs]
    reused = reusable(refs, cids, config, model) if config.resume else {}
    out = RunOutput.start(config.out_dir, [str(r) for r in refs], [str(e) for e in skipped],
                          keep=[f for r in reused.values() for f in r.files])
    bids = start_bids(config.out_dir, refs, out) if config.bids else None
    for err in skipped:
        if notice:
            notice(f"skipped {err}")
    counts = [_count(ref, config) for ref in refs]
    total = sum(counts)
    kept = _take_over(reused, refs, config, model, out, bids)
    if kept and notice:
        notice(f"resumed: {len(kept)} of {len(refs)} cases kept from the previous run")
    if client is not None:
        from .cluster import run_on_cluster

        todo = [n for n in range(len(refs)) if n not in kept]
        done_before = sum(counts[n] for n in kept)
        if kept:
            report(progress, "kept", done_before, total, message="kept from the previous run")
        fresh = run_on_cluster(
            [refs[n] for n in todo], [cids[n] for n in todo], [counts[n] for n in todo],
            config, model, out, bids, client,
            lambda rs: table_sheets(_in_order(kept, cids, rs), config, model),
            None if progress is None else
            (lambda p: progress(replace(p, done=done_before + p.done, total=total))),
            cancel, notice)
        results = _in_order(kept, cids, fresh)
    else:
        results = _run_here(refs, cids, counts, config, model, out, bids, progress, cancel,
                            notice, kept)
    report(progress, "tables", total, total, message="writing tables")
    out.finish(table_sheets(results, config, model),
               "cancelled" if cancelled(cancel) else "complete")
    return results


def _take_over(reused: dict[int, Reused], refs: Sequence[Source], config: RunConfig,
               model: Model | None, out: RunOutput, bids: BidsDataset | None
               ) -> dict[int, CaseResult]:
    """Record the cases kept from the previous run (and write their BIDS files anew)."""
    kept: dict[int, CaseResult] = {}
    for n, r in sorted(reused.items()):
        result = r.result
        if bids is not None:
            result = guarded_case(refs[n], result.case,
                                  lambda result=result, ref=refs[n]: write_case_bids(
                                      result, ref, config, model, bids))
        out.case_reused(result.case, str(refs[n]), r.files, result.status, result.message,
                        len(result.rows))
        kept[n] = result
    return kept


def _in_order(kept: dict[int, CaseResult], cids: Sequence[str],
              fresh: Sequence[CaseResult]) -> list[CaseResult]:
    """Kept and freshly run cases in input order (cases a cancel left out stay out)."""
    ran = {r.case: r for r in fresh}
    return [kept[n] if n in kept else ran[cid] for n, cid in enumerate(cids)
            if n in kept or cid in ran]


def _run_here(refs: Sequence[Source], cids: Sequence[str], counts: Sequence[int],
              config: RunConfig, model: Model | None, out: RunOutput,
              bids: BidsDataset | None, progress: ProgressFn | None, cancel: Cancel | None,
              notice: NoticeFn | None, kept: dict[int, CaseResult]) -> list[CaseResult]:
    """The cases one after another in this process, tables rewritten after each."""
    total, done = sum(counts), 0
    results: list[CaseResult] = []
    for n, (ref, cid, count) in enumerate(zip(refs, cids, counts, strict=True)):
        if n in kept:
            results.append(kept[n])
            done += count
            report(progress, "kept", done, total, cid, f"{ref}: kept from the previous run")
            continue
        if cancelled(cancel):
            break

        def on_slice(k: int, ref: Source = ref, cid: str = cid, count: int = count) -> None:
            nonlocal done
            done += 1
            report(progress, "run", done, total, cid,
                   f"{ref} slice {k}" if count > 1 else str(ref))

        results.append(_isolated_case(ref, cid, config, model, out, on_slice, cancel, bids))
        done = sum(counts[:n + 1])
        try:
            out.write_tables(table_sheets(results, config, model))
        except OutputError as err:  # tried again after the next case and at the end
            if notice:
                notice(f"tables not updated: {err}")
    return results


def _isolated_case(ref: Source, cid: str, config: RunConfig, model: Model | None,
                   out: RunOutput, on_slice: Callable[[int], None],
                   cancel: Cancel | None, bids: BidsDataset | None = None) -> CaseResult:
    """One case, whatever happens: an exception becomes the case's failed row."""
    out.case_started(cid, str(ref), planned_files(ref, cid, config, bids))
    result = guarded_case(ref, cid, lambda: process_case(ref, cid, config, model, on_slice,
                                                         cancel))
    if bids is not None and result.status != "failed":
        result = guarded_case(ref, cid, lambda: write_case_bids(result, ref, config, model, bids))
    result = keep_result(result, ref, cid, config, model)
    out.case_finished(cid, result.status, result.message, len(result.rows))
    return result


def keep_result(result: CaseResult, ref: Source, cid: str, config: RunConfig,
                model: Model | None) -> CaseResult:
    """Save a finished case's result for a later resume (:mod:`.run_resume`); a result
    that cannot be saved fails the case, naming the file."""
    if result.status == "failed":
        return result

    def save() -> CaseResult:
        save_result(result, ref, config, model, _planned_paths(ref, cid, config))
        return result

    return guarded_case(ref, cid, save)


def planned_files(ref: Source, cid: str, config: RunConfig,
                  bids: BidsDataset | None = None) -> list[Path]:
    """Every file a case may write (label map, overlays and its BIDS files)."""
    planned = _planned_paths(ref, cid, config)
    if bids is not None:
        try:
            planned += bids.case_files(cid, source_paths(ref)).all
        except Exception:  # noqa: BLE001  the case itself reports it
            pass
    return planned


def write_case_bids(result: CaseResult, ref: Source, config: RunConfig,
                    model: Model | None, bids: BidsDataset) -> CaseResult:
    """A finished case's BIDS files (:mod:`.bids`); returns the result."""
    write_bids(bids, result, source_paths(ref), config, model)
    return result


def guarded_case(ref: Source, cid: str, work: Callable[[], CaseResult]) -> CaseResult:
    """``work()``'s result, or, whatever it raised, the case's failed row naming the
    problem (one case never stops a batch); the finishing time is set either way."""
    try:
        result = work()
    except OutputError as err:  # full disk, name too long, ...: name the file
        result = _failed_case(ref, cid, str(err), str(err))
    except InputError as err:
        result = _failed_case(ref, cid, err.problem, str(err))
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        result = _failed_case(ref, cid, f"{where}{path_problem(err)}",
                              f"{ref}: {where}{path_problem(err)}")
    except Exception as err:  # noqa: BLE001  a bug in one case must not lose the batch
        problem = (f"unexpected error ({type(err).__name__}: {describe_error(err)}); "
                   "please report it")
        result = _failed_case(ref, cid, problem, f"{ref}: {problem}")
    result.finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    return result


def _failed_case(ref: Source, cid: str, problem: str, message: str) -> CaseResult:
    return CaseResult(case=cid, source=str(ref), status="failed", message=message,
                      rows=[{"case": cid, "status": "failed", "notes": problem}])


def _planned_paths(ref: Source, cid: str, config: RunConfig) -> list[Path]:
    """Every file a case may write (its label map and overlays)."""
    try:
        indices, stack = layout(ref, config)
    except Exception:  # noqa: BLE001  the case itself reports it
        indices, stack = [0], False
    paths = [labels_path(config, cid), result_path(config.out_dir, cid)]
    if config.overlays:
        paths += [config.out_dir / "overlays" / overlay_name(cid, k, stack) for k in indices]
    return paths


def _listed(inputs: Sequence[str | Path | DixonRef], out_dir: Path,
            dixon_pairing: bool = True) -> tuple[list[Source], list[InputError]]:
    """The cases of the inputs and what was skipped; the run's own output folders (labels,
    overlays, superseded) and BIDS label maps are never read back as inputs. With
    ``dixon_pairing`` the Dixon water and fat series of a DICOM study become one Dixon case
    (:mod:`.dixon_dicom`)."""
    listing = list_inputs([r for r in inputs if not isinstance(r, DixonRef)])
    ours = [os.path.abspath(out_dir / d) for d in ("labels", "overlays", RESULTS, SUPERSEDED)]
    bids = os.path.join(os.path.abspath(out_dir), "sub-")
    refs: list[Source] = [r for r in inputs if isinstance(r, DixonRef)]
    skipped = list(listing.skipped)
    for ref in listing.refs:
        path = os.path.abspath(ref.path)
        if any(path == d or path.startswith(d + os.sep) for d in ours) or (
                path.startswith(bids) and path.endswith("_dseg.nii.gz")):
            skipped.append(InputError(ref.path, "is in this run's output folder (earlier "
                                                "results): not read as an input"))
        else:
            refs.append(ref)
    if dixon_pairing:
        from .dixon_dicom import pair_dixon_series
        refs, folded = pair_dixon_series(refs)
        skipped.extend(folded)
    return refs, skipped


def _count(ref: Source, config: RunConfig) -> int:
    try:
        return len(case_slices(ref, config))
    except Exception:  # noqa: BLE001  the case itself reports it
        return 1
