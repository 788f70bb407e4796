"""CLAP model with the MS CLAP 2022 module layout.

Submodule names (``audio_encoder.base``, ``audio_encoder.projection``,
``caption_encoder.base``, ``caption_encoder.projection``, ``logit_scale``)
are those of the published checkpoint, so it loads key for key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.freeze import run_base
from models.projection import build_projection
from models.registry import AUDIO_ENCODERS, build_audio_backbone, build_text_encoder

__all__ = ["AudioEncoder", "CLAP", "MSCLAP2022", "AUDIO_ENCODERS"]

#: Constructor kwargs of :class:`CLAP` reproducing MS CLAP 2022.
MSCLAP2022 = dict(
    audioenc_name="Cnn14",
    sample_rate=44100,
    window_size=1024,
    hop_size=320,
    mel_bins=64,
    fmin=50,
    fmax=14000,
    classes_num=527,
    out_emb=2048,
    text_model="bert-base-uncased",
    transformer_embed_dim=768,
    d_proj=1024,
)


class AudioEncoder(nn.Module):
    """Audio tower: ``base`` (Cnn14) then ``projection``.

    Arguments
    ---------
    audioenc_name : str
        Backbone name, a key of :data:`models.registry.AUDIO_ENCODERS` (``"Cnn14"``).
    sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb
        Passed to :class:`models.cnn14.Cnn14`.
    d_proj : int
        Output size of the projection.
    width : float
        Cnn14 channel multiplier (1.0 = official).
    spec_augment : bool
        SpecAugment in training mode.
    dropout : float
        Dropout of the projection head.
    projection : {"ms", "laion"}
        The projection head (:func:`models.projection.build_projection`).
    audio_options : dict, optional
        Extra keyword arguments of the backbone builder (HTSAT: size, fusion,
        front end; Cnn14 takes none).

    Example
    -------
    >>> enc = AudioEncoder("Cnn14", 16000, 512, 160, 64, 50, 8000, 5, 32, 16,
    ...                    width=1 / 16).eval()
    >>> proj, clipwise = enc(torch.randn(2, 16000))
    >>> tuple(proj.shape), tuple(clipwise.shape)
    ((2, 16), (2, 5))
    """

    def __init__(
        self,
        audioenc_name,
        sample_rate,
        window_size,
        hop_size,
        mel_bins,
        fmin,
        fmax,
        classes_num,
        out_emb,
        d_proj,
        width=1.0,
        spec_augment=True,
        dropout=0.5,
        projection="ms",
        audio_options=None,
    ):
        super().__init__()
        self.base = build_audio_backbone(
            audioenc_name,
            sample_rate=sample_rate,
            window_size=window_size,
            hop_size=hop_size,
            mel_bins=mel_bins,
            fmin=fmin,
            fmax=fmax,
            classes_num=classes_num,
            out_emb=out_emb,
            width=width,
            spec_augment=spec_augment,
            **(audio_options or {}),
        )
        self.projection = build_projection(projection, out_emb, d_proj, p=dropout)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]``.

        Returns
        -------
        projected : torch.Tensor
            ``[B, d_proj]``, not normalised.
        clipwise : torch.Tensor
            ``[B, classes_num]`` AudioSet-style probabilities.
        """
        out = run_base(self, wav)
        return self.projection(out["embedding"]), out["clipwise_output"]


class CLAP(nn.Module):
    """Contrastive language-audio model (MS CLAP layout).

    MS CLAP 2022 is ``CLAP(**MSCLAP2022)``: Cnn14, 44100 Hz, window 1024,
    hop 320, 64 mels, 50-14000 Hz, 527 classes, ``out_emb`` 2048,
    ``"bert-base-uncased"`` (hidden 768, CLS pooling), ``d_proj`` 1024.

    Arguments
    ---------
    audioenc_name, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb
        See :class:`AudioEncoder`.
    text_model : str, os.PathLike or transformers.PretrainedConfig
        See :func:`models.text_encoder.build_text_model`; the text tower is
        chosen by its ``model_type`` (:func:`models.registry.build_text_encoder`).
    transformer_embed_dim : int
        Hidden size of the text model.
    d_proj : int
        Shared embedding size.
    audio_width : float
        Cnn14 channel multiplier.
    text_pooling : {"cls", "mean", "pooler", "last_token"}
        Token pooling of the text tower (:class:`models.text_encoder.TextEncoder`).
    pretrained_text : bool
        Load the text model's weights when available.
    spec_augment : bool
        SpecAugment in training mode.
    dropout : float
        Dropout of both projection heads.
    projection : {"ms", "laion"}
        The projection head of both towers: MS CLAP's (``"ms"``) or
        LAION-CLAP's MLP (``"laion"``).
    audio_options : dict, optional
        See :class:`AudioEncoder`.

    Example
    -------
    >>> from transformers import BertConfig
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=1,
    ...                  num_attention_heads=2, intermediate_size=37,
    ...                  vocab_size=100)
    >>> model = CLAP("Cnn14", 16000, 512, 160, 64, 50, 8000, 5, 32, cfg, 32,
    ...              16, audio_width=1 / 16).eval()
    >>> ids = torch.randint(0, 100, (2, 6))
    >>> a, t, scale = model(torch.randn(2, 16000), ids, torch.ones_like(ids))
    >>> tuple(a.shape), tuple(t.shape), round(scale.item(), 2)
    ((2, 16), (2, 16), 14.29)
    """

    def __init__(
        self,
        audioenc_name,
        sample_rate,
        window_size,
        hop_size,
        mel_bins,
        fmin,
        fmax,
        classes_num,
        out_emb,
        text_model,
        transformer_embed_dim,
        d_proj,
        audio_width=1.0,
        text_pooling="cls",
        pretrained_text=True,
        spec_augment=True,
        dropout=0.5,
        projection="ms",
        audio_options=None,
    ):
        super().__init__()
        self.audio_encoder = AudioEncoder(
            audioenc_name,
            sample_rate,
            window_size,
            hop_size,
            mel_bins,
            fmin,
            fmax,
            classes_num,
            out_emb,
            d_proj,
            width=audio_width,
            spec_augment=spec_augment,
            dropout=dropout,
            projection=projection,
            audio_options=audio_options,
        )
        self.caption_encoder = build_text_encoder(
            text_model,
            transformer_embed_dim,
            d_proj,
            pooling=text_pooling,
            pretrained=pretrained_text,
            dropout=dropout,
            projection=projection,
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_audio(self, wav: torch.Tensor) -> torch.Tensor:
        """L2-normalised audio embeddings ``[B, d_proj]``.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` at ``sample_rate``.

        Returns
        -------
        torch.Tensor
            Unit-norm rows.
        """
        return F.normalize(self.audio_encoder(wav)[0], dim=-1)

    def encode_text(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """L2-normalised text embeddings ``[B, d_proj]``.

        Arguments
        ---------
        input_ids, attention_mask : torch.Tensor
            ``[B, L]``.
        token_type_ids : torch.Tensor, optional
            ``[B, L]``.

        Returns
        -------
        torch.Tensor
            Unit-norm rows.
        """
        return F.normalize(self.caption_encoder(input_ids, attention_mask, token_type_ids), dim=-1)

    def forward(self, wav, input_ids, attention_mask, token_type_ids=None):
        """Embed both modalities.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]``.
        input_ids, attention_mask : torch.Tensor
            ``[B', L]``.
        token_type_ids : torch.Tensor, optional
            ``[B', L]``.

        Returns
        -------
        audio_emb : torch.Tensor
            ``[B, d_proj]``, unit norm.
        text_emb : torch.Tensor
            ``[B', d_proj]``, unit norm.
        logit_scale : torch.Tensor
            ``exp(self.logit_scale)`` (scalar).
        """
        return (
            self.encode_audio(wav),
            self.encode_text(input_ids, attention_mask, token_type_ids),
            self.logit_scale.exp(),
        )
