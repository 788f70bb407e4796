"""HTS-AT audio tower (Chen et al., 2022), as used by LAION-CLAP and MS CLAP 2023.

HTS-AT is a Swin Transformer over a log-mel spectrogram that has been folded
into a square image: a clip of ``spec_size * freq_ratio`` frames and
``spec_size // freq_ratio`` mel bins (``freq_ratio = spec_size // mel_bins``)
is cut into ``freq_ratio`` time segments stacked along the frequency axis.
Four Swin stages (window attention with relative position bias, shifted
windows every second block, patch merging between stages) end in a
LayerNorm; the **embedding** is the mean of the last stage's tokens, and the
token-semantic head (``tscam_conv``) gives ``clipwise_output``.

This module holds the model, its sizes, its front end and the reading of
reference state dicts; the Swin Transformer it is built of (patch embedding,
window attention, blocks, patch merging) is :mod:`models.swin`.

Module and parameter names are those of the reference implementations
(LAION's ``audio_branch`` and MS CLAP's ``audio_encoder.base.htsat``), so their
state dicts load here after :func:`from_reference_state_dict`. The front end
is ours (:mod:`models.frontend`, ``torch.stft`` behind PANNs' key layout), with
two variants:

- ``frontend="panns"`` (LAION unfused models and MS CLAP 2023): torchlibrosa's
  Slaney mel, ``10 log10(max(x, 1e-10))``. ``filterbank_sample_rate`` lets the
  filterbank be designed for another rate than the audio's: MS CLAP 2023 feeds
  44.1 kHz audio to a filterbank built for 32 kHz (its code builds HTS-AT from
  ``msclap/models/config.py``, not from ``config_2023.yml``).
- ``frontend="htk"`` (LAION fused models, whose data pipeline computes the mel
  with ``torchaudio``): HTK mel scale without normalisation, same dB formula.
  The Slaney ``logmel_extractor.melW`` is kept (fused checkpoints carry it) but
  not used.

Feature fusion (``enable_fusion=True``, ``fusion_type="aff_2d"``) embeds a clip
longer than ``clip_samples`` from a global view (the whole mel resized to one
window) fused, inside the patch embedding, with three window-long chunks taken
from the front, middle and back thirds of the clip. LAION draws the chunk
starts at random; here each is the middle candidate of its third, so a file
always gets the same embedding.

The code is written for this project (the facts — names, shapes, formulas —
come from the reference; the implementation is vectorised over the batch and
skips the reference's unused outputs: per-block attention maps, framewise
and fine-grained outputs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.cnn14 import SpecAugment
from models.frontend import AMIN, LogmelFilterBank, Spectrogram, float32_features
from models.swin import BasicLayer, PatchEmbed

__all__ = [
    "HTSAT",
    "HTSAT_SIZES",
    "HTKLogmel",
    "htsat_config",
    "fusion_chunk_starts",
    "from_reference_state_dict",
    "NON_PERSISTENT_SUFFIXES",
]

#: Published sizes (LAION ``create_htsat_model``; MS CLAP 2023 uses ``tiny``).
HTSAT_SIZES = {
    "tiny": dict(spec_size=256, patch_size=4, patch_stride=4, embed_dim=96, depths=(2, 2, 6, 2),
                 num_heads=(4, 8, 16, 32), swin_window_size=8),
    "base": dict(spec_size=256, patch_size=4, patch_stride=4, embed_dim=128, depths=(2, 2, 12, 2),
                 num_heads=(4, 8, 16, 32), swin_window_size=8),
    "large": dict(spec_size=256, patch_size=4, patch_stride=4, embed_dim=256, depths=(2, 2, 12, 2),
                  num_heads=(4, 8, 16, 32), swin_window_size=8),
}

#: Buffers the reference stores in its state dict but ours recomputes
#: (non-persistent): a state dict from the reference must drop them.
NON_PERSISTENT_SUFFIXES = ("attn_mask", "relative_position_index")


def htsat_config(size="tiny", **explicit):
    """Architecture of an HTS-AT: a published ``size`` overridden by explicit values.

    Arguments
    ---------
    size : str or None
        ``"tiny"``, ``"base"`` or ``"large"`` (:data:`HTSAT_SIZES`), or None
        when every value is given explicitly.
    **explicit
        ``spec_size``, ``patch_size``, ``patch_stride``, ``embed_dim``,
        ``depths``, ``num_heads``, ``swin_window_size``; None values are ignored.

    Returns
    -------
    dict
        The seven values, plus ``num_features = embed_dim * 2 ** (stages - 1)``.

    Example
    -------
    >>> htsat_config("tiny")["num_features"], htsat_config("base")["num_features"]
    (768, 1024)
    >>> htsat_config("tiny", embed_dim=16, depths=(1, 1, 1, 1))["num_features"]
    128
    >>> htsat_config("huge")
    Traceback (most recent call last):
    ...
    ValueError: unknown HTS-AT size 'huge' (audio_options: size); supported: ['base', 'large', 'tiny']
    """
    keys = ("spec_size", "patch_size", "patch_stride", "embed_dim", "depths", "num_heads", "swin_window_size")
    unknown = sorted(set(explicit) - set(keys))
    if unknown:
        raise TypeError(f"unknown HTS-AT option(s) {unknown} (audio_options); known: {['size', *keys]}")
    if size is None:
        config = {}
    elif size in HTSAT_SIZES:
        config = dict(HTSAT_SIZES[size])
    else:
        raise ValueError(f"unknown HTS-AT size {size!r} (audio_options: size); supported: {sorted(HTSAT_SIZES)}")
    config.update({k: v for k, v in explicit.items() if v is not None})
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"HTS-AT options {missing} are missing (audio_options): give a size or every value")
    config["depths"] = tuple(int(d) for d in config["depths"])
    config["num_heads"] = tuple(int(h) for h in config["num_heads"])
    if len(config["depths"]) != len(config["num_heads"]):
        raise ValueError("audio_options: depths and num_heads need one entry per stage")
    config["num_features"] = int(config["embed_dim"]) * 2 ** (len(config["depths"]) - 1)
    return config


def fusion_chunk_starts(total_frames: int, chunk_frames: int) -> list[int]:
    """Start frames of the front, middle and back chunks of a fused long clip.

    LAION splits the candidate starts ``0 .. total_frames - chunk_frames`` into
    three ``numpy.array_split`` parts (an empty part becomes ``[0]``) and draws
    one start from each with ``np.random.choice``; we take the middle element
    of each part (``part[len(part) // 2]``), so the choice is deterministic.

    Arguments
    ---------
    total_frames : int
        Frames of the whole clip's mel.
    chunk_frames : int
        Frames of one window (``clip_samples // hop_size + 1``).

    Returns
    -------
    list of int
        Three start frames.

    Example
    -------
    >>> fusion_chunk_starts(2001, 1001)
    [167, 501, 834]
    >>> fusion_chunk_starts(1002, 1001)
    [0, 1, 0]
    """
    parts = np.array_split(np.arange(0, total_frames - chunk_frames + 1), 3)
    return [int(part[len(part) // 2]) if len(part) else 0 for part in parts]


def from_reference_state_dict(state_dict, prefix=""):
    """A reference HTS-AT state dict (LAION or MS CLAP) in our layout.

    The reference keeps ``attn_mask`` and ``relative_position_index`` as
    persistent buffers; ours recompute them (non-persistent), so they are
    dropped. Every other key is the same.

    Arguments
    ---------
    state_dict : Mapping[str, torch.Tensor]
        Keys of ``HTSAT_Swin_Transformer`` (possibly under ``prefix``).
    prefix : str
        Only keys starting with it are kept, with it removed
        (e.g. ``"audio_branch."`` or ``"htsat."``).

    Returns
    -------
    dict
        Keys loadable by :class:`HTSAT` (``strict=True``).

    Example
    -------
    >>> sd = {"htsat.bn0.weight": torch.ones(2), "htsat.layers.0.blocks.1.attn_mask": torch.zeros(1),
    ...       "htsat.layers.0.blocks.1.attn.relative_position_index": torch.zeros(1), "other": torch.ones(1)}
    >>> sorted(from_reference_state_dict(sd, prefix="htsat."))
    ['bn0.weight']
    """
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        if key.rsplit(".", 1)[-1] in NON_PERSISTENT_SUFFIXES:
            continue
        out[key] = value
    return out


class HTKLogmel(nn.Module):
    """Mel projection (HTK scale, no normalisation) and dB, as LAION's fused data pipeline.

    ``torchaudio.transforms.MelSpectrogram(..., norm=None)`` followed by
    ``AmplitudeToDB(top_db=None)``: ``10 log10(max(power @ fb, 1e-10))``.
    The filterbank is a non-persistent buffer (no checkpoint carries it).

    Arguments
    ---------
    sample_rate : int
        Sample rate the filterbank is designed for.
    n_fft : int
        FFT size of the incoming power spectrogram.
    n_mels : int
        Mel bands.
    fmin, fmax : float
        Band edges in Hz.

    Example
    -------
    >>> htk = HTKLogmel(48000, 1024, 64, 50, 14000)
    >>> tuple(htk(torch.zeros(1, 1, 3, 513)).shape)
    (1, 1, 3, 64)
    """

    def __init__(self, sample_rate, n_fft, n_mels, fmin, fmax):
        super().__init__()
        import torchaudio  # transforms only

        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, float(fmin), float(fmax), int(n_mels), int(sample_rate), norm=None, mel_scale="htk"
        )
        self.register_buffer("melW", fb.to(torch.float32), persistent=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """``[B, 1, frames, n_freq]`` power -> ``[B, 1, frames, n_mels]`` dB."""
        return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=AMIN))


class HTSAT(nn.Module):
    """HTS-AT with our front end, LAION / MS CLAP parameter names, optional feature fusion.

    Arguments
    ---------
    sample_rate : int
        Audio sample rate (Hz).
    window_size, hop_size : int
        STFT size and hop.
    mel_bins : int
        Mel bands (``spec_size`` must be a multiple: ``freq_ratio = spec_size // mel_bins``).
    fmin, fmax : float
        Mel band edges (Hz).
    classes_num : int
        Outputs of the token-semantic head.
    size : str or None
        ``"tiny"``, ``"base"``, ``"large"`` (:data:`HTSAT_SIZES`), overridden by
        the explicit values below when given.
    spec_size, patch_size, patch_stride, embed_dim, depths, num_heads, swin_window_size
        Explicit architecture (see :func:`htsat_config`). ``swin_window_size``
        is the attention window (``window_size`` is the STFT's).
    enable_fusion : bool
        LAION feature fusion for clips longer than ``clip_samples``.
    fusion_type : str
        ``"aff_2d"`` (the published fused models); no other type is implemented.
    frontend : str
        ``"panns"`` (Slaney mel) or ``"htk"`` (LAION's fused pipeline).
    filterbank_sample_rate : int or None
        Rate the mel filterbank is designed for (None: ``sample_rate``;
        MS CLAP 2023: 32000 on 44.1 kHz audio).
    clip_samples : int
        Fusion window in samples (LAION: 480000, 10 s at 48 kHz).
    spec_augment : bool
        SpecAugment in training mode.
    drop_path_rate : float
        Stochastic depth of the last block (linearly increasing from 0).
    mlp_ratio : float
        MLP hidden size over the token size.
    use_sdpa : bool
        ``F.scaled_dot_product_attention`` in the window attention (see
        :class:`WindowAttention`; off by default).

    Notes
    -----
    ``forward`` accepts up to ``spec_size * freq_ratio`` frames
    (:attr:`max_frames`); shorter inputs are stretched (bicubic) to that
    length, as in the reference. An unfused model refuses longer inputs: the
    caller chunks them (``long_audio == "chunk"``). A fused model
    (``long_audio == "fusion"``) takes whole files; callers should pad clips
    shorter than ``clip_samples`` as LAION does (repeat-pad) before calling.

    Example
    -------
    >>> net = HTSAT(16000, 512, 160, 32, 50, 8000, classes_num=5, size=None, spec_size=64, patch_size=4,
    ...             patch_stride=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4),
    ...             swin_window_size=8).eval()
    >>> out = net(torch.randn(2, 16000))
    >>> tuple(out["embedding"].shape), tuple(out["clipwise_output"].shape), net.long_audio
    ((2, 128), (2, 5), 'chunk')
    """

    def __init__(self, sample_rate=48000, window_size=1024, hop_size=480, mel_bins=64, fmin=50, fmax=14000,
                 classes_num=527, size="tiny", spec_size=None, patch_size=None, patch_stride=None, embed_dim=None,
                 depths=None, num_heads=None, swin_window_size=None, enable_fusion=False, fusion_type="aff_2d",
                 frontend="panns", filterbank_sample_rate=None, clip_samples=480000, spec_augment=True,
                 drop_path_rate=0.1, mlp_ratio=4.0, use_sdpa=False):
        super().__init__()
        cfg = htsat_config(size, spec_size=spec_size, patch_size=patch_size, patch_stride=patch_stride,
                           embed_dim=embed_dim, depths=depths, num_heads=num_heads, swin_window_size=swin_window_size)
        self.config = cfg
        self.spec_size = int(cfg["spec_size"])
        self.mel_bins = int(mel_bins)
        if self.spec_size % self.mel_bins or self.spec_size < self.mel_bins:
            raise ValueError(f"HTSAT: spec_size ({self.spec_size}) must be a multiple of mel_bins ({mel_bins})")
        self.freq_ratio = self.spec_size // self.mel_bins
        self.max_frames = self.spec_size * self.freq_ratio
        self.hop_size = int(hop_size)
        self.num_features = cfg["num_features"]
        self.num_classes = int(classes_num)
        if frontend not in ("panns", "htk"):
            raise ValueError(f"HTSAT frontend must be 'panns' or 'htk' (audio_options: frontend), got {frontend!r}")
        self.frontend = frontend
        self.enable_fusion = bool(enable_fusion)
        if self.enable_fusion and fusion_type != "aff_2d":
            raise ValueError(f"HTSAT fusion_type {fusion_type!r} is not implemented (audio_options: fusion_type); "
                             "the published fused LAION models use 'aff_2d'")
        self.fusion_type = fusion_type
        self.clip_samples = int(clip_samples)
        self.long_audio = "fusion" if self.enable_fusion else "chunk"
        fb_rate = sample_rate if filterbank_sample_rate is None else filterbank_sample_rate

        #: The filterbank's design (rate, n_fft, mel bands, fmin, fmax): another mel scale on the same STFT.
        self.filterbank = (fb_rate, int(window_size), int(mel_bins), fmin, fmax)
        self.spectrogram_extractor = Spectrogram(window_size, hop_size)
        self.logmel_extractor = LogmelFilterBank(fb_rate, window_size, mel_bins, fmin, fmax)
        if frontend == "htk":
            self.htk_logmel = HTKLogmel(fb_rate, window_size, mel_bins, fmin, fmax)
        self.spec_augment = bool(spec_augment)
        self.spec_augmenter = SpecAugment(64, 2, 8, 2)
        self.bn0 = nn.BatchNorm2d(self.mel_bins)

        stride = int(cfg["patch_stride"])
        self.patch_embed = PatchEmbed(self.spec_size, int(cfg["patch_size"]), stride, int(cfg["embed_dim"]),
                                      enable_fusion=self.enable_fusion)
        grid = self.patch_embed.grid_size
        depths, n_stages = cfg["depths"], len(cfg["depths"])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(n_stages):
            self.layers.append(BasicLayer(
                int(cfg["embed_dim"]) * 2 ** i, (grid[0] // 2 ** i, grid[1] // 2 ** i), depths[i],
                cfg["num_heads"][i], int(cfg["swin_window_size"]), mlp_ratio=mlp_ratio,
                drop_path=rates[sum(depths[:i]):sum(depths[:i + 1])], downsample=i < n_stages - 1,
                use_sdpa=use_sdpa))
        self.norm = nn.LayerNorm(self.num_features)
        self.final_grid = (grid[0] // 2 ** (n_stages - 1), grid[1] // 2 ** (n_stages - 1))
        if self.final_grid[0] % self.freq_ratio:
            raise ValueError(f"HTSAT: the last stage's {self.final_grid[0]} frequency rows cannot be split into "
                             f"freq_ratio={self.freq_ratio} groups (audio_options: spec_size / patch_stride)")
        self.tscam_conv = nn.Conv2d(self.num_features, self.num_classes,
                                    kernel_size=(self.final_grid[0] // self.freq_ratio, 3), padding=(0, 1))
        self.head = nn.Linear(self.num_classes, self.num_classes)  # in the published files; unused
        self.apply(_init_weights)

    # ------------------------------------------------------------ front end
    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, 1, frames, mel_bins]`` before ``bn0``, in (at least) float32, autocast off.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform.

        Returns
        -------
        torch.Tensor
            dB values (Slaney or HTK mel, see ``frontend``).
        """
        guard, wav = float32_features(wav)
        with guard:
            power = self.spectrogram_extractor(wav)
            if self.frontend == "htk":
                return self.htk_logmel(power)
            return self.logmel_extractor(power)

    def chunk_frames(self) -> int:
        """Frames of one fusion window (``clip_samples // hop_size + 1``)."""
        return self.clip_samples // self.hop_size + 1

    def fusion_input(self, mel: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """LAION's ``mel_fusion`` for a batch of equally long log-mels.

        Arguments
        ---------
        mel : torch.Tensor
            ``[B, 1, frames, mel_bins]`` (before ``bn0``).

        Returns
        -------
        mel_fusion : torch.Tensor
            ``[B, 4, chunk_frames, mel_bins]``: the whole mel resized to one
            window (bilinear, no antialias) and the front / middle / back
            chunks at :func:`fusion_chunk_starts`, when the clip is longer
            than one window; else 4 copies of ``mel``.
        longer : bool
            Whether the clip is longer than one window.
        """
        total, chunk = mel.shape[2], self.chunk_frames()
        if total <= chunk:
            return mel.expand(-1, 4, -1, -1), False
        starts = fusion_chunk_starts(total, chunk)
        views = [F.interpolate(mel, size=(chunk, mel.shape[3]), mode="bilinear", align_corners=False)]
        views += [mel[:, :, s:s + chunk] for s in starts]
        return torch.cat(views, dim=1), True

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """Fold ``[B, C, frames, mel_bins]`` into the square ``[B, C, spec_size, spec_size]`` image.

        The time axis is first stretched (bicubic, ``align_corners=True``) to
        :attr:`max_frames`, then cut into ``freq_ratio`` segments stacked
        along frequency.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, C, frames <= max_frames, mel_bins]``.

        Returns
        -------
        torch.Tensor
            ``[B, C, spec_size, spec_size]``.
        """
        batch, channels, frames, bins = x.shape
        if frames > self.max_frames:
            seconds = (self.max_frames - 1) * self.hop_size
            raise ValueError(
                f"HTSAT: {frames} frames exceed the model's window of {self.max_frames} frames "
                f"({seconds} samples); chunk longer audio before calling (the inference code does), "
                "or use a fused model (audio_options: enable_fusion)")
        if frames < self.max_frames:
            x = F.interpolate(x, (self.max_frames, bins), mode="bicubic", align_corners=True)
        x = x.transpose(2, 3).reshape(batch, channels, bins, self.freq_ratio, self.max_frames // self.freq_ratio)
        return x.transpose(2, 3).reshape(batch, channels, self.freq_ratio * bins, -1)

    # ------------------------------------------------------------ network
    def forward_features(self, x: torch.Tensor, longer: bool = False) -> dict:
        """Swin stages and heads on the folded image.

        Arguments
        ---------
        x : torch.Tensor
            ``[B, 1 or 4, spec_size, spec_size]``.
        longer : bool
            Fuse the chunks (fused models).

        Returns
        -------
        dict
            ``"embedding"`` ``[B, num_features]`` (mean token) and
            ``"clipwise_output"`` ``[B, classes_num]`` (sigmoid).
        """
        x = self.patch_embed(x, longer=longer)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        embedding = x.mean(dim=1)
        batch, _, channels = x.shape
        rows, cols = self.final_grid
        group = rows // self.freq_ratio
        # [B, N, C] -> [B, C, rows, cols] -> the freq_ratio row groups side by side along time.
        grid = x.transpose(1, 2).reshape(batch, channels, self.freq_ratio, group, cols)
        grid = grid.transpose(2, 3).reshape(batch, channels, group, self.freq_ratio * cols)
        logits = self.tscam_conv(grid).flatten(2).mean(dim=2)
        return {"embedding": embedding, "clipwise_output": torch.sigmoid(logits)}

    def forward_mel(self, mel: torch.Tensor, longer: bool = False) -> dict:
        """Everything after the log-mel: ``bn0``, SpecAugment (training), folding, network.

        Arguments
        ---------
        mel : torch.Tensor
            ``[B, C, frames, mel_bins]`` before ``bn0`` (``C = 4`` with fusion:
            ``mel_fusion``; only channel 0 is used unless ``longer``).
        longer : bool
            Fuse channels 1-3 (fused models).

        Returns
        -------
        dict
            See :meth:`forward_features`.
        """
        if not longer:
            mel = mel[:, :1]
        x = self.bn0(mel.transpose(1, 3)).transpose(1, 3)
        if self.training and self.spec_augment:
            x = self.spec_augmenter(x)
        return self.forward_features(self.reshape_wav2img(x), longer=longer and self.enable_fusion)

    def forward(self, wav: torch.Tensor) -> dict:
        """Embed a batch of waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` at ``sample_rate``.

        Returns
        -------
        dict
            ``"embedding"`` ``[B, num_features]`` and ``"clipwise_output"`` ``[B, classes_num]``.
        """
        mel = self.logmel(wav)
        longer = False
        if self.enable_fusion:
            mel, longer = self.fusion_input(mel)
        return self.forward_mel(mel, longer=longer)


def _init_weights(module):
    # The reference's initialisation: truncated normal linear weights, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
