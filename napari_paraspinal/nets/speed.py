"""Batch throughput of a model's network in atlas space (256×256), on CPU or a GPU.

Times the U-Net alone and the U-Net with its CRF-as-RNN at several batch sizes, after
warm-up, synchronising the GPU around each timed call, under ``torch.inference_mode``. Image
I/O and registration are left out: this is the number that says how many slices per second
the network itself can take (``paraspinal bench network``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .bundle import load_bundle
from .segmenter import Segmenter, resolve_device


def load_network(model_dir: str | os.PathLike[str]) -> Segmenter:
    """The segmenter of a bundle (weights and card only; no atlases needed)."""
    state, card = load_bundle(Path(model_dir))
    net = Segmenter.from_dict(card.network)
    net.load_state_dict(state)
    return net.eval()


def network_throughput(net: Segmenter, device: str = "auto",
                       batch_sizes: Sequence[int] = (1, 8, 32), repeats: int = 10,
                       size: int = 256) -> list[dict[str, float | int | str]]:
    """Median milliseconds per batch and slices per second, per stage and batch size.

    The input is uniform noise in [0, 1), the intensity range of a normalised slice, so the
    CRF's bilateral grid has the size it has on real input (N(0, 1) noise made it larger).
    """
    dev = resolve_device(device)
    net = net.to(dev).eval()
    rows: list[dict[str, float | int | str]] = []
    gen = torch.Generator().manual_seed(0)
    for batch in batch_sizes:
        x = torch.rand(batch, 1, size, size, generator=gen).to(dev)
        for stage, use_crf in (("U-Net", False), ("U-Net+CRF", True)):
            if use_crf and net.crf is None:
                continue
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            times = []
            with torch.inference_mode():
                for k in range(repeats + 2):
                    _sync(dev)
                    t = time.perf_counter()
                    net(x, use_crf=use_crf)
                    _sync(dev)
                    if k >= 2:
                        times.append(time.perf_counter() - t)
            ms = 1000 * float(np.median(times))
            row: dict[str, float | int | str] = {
                "device": str(dev), "stage": stage, "batch": batch,
                "ms_per_batch": round(ms, 2), "slices_per_s": round(1000 * batch / ms, 1)}
            if dev.type == "cuda":
                row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
            rows.append(row)
    return rows


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
