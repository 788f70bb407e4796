"""MS CLAP's projection head (one per modality)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Projection"]


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
