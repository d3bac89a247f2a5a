"""Settings of a fine-tuning run (:func:`.finetune.finetune_project`): :class:`FinetuneConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..nets.train_config import TrainConfig


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run (JSON-friendly; stored in the candidate's card).

    ``replay``: replay slices mixed into training (None: twice the training cases; 0: none).
    ``joint_epochs``: epochs with the CRF in the loop after the U-Net epochs.
    ``min_improvement``: the candidate's held-out mean Dice must exceed the active model's by
    more than this. ``max_forgetting``: largest allowed drop of Dice on ``replay_check`` slices
    of the original data (None: not a condition, only reported). ``max_minutes`` caps the
    U-Net epochs' time (the epoch running when it is reached finishes).
    """

    holdout_fraction: float = 0.3
    replay: int | None = None
    replay_check: int = 4
    replay_seed: int = 0
    epochs: int = 15
    joint_epochs: int = 1
    patience: int = 5
    lr: float = 3e-4
    batch_size: int = 4
    min_improvement: float = 0.0
    max_forgetting: float | None = 0.05
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    num_threads: int | None = None
    augment: bool = True
    multi_data: bool | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must lie between 0 and 1")
        for name in ("replay_check", "epochs", "joint_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"FinetuneConfig.{name} must be >= 0")
        if self.replay is not None and self.replay < 0:
            raise ValueError("FinetuneConfig.replay must be None or >= 0")
        if self.epochs + self.joint_epochs < 1:
            raise ValueError("FinetuneConfig needs at least one epoch")
        if self.max_forgetting is not None and self.max_forgetting < 0:
            raise ValueError("FinetuneConfig.max_forgetting must be None or >= 0")

    def train_config(self, card_training: dict | None = None) -> TrainConfig:
        """The :class:`TrainConfig` of the candidate's training. ``multi_data`` None follows
        the active model's own training (its card): gradient images only for a model that
        learnt them."""
        multi = self.multi_data
        if multi is None:
            multi = bool((card_training or {}).get("multi_data", False))
        return TrainConfig(epochs_pretrain=self.epochs, epochs_joint=self.joint_epochs,
                           batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                           multi_data=multi, flip=True, seed=self.seed,
                           num_threads=self.num_threads, device=self.device,
                           max_minutes_pretrain=self.max_minutes, augment=self.augment)

    def fingerprint(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "num_threads")}
