"""Training of a :class:`Segmenter`: U-Net pretraining, then U-Net and CRF jointly.

Each epoch draws its samples from the training slices (:func:`.train_data.training_epoch`):
every slice and its gradient-magnitude image (multi-data training, the paper's), each mirrored
left-right with probability 1/2 (left and right labels exchanged).

Phase 1 trains the U-Net alone (CRF bypassed); phase 2 starts from phase 1's best state and
trains all parameters with the CRF in the loop. Each phase stops early after ``patience``
epochs without a better validation score: the mean Dice (argmax, :mod:`.metrics`) over the
foreground classes, each class pooled over the validation slices that annotate it. Phase 2
first scores phase 1's best state with the CRF (history entry with ``epoch`` 0).

Every state is scored as it would run: phase 1's without the CRF, phase 2's with it. The state
returned is the best of them all, so a CRF that makes the segmentation worse is not shipped:
when a phase-1 state beats every phase-2 state, the model is returned without its CRF
(``use_crf`` False in its config, so a model card written from it says so, and no CRF weights),
and :class:`TrainResult` says which phase won and why. A model without a CRF, or one whose
phase 2 never ran (``epochs_joint`` 0, cancelled before it), keeps its configuration; so
does one trained with ``keep_crf`` (an ablation), which returns phase 2's best state.

With a ``checkpoint_dir`` the whole training state (weights, best weights, Adam state, history,
early-stopping counters, numpy and torch generator states) is saved after every epoch and after
phase 2's baseline (:mod:`.checkpoint`: safetensors and JSON, never a pickle), and ``resume``
continues a killed or cancelled run where it stopped: on CPU the result equals that of an
uninterrupted run (bit for bit, per-epoch ``seconds`` aside).

Started by ``torchrun --nproc_per_node N``, the processes share every batch and sum their
gradients (:mod:`.distributed`): the same training as one process, to rounding error.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..core.labels import NUM_CLASSES
from ..jobs import Cancel, ProgressFn
from .checkpoint import find_checkpoint, load_checkpoint
from .distributed import group_from_env
from .segmenter import Segmenter, resolve_device
from .train_config import TrainConfig
from .train_data import TrainData
from .trainer import Trainer, TrainResult

#: The checkpoint's folder inside ``train``'s ``checkpoint_dir``.
CHECKPOINT = "checkpoint"


def train(
    model: Segmenter,
    train: TrainData,
    val: TrainData,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    keep_crf: bool = False,
) -> TrainResult:
    """Train ``model`` in place (see the module doc) and leave it holding the best state.

    When the U-Net alone beats every state scored with the CRF, the model's CRF is removed
    (``model.crf`` None, ``model.config.use_crf`` False) so that it runs as it was scored.
    ``keep_crf`` True keeps the CRF whatever it scores and returns the best joint state (for
    an ablation, which measures the CRF as trained rather than the model that would ship).

    ``progress`` gets each history entry as it is made, as a :class:`..jobs.Progress` (stage
    the phase, ``done`` the epoch, ``values`` its numbers: :func:`.trainer.epoch_event`;
    :func:`.trainer.history_entry` gives the entry back);
    ``cancel`` is checked before every batch, and once set ends training at once (the
    unfinished epoch is dropped, ``cancelled`` set).
    Deterministic for a given ``config.seed`` on CPU (the model's initial weights are the
    caller's: seed torch before building it).

    ``checkpoint_dir``: a folder in which the checkpoint is kept (its subfolder ``checkpoint``,
    rewritten after every epoch); a checkpoint already there is refused (FileExistsError)
    unless ``resume``. ``resume``: continue from that checkpoint (same phase, next epoch) when
    there is one, else start afresh; the model's weights are replaced by the checkpoint's, the
    history returned includes the epochs before it (``progress`` sees only new ones), and a
    checkpoint made with other settings (any TrainConfig field but ``device`` and
    ``num_threads``), another network or other data is refused with a ValueError.
    """
    config = config if config is not None else TrainConfig()
    if len(train) == 0 or len(val) == 0:
        raise ValueError("training and validation data must not be empty")
    if not any((val.labels[val.label_mask[:, c]] == c).any() for c in range(1, NUM_CLASSES)):
        raise ValueError("the validation data has no annotated foreground pixel to score")
    folder = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    found = find_checkpoint(folder) if folder is not None else None
    if found is not None and not resume:
        raise FileExistsError(f"{found} holds a checkpoint: pass resume=True to continue it, "
                              f"or use another checkpoint_dir")
    restored = load_checkpoint(folder) if found is not None else None
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        torch.manual_seed(config.seed)
        model.to(device)
        trainer = Trainer(model, train, val, config, progress, cancel, device, folder,
                          keep_crf, group_from_env(device))
        if restored is not None:
            trainer.restore(restored)
        trainer.run_phase("unet", config.epochs_pretrain, list(model.unet.parameters()), False)
        if model.crf is not None and config.epochs_joint > 0 and not trainer.result.cancelled:
            trainer.run_phase("joint", config.epochs_joint, list(model.parameters()), True)
        trainer.choose()
        result = trainer.result
        model.load_state_dict(result.best_state_dict)
        return result
    finally:
        torch.set_num_threads(threads)
