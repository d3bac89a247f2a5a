"""Data-parallel training across processes started by ``torchrun --nproc_per_node N``.

Every process builds the same model from the same seed and draws the same batches (one
random generator, seeded alike); each computes the loss on its own contiguous part of every
batch, weighted by that part's share of the batch, and the gradients are summed across the
processes before the optimizer steps. The sum is the gradient of the whole batch's loss (the
losses are means over samples, and instance norm keeps no statistics across samples), so N
processes follow one process's run to rounding error, each doing 1/N of the work. Gloo
carries the sums on CPU, NCCL on CUDA. Only the first process (rank 0) writes checkpoints,
bundles and progress.

Without torchrun's environment (``WORLD_SIZE`` unset or 1) nothing here does anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


def barrier(group: Group) -> None:
    """Wait until every process gets here (nothing to wait for alone)."""
    if group.size > 1:
        dist.barrier()


def agree(group: Group, value: float) -> float:
    """The main process's ``value`` on every process (a score that decides what happens next
    must not differ by rounding between processes)."""
    if group.size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(t, src=0)
    return float(t.item())


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that writes files and reports progress."""
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This process's contiguous part of a batch of ``n`` (parts differ by at most one)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))


def group_from_env(device: torch.device) -> Group:
    """The process group torchrun describes (``RANK``, ``WORLD_SIZE``), joined once; a single
    process without it. Gloo on CPU, NCCL on CUDA."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def data_parallel_step(group: Group, params: Iterable[torch.nn.Parameter], n: int,
                       loss_of: Callable[[slice], torch.Tensor]) -> float:
    """Backpropagate this process's part of a batch of ``n`` and sum the gradients across
    processes; returns the whole batch's loss (the same on every process).

    ``loss_of(part)`` is the mean loss over the samples of ``part``. A process whose part is
    empty (a batch smaller than the group) backpropagates zero so the sums still meet.
    """
    part = group.part(n)
    share = (part.stop - part.start) / n
    if share > 0:
        loss = loss_of(part)
        (loss * share).backward()
        value = float(loss.detach()) * share
    else:  # same graph, zero gradient: every process sends the same tensors to the sum
        (loss_of(slice(0, 1)) * 0.0).backward()
        value = 0.0
    if group.size > 1:
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        value = float(total.item())
    return value
