"""The Swin Transformer of HTS-AT (Liu et al., 2021; Chen et al., 2022): patch embedding, window attention, stages.

:class:`PatchEmbed` turns the square spectrogram image into patch tokens
(fusing, for a long clip, the tokens of three chunks with :class:`AFF`, as
LAION's fused models do); a stage (:class:`BasicLayer`) is ``depth``
:class:`SwinBlock` s, window attention with a relative position bias
(:class:`WindowAttention`) in shifted windows every second block, then
:class:`PatchMerging`. Module and parameter names are those of the reference
implementations; :class:`models.htsat.HTSAT` assembles them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AFF", "PatchEmbed", "WindowAttention", "SwinBlock", "PatchMerging", "BasicLayer"]

#: Additive attention mask between tokens of different shifted regions (the reference's value).
_MASK_VALUE = -100.0


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    # Stochastic depth: drop the residual branch of whole examples.
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).add_(keep).floor_()
    return x / keep * mask


class AFF(nn.Module):
    """Attentional feature fusion (Dai et al., 2021), 2-D, as in LAION's ``fusion_model``.

    ``out = 2 x w + 2 r (1 - w)`` with ``w = sigmoid(local(x + r) + global(x + r))``.

    Arguments
    ---------
    channels : int
        Channels of both inputs.
    r : int
        Bottleneck reduction of the attention branches.

    Example
    -------
    >>> aff = AFF(8).eval()
    >>> tuple(aff(torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)).shape)
    (2, 8, 4, 4)
    """

    def __init__(self, channels=64, r=4):
        super().__init__()
        inter = int(channels // r)

        def branch(pool):
            layers = [nn.AdaptiveAvgPool2d(1)] if pool else []
            layers += [nn.Conv2d(channels, inter, 1), nn.BatchNorm2d(inter), nn.ReLU(inplace=True),
                       nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels)]
            return nn.Sequential(*layers)

        self.local_att = branch(False)
        self.global_att = branch(True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Fuse ``x`` (global view) with ``residual`` (local chunks), both ``[B, C, H, W]``."""
        xa = x + residual
        single = xa.shape[0] == 1 and self.training
        if single:  # batch statistics need two examples (the reference duplicates it too)
            xa = torch.cat([xa, xa], dim=0)
        weight = torch.sigmoid(self.local_att(xa) + self.global_att(xa))
        if single:
            weight = weight[:1]
        return 2 * x * weight + 2 * residual * (1 - weight)


class PatchEmbed(nn.Module):
    """Square spectrogram image -> patch tokens; with fusion, the chunks' tokens are fused in.

    Arguments
    ---------
    img_size : int
        Side of the square input (``spec_size``).
    patch_size, patch_stride : int
        Convolution kernel and stride.
    embed_dim : int
        Token size.
    enable_fusion : bool
        Build ``mel_conv2d`` and ``fusion_model`` (``aff_2d``).

    Example
    -------
    >>> pe = PatchEmbed(64, 4, 4, 16)
    >>> tuple(pe(torch.randn(2, 1, 64, 64)).shape)
    (2, 256, 16)
    """

    def __init__(self, img_size, patch_size, patch_stride, embed_dim, enable_fusion=False):
        super().__init__()
        self.img_size = int(img_size)
        self.grid_size = (self.img_size // patch_stride, self.img_size // patch_stride)
        padding = ((patch_size - patch_stride) // 2,) * 2
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)
        self.enable_fusion = bool(enable_fusion)
        if self.enable_fusion:
            self.mel_conv2d = nn.Conv2d(1, embed_dim, kernel_size=(patch_size, patch_size * 3),
                                        stride=(patch_stride, patch_stride * 3), padding=padding)
            self.fusion_model = AFF(channels=embed_dim)

    def forward(self, x: torch.Tensor, longer: bool = False) -> torch.Tensor:
        """Embed patches.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, 1, S, S]``, or ``[B, 4, S, S]`` (global view then three
            chunks) when fusing.
        longer : bool
            Fuse the chunks (channels 1-3) into the global view's tokens.

        Returns
        -------
        torch.Tensor
            ``[B, tokens, embed_dim]``.
        """
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"HTSAT patch embedding expects {self.img_size}x{self.img_size} images, got "
                             f"{tuple(x.shape[-2:])}")
        tokens = self.proj(x[:, :1])
        if longer and self.enable_fusion:
            batch, chunks, height, width = x.shape[0], x.shape[1] - 1, x.shape[2], x.shape[3]
            local = self.mel_conv2d(x[:, 1:].reshape(batch * chunks, 1, height, width))
            # [B*3, E, h, w] -> [B, E, h, 3 * w]: the chunks side by side along time.
            local = local.view(batch, chunks, *local.shape[1:]).permute(0, 2, 3, 1, 4).flatten(3)
            target = tokens.shape[-1]
            if local.shape[-1] < target:
                local = F.pad(local, (0, target - local.shape[-1]))
            else:
                local = local[..., :target]
            tokens = self.fusion_model(tokens, local.contiguous())
        return self.norm(tokens.flatten(2).transpose(1, 2))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    Arguments
    ---------
    dim : int
        Token size.
    window_size : int
        Side of the (square) window.
    num_heads : int
        Attention heads.
    use_sdpa : bool
        Use ``F.scaled_dot_product_attention`` (same result within float
        rounding). Off by default: on CPU with an additive float mask its
        kernel is slower than the explicit product here (torch 2.9).

    Example
    -------
    >>> att = WindowAttention(16, 4, 2)
    >>> tuple(att(torch.randn(3, 2, 16, 16)).shape)
    (3, 2, 16, 16)
    """

    def __init__(self, dim, window_size, num_heads, use_sdpa=False):
        super().__init__()
        self.dim = int(dim)
        self.window_size = int(window_size)
        self.num_heads = int(num_heads)
        self.head_dim = self.dim // self.num_heads
        self.scale = self.head_dim ** -0.5
        self.use_sdpa = bool(use_sdpa)
        side = 2 * self.window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(side * side, self.num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(self.window_size), torch.arange(self.window_size),
                                            indexing="ij")).flatten(1)  # [2, N]
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (self.window_size - 1)  # [N, N, 2]
        self.register_buffer("relative_position_index", rel[..., 0] * side + rel[..., 1], persistent=False)
        self.qkv = nn.Linear(self.dim, 3 * self.dim)
        self.proj = nn.Linear(self.dim, self.dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Additive attention bias ``[nW or 1, heads, N, N]`` (relative position + shift mask)."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        bias = bias.reshape(n, n, self.num_heads).permute(2, 0, 1)[None]
        if mask is not None:
            bias = bias + mask[:, None]
        return bias.contiguous()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend within windows.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, nW, N, dim]`` (``N = window_size ** 2`` tokens per window).
        mask : torch.Tensor, optional
            ``[nW, N, N]`` additive mask of shifted windows.

        Returns
        -------
        torch.Tensor
            ``[B, nW, N, dim]``.
        """
        batch, n_win, n, dim = x.shape
        qkv = self.qkv(x).reshape(batch, n_win, n, 3, self.num_heads, self.head_dim).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)  # [B, nW, heads, N, d]
        bias = self.bias(mask).to(x.dtype)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            # Scale after the product, in place (one [.., N, N] buffer for scores, bias and softmax).
            attn = torch.matmul(q, k.transpose(-2, -1)).mul_(self.scale).add_(bias)
            out = torch.matmul(torch.softmax(attn, dim=-1), v)
        return self.proj(out.transpose(2, 3).reshape(batch, n_win, n, dim))


class SwinBlock(nn.Module):
    """Swin Transformer block: (shifted) window attention then MLP, both residual.

    A window at least as large as the stage's resolution becomes the whole
    resolution and is not shifted (as in Swin and HTS-AT).

    Arguments
    ---------
    dim : int
        Token size.
    input_resolution : tuple of int
        ``(H, W)`` token grid.
    num_heads : int
        Attention heads.
    window_size : int
        Window side.
    shift_size : int
        Cyclic shift (0 or ``window_size // 2``).
    mlp_ratio : float
        Hidden size of the MLP over ``dim``.
    drop_path : float
        Stochastic depth rate.
    use_sdpa : bool
        See :class:`WindowAttention`.

    Example
    -------
    >>> blk = SwinBlock(16, (8, 8), 2, window_size=4, shift_size=2)
    >>> tuple(blk(torch.randn(2, 64, 16)).shape), tuple(blk.attn_mask.shape)
    ((2, 64, 16), (4, 16, 16))
    """

    def __init__(self, dim, input_resolution, num_heads, window_size=8, shift_size=0, mlp_ratio=4.0,
                 drop_path=0.0, use_sdpa=False):
        super().__init__()
        self.dim = int(dim)
        self.input_resolution = tuple(int(r) for r in input_resolution)
        self.window_size = int(window_size)
        self.shift_size = int(shift_size)
        if min(self.input_resolution) <= self.window_size:
            self.window_size = min(self.input_resolution)
            self.shift_size = 0
        height, width = self.input_resolution
        if height % self.window_size or width % self.window_size:
            raise ValueError(f"HTSAT: a {height}x{width} token grid cannot be cut into {self.window_size}-wide "
                             "windows; choose spec_size / patch_stride / swin_window_size so that each stage's "
                             "resolution is a multiple of the window (audio_options)")
        self.drop_path = float(drop_path)
        self.norm1 = nn.LayerNorm(self.dim)
        self.attn = WindowAttention(self.dim, self.window_size, num_heads, use_sdpa=use_sdpa)
        self.norm2 = nn.LayerNorm(self.dim)
        self.mlp = _Mlp(self.dim, int(self.dim * mlp_ratio))
        self.register_buffer("attn_mask", self._shift_mask(), persistent=False)

    def _shift_mask(self):
        if self.shift_size == 0:
            return None
        height, width = self.input_resolution
        ws, shift = self.window_size, self.shift_size
        # Label the regions that the cyclic shift brings together; tokens of
        # different regions must not attend to each other.
        region = torch.zeros(height, width)
        bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        label = 0
        for hs in bounds:
            for wsl in bounds:
                region[hs, wsl] = label
                label += 1
        windows = region.view(height // ws, ws, width // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
        diff = windows[:, None, :] - windows[:, :, None]
        return torch.where(diff != 0, torch.tensor(_MASK_VALUE), torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H*W, dim]`` -> ``[B, H*W, dim]``."""
        height, width = self.input_resolution
        batch, _, dim = x.shape
        ws = self.window_size
        h = self.norm1(x).view(batch, height, width, dim)
        if self.shift_size:
            h = torch.roll(h, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        # Partition into windows: [B, nW, ws*ws, dim].
        h = h.view(batch, height // ws, ws, width // ws, ws, dim).transpose(2, 3)
        h = h.reshape(batch, -1, ws * ws, dim)
        h = self.attn(h, self.attn_mask)
        h = h.view(batch, height // ws, width // ws, ws, ws, dim).transpose(2, 3).reshape(batch, height, width, dim)
        if self.shift_size:
            h = torch.roll(h, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x + _drop_path(h.reshape(batch, height * width, dim), self.drop_path, self.training)
        return x + _drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class _Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class PatchMerging(nn.Module):
    """Merge 2x2 neighbouring tokens: ``[B, H*W, C]`` -> ``[B, H*W/4, 2C]``.

    The four neighbours are concatenated in the order (0,0), (1,0), (0,1),
    (1,1) (row offset first), as in Swin, then LayerNorm and a linear map.

    Arguments
    ---------
    input_resolution : tuple of int
        ``(H, W)``, both even.
    dim : int
        Input token size.

    Example
    -------
    >>> tuple(PatchMerging((4, 4), 8)(torch.randn(2, 16, 8)).shape)
    (2, 4, 16)
    """

    def __init__(self, input_resolution, dim):
        super().__init__()
        self.input_resolution = tuple(int(r) for r in input_resolution)
        if self.input_resolution[0] % 2 or self.input_resolution[1] % 2:
            raise ValueError(f"HTSAT: patch merging needs an even token grid, got {self.input_resolution}")
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Merge and project."""
        height, width = self.input_resolution
        batch, _, dim = x.shape
        x = x.view(batch, height // 2, 2, width // 2, 2, dim).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(batch, (height // 2) * (width // 2), 4 * dim)))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks (shifted every second one), then patch merging.

    Arguments
    ---------
    dim : int
        Token size.
    input_resolution : tuple of int
        Token grid.
    depth, num_heads, window_size : int
        Blocks, heads, window side.
    drop_path : list of float
        Stochastic depth rate of each block.
    downsample : bool
        End with :class:`PatchMerging`.
    use_sdpa : bool
        See :class:`WindowAttention`.
    """

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio=4.0, drop_path=None,
                 downsample=True, use_sdpa=False):
        super().__init__()
        drop_path = drop_path if drop_path is not None else [0.0] * depth
        self.blocks = nn.ModuleList([
            SwinBlock(dim, input_resolution, num_heads, window_size=window_size,
                      shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio,
                      drop_path=drop_path[i], use_sdpa=use_sdpa)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(input_resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the stage."""
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x

