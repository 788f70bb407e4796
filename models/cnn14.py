"""PANNs Cnn14 audio encoder, as used by MS CLAP.

Parameter names and the forward computation follow PANNs (Kong et al.,
2020) and MS CLAP's copy of it (``fc1`` maps to ``out_emb`` and
``fc_audioset`` reads from it), so the official ``Cnn14_mAP=0.431.pth``
and the MS CLAP 2022 audio tower load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.frontend import LogmelFilterBank, Spectrogram, float32_features

__all__ = ["Cnn14", "ConvBlock", "SpecAugment", "cnn14_channels"]

_BASE_CHANNELS = (64, 128, 256, 512, 1024, 2048)


def cnn14_channels(width: float = 1.0) -> tuple[int, ...]:
    """Channel counts of the six conv blocks for a width multiplier.

    Arguments
    ---------
    width : float
        Multiplier; 1.0 is the official network.

    Returns
    -------
    tuple of int
        ``max(1, round(c * width))`` for ``c`` in 64 .. 2048.

    Example
    -------
    >>> cnn14_channels(1 / 16)
    (4, 8, 16, 32, 64, 128)
    """
    return tuple(max(1, int(round(c * width))) for c in _BASE_CHANNELS)


def _init_layer(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def _init_bn(bn: nn.BatchNorm2d) -> None:
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BN + ReLU layers followed by average pooling.

    Arguments
    ---------
    in_channels, out_channels : int
        Channel counts.

    Example
    -------
    >>> block = ConvBlock(1, 4)
    >>> tuple(block(torch.randn(2, 1, 8, 8), pool_size=(2, 2)).shape)
    (2, 4, 4, 4)
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        _init_layer(self.conv1)
        _init_layer(self.conv2)
        _init_bn(self.bn1)
        _init_bn(self.bn2)

    def forward(self, x: torch.Tensor, pool_size=(2, 2)) -> torch.Tensor:
        """Apply the block.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C_in, time, freq]``.
        pool_size : tuple of int
            Average-pooling kernel (and stride).

        Returns
        -------
        torch.Tensor
            ``[B, C_out, time // p0, freq // p1]``.
        """
        x = F.relu_(self.bn1(self.conv1(x)))  # in place, as PANNs: one pass less over the activations
        x = F.relu_(self.bn2(self.conv2(x)))
        if tuple(pool_size) != (1, 1):
            x = F.avg_pool2d(x, kernel_size=pool_size)
        return x


class SpecAugment(nn.Module):
    """SpecAugment stripe dropping as configured in PANNs / MS CLAP.

    Two time stripes narrower than ``time_drop_width`` frames and two
    frequency stripes narrower than ``freq_drop_width`` bins are zeroed per
    example, in training mode only.  Widths and positions come from the torch
    RNG, so ``torch.manual_seed`` reproduces them.

    Arguments
    ---------
    time_drop_width : int
        Exclusive upper bound of a time stripe's width (frames).
    time_stripes_num : int
        Time stripes per example.
    freq_drop_width : int
        Exclusive upper bound of a frequency stripe's width (bins).
    freq_stripes_num : int
        Frequency stripes per example.

    Notes
    -----
    On inputs shorter than ``4 * drop_width`` along an axis, the width bound
    is lowered to a quarter of that axis, so that the stripes can cover at
    most about half of it (the proportion the defaults give on 5 s clips is
    far lower; masking everything would leave nothing to learn from).

    Example
    -------
    >>> aug = SpecAugment(64, 2, 8, 2).train()
    >>> _ = torch.manual_seed(0)
    >>> out = aug(torch.ones(3, 1, 100, 64))
    >>> tuple(out.shape), bool((out == 0).any())
    ((3, 1, 100, 64), True)
    """

    def __init__(self, time_drop_width=64, time_stripes_num=2, freq_drop_width=8, freq_stripes_num=2):
        super().__init__()
        self.time_drop_width = int(time_drop_width)
        self.time_stripes_num = int(time_stripes_num)
        self.freq_drop_width = int(freq_drop_width)
        self.freq_stripes_num = int(freq_stripes_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero random stripes (training mode only).

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, time, freq]``.

        Returns
        -------
        torch.Tensor
            Same shape; ``x`` itself in eval mode.
        """
        if not self.training:
            return x
        keep_t = self._keep_mask(x, 2, self.time_drop_width, self.time_stripes_num)
        keep_f = self._keep_mask(x, 3, self.freq_drop_width, self.freq_stripes_num)
        # Broadcast [B,1,T,1] * [B,1,1,F] as a multiply rather than in-place
        # writes, so gradients still flow through the unmasked cells.
        return x * (keep_t[:, None, :, None] & keep_f[:, None, None, :]).to(x.dtype)

    @staticmethod
    def _keep_mask(x: torch.Tensor, dim: int, drop_width: int, stripes: int) -> torch.Tensor:
        batch, total = x.shape[0], x.shape[dim]
        keep = torch.ones(batch, total, dtype=torch.bool, device=x.device)
        width = min(drop_width, max(1, total // 4))
        if stripes <= 0 or width <= 1:
            return keep
        positions = torch.arange(total, device=x.device)
        for _ in range(stripes):
            distance = torch.randint(0, width, (batch, 1), device=x.device)
            # Uniform start in [0, total - distance), as in torchlibrosa.
            start = (torch.rand(batch, 1, device=x.device) * (total - distance)).long()
            keep &= ~((positions >= start) & (positions < start + distance))
        return keep


class Cnn14(nn.Module):
    """PANNs Cnn14 with MS CLAP's embedding head.

    Arguments
    ---------
    sample_rate : int
        Input sampling rate (Hz).
    window_size : int
        STFT size / window length.
    hop_size : int
        STFT hop.
    mel_bins : int
        Number of mel bands (>= 32 so five 2x2 poolings leave one bin).
    fmin, fmax : float
        Mel band edges (Hz).
    classes_num : int
        Outputs of ``fc_audioset``.
    out_emb : int
        Embedding size (output of ``fc1``).
    width : float
        Channel multiplier; 1.0 is the official network.
    spec_augment : bool
        Apply SpecAugment in training mode.

    Notes
    -----
    The input must give at least 32 frames (``T // hop_size + 1 >= 32``).
    Dropout follows MS CLAP: 0.2 after every conv block, 0.5 before ``fc1``
    and on the returned embedding; ``clipwise_output`` reads the un-dropped
    ``relu(fc1)``.

    Example
    -------
    >>> net = Cnn14(16000, 512, 160, 64, 50, 8000, classes_num=5, out_emb=32,
    ...             width=1 / 16).eval()
    >>> out = net(torch.randn(2, 16000))
    >>> tuple(out["embedding"].shape), tuple(out["clipwise_output"].shape)
    ((2, 32), (2, 5))
    """

    def __init__(
        self,
        sample_rate,
        window_size,
        hop_size,
        mel_bins,
        fmin,
        fmax,
        classes_num,
        out_emb=2048,
        width=1.0,
        spec_augment=True,
    ):
        super().__init__()
        channels = cnn14_channels(width)
        self.spectrogram_extractor = Spectrogram(window_size, hop_size)
        self.logmel_extractor = LogmelFilterBank(sample_rate, window_size, mel_bins, fmin, fmax)
        self.spec_augment = bool(spec_augment)
        self.spec_augmenter = SpecAugment(64, 2, 8, 2)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        ins = (1,) + channels[:-1]
        for i, (c_in, c_out) in enumerate(zip(ins, channels), start=1):
            setattr(self, f"conv_block{i}", ConvBlock(c_in, c_out))
        self.fc1 = nn.Linear(channels[-1], out_emb, bias=True)
        self.fc_audioset = nn.Linear(out_emb, classes_num, bias=True)
        _init_bn(self.bn0)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel features before ``bn0``, always computed in (at least) float32.

        Autocast is switched off here, as the paper code (and MS CLAP) do
        around the STFT and log-mel: under fp16 autocast the mel projection
        would run in float16, whose largest value is 65504: the power
        spectrum of a full-scale tone at ``window_size`` 1024 is already
        ~6e4, a louder clip's becomes ``inf`` (then NaN features), and
        silence's ``1e-10`` floor rounds to 0 (``-inf`` dB). bf16 has
        float32's range but 8 bits of mantissa; it is guarded too (nothing
        is gained by a bf16 mel product: the cost of this module is the FFT,
        which autocast leaves in float32 anyway), so both precisions see the
        float32 features, rounded only where the first convolution casts them.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform.

        Returns
        -------
        torch.Tensor
            ``[B, 1, frames, mel_bins]`` in dB, float32 (float64 for a float64 input).

        Example
        -------
        >>> net = Cnn14(16000, 512, 160, 32, 50, 8000, 10, out_emb=16, width=1 / 16)
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     feats = net.logmel(torch.randn(1, 1600))
        >>> feats.dtype
        torch.float32
        """
        guard, wav = float32_features(wav)
        with guard:
            return self.logmel_extractor(self.spectrogram_extractor(wav))

    def forward(self, wav: torch.Tensor) -> dict:
        """Embed a batch of waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform at ``sample_rate``.

        Returns
        -------
        dict
            ``"embedding"`` ``[B, out_emb]`` and ``"clipwise_output"``
            ``[B, classes_num]`` (sigmoid probabilities).
        """
        x = self.logmel(wav)
        # bn0 normalises each mel bin, so move mel to the channel axis.
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.training and self.spec_augment:
            x = self.spec_augmenter(x)
        for i in range(1, 6):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2))
            x = F.dropout(x, p=0.2, training=self.training)
        x = self.conv_block6(x, pool_size=(1, 1))
        x = F.dropout(x, p=0.2, training=self.training)
        x = torch.mean(x, dim=3)
        x = torch.amax(x, dim=2) + torch.mean(x, dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        embedding = F.dropout(x, p=0.5, training=self.training)
        clipwise_output = torch.sigmoid(self.fc_audioset(x))
        return {"embedding": embedding, "clipwise_output": clipwise_output}
