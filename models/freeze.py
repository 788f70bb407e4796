"""Freezing a tower's backbone: no gradients, no optimizer state, and eval-mode behaviour.

A frozen backbone must also stop updating BatchNorm statistics and drop
dropout, which ``requires_grad_(False)`` alone does not do; and running it
without autograd saves the memory and time of its activations.
"""

import torch


def freeze_base(encoder, frozen=True):
    """Marks ``encoder.base`` as frozen (or trainable again) and sets ``requires_grad`` accordingly.

    Example
    -------
    >>> enc = torch.nn.Module(); enc.base = torch.nn.Linear(2, 2)
    >>> freeze_base(enc)
    >>> enc.base.weight.requires_grad, enc.base_frozen
    (False, True)
    """
    encoder.base_frozen = bool(frozen)
    for param in encoder.base.parameters():
        param.requires_grad_(not frozen)


def run_base(encoder, *args, **kwargs):
    """Calls ``encoder.base``; a frozen base runs in eval mode under ``torch.no_grad``.

    Example
    -------
    >>> enc = torch.nn.Module(); enc.base = torch.nn.Dropout(0.5); freeze_base(enc)
    >>> bool((run_base(enc, torch.ones(4)) == 1).all())
    True
    """
    if not getattr(encoder, "base_frozen", False):
        return encoder.base(*args, **kwargs)
    encoder.base.eval()
    with torch.no_grad():
        return encoder.base(*args, **kwargs)
