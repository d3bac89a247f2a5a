"""``paraspinal run --cluster``: the cases of a run as tasks on Dask distributed.

Each case is one task running the same per-case function as a plain run
(:func:`.pipeline.process_case`, guarded so an error becomes the case's failed row), on a
``LocalCluster`` of worker processes (``local``) or on the scheduler at an address. Workers
write each case's label map and overlays straight into the output folder, so on a real
cluster that folder must be on a file system every worker sees; the client keeps the run's
manifest and tables (:mod:`.run_output`) and rewrites them as each case comes back, in the
order the inputs were given, so the tables equal a plain run's. Each worker process loads
the model once and keeps it; torch runs one thread per task (the workers are the
parallelism).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .core.errors import InputError
from .jobs import Cancel, ProgressFn, cancelled, report

if TYPE_CHECKING:
    from .bids import BidsDataset
    from .pipeline import CaseResult, RunConfig, Source
    from .run_output import RunOutput
    from .segment import Model

#: What ``--cluster`` takes besides a scheduler address.
LOCAL = "local"

_MODELS: dict[tuple, Model] = {}  # per worker process: loaded once, used by every case


def cached_model(path: str | os.PathLike[str] | None, device: str = "auto", **options
                 ) -> Model:
    """The model of ``path`` with ``options`` as :func:`.segment.load_model` takes them,
    loaded once per process (a worker keeps it for every case it runs)."""
    from .segment import load_model

    key = (str(path), device, tuple(sorted(options.items())))
    if key not in _MODELS:
        _MODELS[key] = load_model(path, device, **options)
    return _MODELS[key]


def _worker_model(config: RunConfig) -> Model | None:
    from .pipeline import model_available

    if not model_available(config):
        return None
    return cached_model(config.model, config.device, sides=config.sides,
                        mirror=config.mirror, precision=config.precision)


def cluster_case(ref: Source, cid: str, config: RunConfig) -> CaseResult:
    """One case on a worker, as a plain run does it (a failure becomes its failed row)."""
    import torch

    from .pipeline import process_case
    from .run_batch import guarded_case

    torch.set_num_threads(1)
    return guarded_case(ref, cid, lambda: process_case(ref, cid, config, _worker_model(config)))


def open_client(address: str, workers: int | None = None):  # noqa: ANN201  distributed.Client
    """A Dask client: a new ``LocalCluster`` of ``workers`` processes (default: one per
    core) for ``local``, else the scheduler at ``address`` (e.g. ``tcp://host:8786``)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise InputError(address, "cluster runs need Dask: pip install "
                                  "'napari-paraspinal[cluster]'") from err
    if address == LOCAL:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        client.own_cluster = cluster  # closed with the client (close_client)
        return client
    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError, ValueError) as err:
        raise InputError(address, f"no Dask scheduler reachable there ({err})") from err


def close_client(client) -> None:  # noqa: ANN001  distributed.Client
    """Close the client and the local cluster it started, if any."""
    client.close()
    cluster = getattr(client, "own_cluster", None)
    if cluster is not None:
        cluster.close()


def run_on_cluster(refs: Sequence[Source], cids: Sequence[str], counts: Sequence[int],
                   config: RunConfig, model: Model | None, out: RunOutput,
                   bids: BidsDataset | None, client,  # noqa: ANN001  distributed.Client
                   tables: Callable[[list[CaseResult]], dict],
                   progress: ProgressFn | None = None,
                   cancel: Cancel | None = None,
                   notice: Callable[[str], None] | None = None) -> list[CaseResult]:
    """Every case as a task; returns the results in input order (cases not run after a
    cancel are left out). ``tables`` builds the sheets from the results so far; progress
    (stage ``run``) counts the slices of the cases that came back."""
    from distributed import as_completed

    from .run_batch import guarded_case, keep_result, planned_files, write_case_bids
    from .run_output import OutputError

    total, done = sum(counts), 0
    results: dict[int, CaseResult] = {}
    futures = {}
    for n, (ref, cid) in enumerate(zip(refs, cids, strict=True)):
        out.case_started(cid, str(ref), planned_files(ref, cid, config, bids))
        futures[client.submit(cluster_case, ref, cid, config, pure=False)] = n
    for future in as_completed(futures):
        n = futures[future]
        ref, cid = refs[n], cids[n]
        result = guarded_case(ref, cid, future.result)  # a lost worker fails its case only
        if bids is not None and result.status != "failed":
            result = guarded_case(ref, cid,
                                  lambda r=result, ref=ref: write_case_bids(r, ref, config,
                                                                       model, bids))
        result = keep_result(result, ref, cid, config, model)
        out.case_finished(cid, result.status, result.message, len(result.rows))
        results[n] = result
        done += counts[n]
        report(progress, "run", done, total, cid, str(ref))
        try:
            out.write_tables(tables([results[k] for k in sorted(results)]))
        except OutputError as err:
            if notice:
                notice(f"tables not updated: {err}")
        if cancelled(cancel):
            for f in futures:
                f.cancel()
            break
    for n, cid in enumerate(cids):  # cancelled before they ran
        if n not in results:
            out.case_finished(cid, "cancelled", "cancelled before it ran", 0)
    return [results[k] for k in sorted(results)]
