"""Optimisation settings of :func:`.train.train` (:class:`TrainConfig`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``epochs_joint`` 0 (or a model without CRF) skips phase 2.

    ``num_threads`` sets torch's CPU threads during training (None: leave as is) and is
    restored afterwards. ``augment`` moves and re-lights every slice each epoch (fine-tuning
    on few cases). ``max_minutes_pretrain`` ends the U-Net phase after the first epoch
    that brings its training time (the sum of its epochs' seconds) past the limit, for a fixed
    compute budget; the epoch count then depends on the machine.
    """

    epochs_pretrain: int = 100
    epochs_joint: int = 20
    batch_size: int = 20
    lr: float = 1e-3
    patience: int = 10
    multi_data: bool = True
    flip: bool = True
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"
    max_minutes_pretrain: float | None = None
    augment: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs_pretrain", "epochs_joint"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if self.batch_size < 1 or self.patience < 1:
            raise ValueError("TrainConfig.batch_size and patience must be >= 1")
        if not self.lr >= 0:
            raise ValueError(f"TrainConfig.lr must be >= 0, got {self.lr}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("TrainConfig.num_threads must be None or >= 1")
