"""The projection heads of CLAP (one per modality).

``"ms"``: MS CLAP's residual head (:class:`Projection`, MS CLAP 2022 and 2023);
``"laion"``: LAION-CLAP's two-layer MLP (:class:`LaionProjection`). The YAML
key ``projection`` picks one for both towers (:func:`build_projection`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Projection", "LaionProjection", "PROJECTIONS", "build_projection"]

#: Values of the model key ``projection``.
PROJECTIONS = ("ms", "laion")


class Projection(nn.Module):
    """Residual two-layer projection with layer norm, as in MS CLAP.

    ``e1 = linear1(x)``; ``e2 = dropout(linear2(gelu(e1)))``;
    output ``layer_norm(e1 + e2)``.

    Arguments
    ---------
    d_in : int
        Input size.
    d_out : int
        Output size.
    p : float
        Dropout probability on the residual branch.

    Example
    -------
    >>> proj = Projection(8, 4).eval()
    >>> tuple(proj(torch.randn(3, 8)).shape)
    (3, 4)
    """

    def __init__(self, d_in: int, d_out: int, p: float = 0.5):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x``.

        Arguments
        ---------
        x : torch.Tensor
            ``[..., d_in]``.

        Returns
        -------
        torch.Tensor
            ``[..., d_out]``.
        """
        embed1 = self.linear1(x)
        embed2 = self.drop(self.linear2(F.gelu(embed1)))
        return self.layer_norm(embed1 + embed2)


class LaionProjection(nn.Sequential):
    """LAION-CLAP's projection head: ``Linear(d_in, d_out)``, ReLU, ``Linear(d_out, d_out)``.

    The ``audio_projection`` / ``text_projection`` of ``laion_clap``'s CLAP
    (``mlp_act="relu"``, its default and that of every published
    checkpoint); an ``nn.Sequential``, so its keys are LAION's
    (``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``). No dropout, no
    normalisation.

    Arguments
    ---------
    d_in : int
        Input size.
    d_out : int
        Output size (LAION's ``joint_embed_shape``, 512).

    Example
    -------
    >>> proj = LaionProjection(8, 4)
    >>> sorted(proj.state_dict())
    ['0.bias', '0.weight', '2.bias', '2.weight']
    >>> tuple(proj(torch.randn(3, 8)).shape)
    (3, 4)
    """

    def __init__(self, d_in: int, d_out: int):
        super().__init__(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


def build_projection(kind: str, d_in: int, d_out: int, p: float = 0.5) -> nn.Module:
    """The projection head named by the model key ``projection``.

    Arguments
    ---------
    kind : {"ms", "laion"}
        ``"ms"``: :class:`Projection` (MS CLAP); ``"laion"``:
        :class:`LaionProjection` (LAION-CLAP).
    d_in, d_out : int
        Input and output sizes.
    p : float
        Dropout of the ``"ms"`` head (LAION's head has none).

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> type(build_projection("laion", 8, 4)).__name__
    'LaionProjection'
    >>> build_projection("clip", 8, 4)
    Traceback (most recent call last):
    ...
    ValueError: projection must be one of ms, laion (the model key `projection`), got 'clip'
    """
    if kind == "ms":
        return Projection(d_in, d_out, p=p)
    if kind == "laion":
        return LaionProjection(d_in, d_out)
    raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)} (the model key `projection`), got {kind!r}")
