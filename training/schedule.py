"""The learning-rate schedule of training: linear warm-up, then cosine decay, per optimizer step."""

import math

__all__ = ["cosine_lr", "set_lr"]


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
