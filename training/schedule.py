"""The optimizer and the learning-rate schedules of training.

Two schedules (YAML key ``lr_schedule``):

- ``plateau`` (the paper's YAMLs, as the paper's code): SpeechBrain's
  ``ReduceLROnPlateau``, stepped once per epoch with the validation loss:
  the learning rate starts at ``base_lr``, is multiplied by
  ``lr_plateau_factor`` when the loss has not come back down to its last
  anchor for more than ``lr_plateau_patience`` epochs (never during the first
  ``lr_plateau_dont_halve_until_epoch`` epochs), and never falls below
  ``final_lr``. Its state (anchor, patience counter, losses) is a checkpoint
  recoverable: :class:`PlateauScheduler`.
- ``cosine`` (ours, ``hparams/toy``): linear warm-up over ``warmup_steps``
  optimizer steps, then cosine from ``base_lr`` to ``final_lr``, per step;
  stateless (:func:`cosine_lr`).

Two optimizers (YAML key ``optimizer``, built by :func:`make_optimizer`):
``adam`` (the paper's code: ``torch.optim.Adam``, L2 weight decay) and
``adamw`` (ours: decoupled weight decay). With ``weight_decay: 0`` (every
YAML's default) both take the same steps.
"""

import math

import torch
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from experiment.key_tables import CHOICES

__all__ = ["LR_SCHEDULES", "OPTIMIZERS", "make_optimizer", "PlateauScheduler", "plateau_from_hparams",
           "check_schedule_options", "cosine_lr", "set_lr"]

#: ``lr_schedule`` values: the paper code's per-epoch ReduceLROnPlateau, our per-step cosine.
LR_SCHEDULES = CHOICES["lr_schedule"]
#: ``optimizer`` values and their classes.
OPTIMIZERS = dict(zip(CHOICES["optimizer"], (torch.optim.Adam, torch.optim.AdamW)))


def make_optimizer(params, name="adam", lr=1e-3, weight_decay=0.0):
    """The ``opt_class`` of the training YAMLs: ``torch.optim.Adam`` or ``AdamW`` by name.

    Arguments
    ---------
    params : iterable
        Parameters (or parameter groups), as SpeechBrain passes them.
    name : str
        ``"adam"`` (the paper's code) or ``"adamw"`` (ours).
    lr : float
        The initial learning rate (``base_lr``).
    weight_decay : float
        L2 penalty (Adam) or decoupled decay (AdamW).

    Example
    -------
    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> type(make_optimizer([w], "adam", 0.1)).__name__, type(make_optimizer([w], "adamw", 0.1)).__name__
    ('Adam', 'AdamW')
    """
    if name not in OPTIMIZERS:
        raise SystemExit(f"--optimizer={name}: expected one of {', '.join(OPTIMIZERS)}.")
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay)


@register_checkpoint_hooks
class PlateauScheduler(ReduceLROnPlateau):
    """SpeechBrain's ``ReduceLROnPlateau`` (the paper code's schedule) with a step that sets the new rate.

    The rule is SpeechBrain's, unchanged: at the end of epoch ``e`` with loss
    ``L``, if ``e <= dont_halve_until_epoch`` the rate is kept and ``L``
    becomes the anchor; otherwise ``L <= anchor`` keeps the rate (``L`` is
    the new anchor, the patience counter restarts), a higher ``L`` keeps it
    while the counter (then incremented) is below ``patience``, and multiplies
    it by ``factor`` (counter back to 0, anchor unchanged) once the counter
    has reached ``patience``. The result never falls below ``lr_min``.

    Saved and loaded with the checkpoint (``torch.load(weights_only=True)``).

    Example
    -------
    >>> w = torch.nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.Adam([w], lr=1.0)
    >>> sched = PlateauScheduler(lr_min=0.05, factor=0.1, patience=1, dont_halve_until_epoch=1)
    >>> [sched.step(opt, epoch, loss)[1] for epoch, loss in enumerate([3.0, 4.0, 4.0, 4.0, 2.0, 5.0, 5.0], 1)]
    [1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.05]
    """

    def step(self, optimizer, epoch, loss):
        """Applies the rule to ``loss`` (epoch ``epoch``, counted from 1), sets the new rate on every group.

        Returns
        -------
        tuple of float
            ``(lr used during this epoch, lr of the next one)``.
        """
        old_lr, new_lr = self([optimizer], epoch, float(loss))
        update_learning_rate(optimizer, new_lr)
        return old_lr, new_lr

    @mark_as_saver
    def save(self, path):
        """Writes the anchor, the patience counter and the losses seen."""
        torch.save({"losses": [float(x) for x in self.losses], "anchor": float(self.anchor),
                    "patience_counter": int(self.patience_counter)}, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores what :meth:`save` wrote."""
        del end_of_epoch
        data = torch.load(path, map_location="cpu", weights_only=True)
        self.losses = list(data["losses"])
        self.anchor = data["anchor"]
        self.patience_counter = data["patience_counter"]


def check_schedule_options(hparams):
    """Fails early, naming the flag, on schedule options that cannot work together."""
    schedule = hparams.get("lr_schedule", "cosine")
    if schedule not in LR_SCHEDULES:
        raise SystemExit(f"--lr_schedule={schedule}: expected one of {', '.join(LR_SCHEDULES)}.")
    if schedule == "plateau" and hparams.get("warmup_steps", 0):
        raise SystemExit(
            f"--warmup_steps={hparams['warmup_steps']} is a warm-up of the cosine schedule; the plateau schedule "
            "(as the paper's code) has none: give --warmup_steps=0, or --lr_schedule=cosine."
        )


def plateau_from_hparams(hparams):
    """The :class:`PlateauScheduler` of a run's YAML keys (``final_lr`` is its floor)."""
    return PlateauScheduler(
        lr_min=hparams["final_lr"],
        factor=hparams["lr_plateau_factor"],
        patience=hparams["lr_plateau_patience"],
        dont_halve_until_epoch=hparams["lr_plateau_dont_halve_until_epoch"],
    )


def cosine_lr(step, total_steps, base_lr, final_lr, warmup_steps=0):
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then cosine to ``final_lr``.

    Stateless (a function of the step), so resuming needs no scheduler state.

    Example
    -------
    >>> cosine_lr(0, 10, 1e-3, 0.0), cosine_lr(10, 10, 1e-3, 0.0)
    (0.001, 0.0)
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer, lr):
    """Sets the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
