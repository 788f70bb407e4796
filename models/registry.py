"""The audio and text towers CLAP can be built with: one entry per architecture.

Adding an architecture is one entry here:

- an **audio backbone** is registered under its ``audioenc_name`` (the YAML
  key) with :func:`register_audio_encoder`; its builder takes the front-end
  and size options every backbone shares (``sample_rate``, ``window_size``,
  ``hop_size``, ``mel_bins``, ``fmin``, ``fmax``, ``classes_num``,
  ``out_emb``, ``width``, ``spec_augment``) plus the YAML's ``audio_options``
  mapping as keyword arguments (an error for options it does not know), and
  returns a module whose
  ``forward(wav [B, T])`` gives ``{"embedding": [B, out_emb],
  "clipwise_output": [B, classes_num]}``;
- a **text tower** is registered under the Hugging Face ``model_type`` of its
  transformer (``bert``, ...) with :func:`register_text_encoder`; its
  builder returns the transformer, its token pooling and its projection
  (:class:`models.text_encoder.TextEncoder`). Encoder-only models of any
  other type use the default entry (``AutoModel`` + the YAML's
  ``text_pooling``). How its captions are tokenised (suffix, pad token,
  token limit) is :data:`models.text_encoder.TEXT_PREPROCESSING`, by the
  same ``model_type``.

:mod:`models.clap` builds its towers only through :func:`build_audio_backbone`
and :func:`build_text_encoder`, and :mod:`models.factory` builds every CLAP
from the YAML keys, so a registered tower is available to every recipe, the
curation and evaluation scripts, the inference API and the index at once.
"""

from __future__ import annotations

import inspect
import os

from models.cnn14 import Cnn14
from models.htsat import HTSAT, htsat_config
from models.text_encoder import TextEncoder, text_model_type

__all__ = [
    "AUDIO_ENCODERS",
    "TEXT_ENCODERS",
    "DEFAULT_TEXT_ENCODER",
    "register_audio_encoder",
    "register_text_encoder",
    "build_audio_backbone",
    "build_text_encoder",
]

#: ``audioenc_name`` -> builder of the audio backbone.
AUDIO_ENCODERS = {}
#: Hugging Face ``model_type`` -> builder of the text tower.
TEXT_ENCODERS = {}
#: Key of the text tower used for a ``model_type`` with no entry of its own.
DEFAULT_TEXT_ENCODER = "default"


def register_audio_encoder(name):
    """Decorator registering an audio backbone builder under ``name`` (the YAML's ``audioenc_name``).

    Example
    -------
    >>> @register_audio_encoder("Example")
    ... def _example(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb,
    ...              width=1.0, spec_augment=True):
    ...     return None
    >>> "Example" in AUDIO_ENCODERS
    True
    >>> del AUDIO_ENCODERS["Example"]
    """

    def decorator(builder):
        if name in AUDIO_ENCODERS:
            raise ValueError(f"An audio encoder named {name!r} is already registered.")
        AUDIO_ENCODERS[name] = builder
        return builder

    return decorator


def register_text_encoder(*model_types):
    """Decorator registering a text tower builder for Hugging Face ``model_type`` values."""

    def decorator(builder):
        for model_type in model_types:
            if model_type in TEXT_ENCODERS:
                raise ValueError(f"A text encoder for model_type {model_type!r} is already registered.")
            TEXT_ENCODERS[model_type] = builder
        return builder

    return decorator


def build_audio_backbone(name, **options):
    """The audio backbone registered as ``name``, built with ``options``.

    Arguments
    ---------
    name : str
        ``audioenc_name`` (``Cnn14``, ...).
    **options
        The shared backbone options (see the module docstring).

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> net = build_audio_backbone("Cnn14", sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
    ...                            fmin=50, fmax=8000, classes_num=5, out_emb=32, width=1 / 16)
    >>> type(net).__name__
    'Cnn14'
    >>> build_audio_backbone("AST")
    Traceback (most recent call last):
    ...
    ValueError: unknown audio encoder 'AST' (audioenc_name); supported: ['Cnn14', 'HTSAT']
    """
    if name not in AUDIO_ENCODERS:
        raise ValueError(f"unknown audio encoder {name!r} (audioenc_name); supported: {sorted(AUDIO_ENCODERS)}")
    return AUDIO_ENCODERS[name](**options)


def build_text_encoder(text_model, transformer_embed_dim, d_proj, pooling="cls", pretrained=True, dropout=0.5,
                       projection="ms"):
    """The text tower for ``text_model``, chosen by its transformer's ``model_type``.

    Arguments
    ---------
    text_model : str, os.PathLike or transformers.PretrainedConfig
        Hub name, local folder, offline MiniLM alias or config (see
        :func:`models.text_encoder.build_text_model`).
    transformer_embed_dim : int
        Hidden size of the transformer (YAML ``txt_emb_dim``).
    d_proj : int
        Shared embedding size.
    pooling : str
        Token pooling (YAML ``text_pooling``).
    pretrained : bool
        Load the transformer's weights when available.
    dropout : float
        Dropout of the projection head.
    projection : str
        Projection head (YAML ``projection``: ``ms`` or ``laion``).

    Returns
    -------
    torch.nn.Module
        ``forward(input_ids, attention_mask, token_type_ids=None) -> [B, d_proj]``.
    """
    model_type = text_model_type(text_model)
    builder = TEXT_ENCODERS.get(model_type, TEXT_ENCODERS[DEFAULT_TEXT_ENCODER])
    return builder(text_model, transformer_embed_dim, d_proj, pooling=pooling, pretrained=pretrained, dropout=dropout,
                   projection=projection)


# ------------------------------------------------------------------ entries
@register_audio_encoder("Cnn14")
def _cnn14(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb, width=1.0,
           spec_augment=True, **audio_options):
    # PANNs CNN14, the audio tower of MS CLAP 2022 (parameter names as in PANNs).
    if audio_options:
        raise ValueError(f"audio_options {sorted(audio_options)} are not options of Cnn14 (it takes none): "
                         "set audio_options: null")
    return Cnn14(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb, width=width,
                 spec_augment=spec_augment)


@register_audio_encoder("HTSAT")
def _htsat(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb, width=1.0,
           spec_augment=True, **audio_options):
    # HTS-AT, the audio tower of LAION-CLAP and MS CLAP 2023 (parameter names as in their code);
    # audio_options: size / explicit architecture, fusion, front end (models.htsat.HTSAT).
    if width != 1:
        raise ValueError(f"audio_width={width}: HTSAT has no width multiplier; set audio_width: 1.0 and choose "
                         "the size in audio_options (size: tiny | base | large, or embed_dim / depths / ...)")
    known = set(inspect.signature(HTSAT).parameters) - set(inspect.signature(_htsat).parameters)
    unknown = sorted(set(audio_options) - known)
    if unknown:
        raise ValueError(f"audio_options {unknown} are not options of HTSAT; known: {sorted(known)}")
    arch = {k: audio_options.get(k) for k in ("spec_size", "patch_size", "patch_stride", "embed_dim", "depths",
                                              "num_heads", "swin_window_size")}
    num_features = htsat_config(audio_options.get("size", "tiny"), **arch)["num_features"]
    if out_emb != num_features:
        raise ValueError(f"out_emb={out_emb} but this HTSAT's embedding has {num_features} values "
                         "(embed_dim * 2 ** (stages - 1): tiny 768, base 1024, large 2048); set out_emb: "
                         f"{num_features}")
    return HTSAT(sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num,
                 spec_augment=spec_augment, **audio_options)


@register_text_encoder("bert", "roberta", DEFAULT_TEXT_ENCODER)
def _transformer_encoder(text_model, transformer_embed_dim, d_proj, pooling="cls", pretrained=True, dropout=0.5,
                         projection="ms"):
    # BERT (MS CLAP 2022: CLS token of the last hidden state, MS head), RoBERTa
    # (LAION-CLAP: text_pooling pooler, projection laion; captions of at most
    # 77 tokens) and, by default, any encoder-only AutoModel with the pooling
    # and head the YAML asks for.
    if isinstance(text_model, os.PathLike):
        text_model = os.fspath(text_model)
    return TextEncoder(text_model, transformer_embed_dim, d_proj, pooling=pooling, pretrained=pretrained,
                       dropout=dropout, projection=projection)


@register_text_encoder("gpt2")
def _gpt2(text_model, transformer_embed_dim, d_proj, pooling="last_token", pretrained=True, dropout=0.5,
          projection="ms"):
    # MS CLAP 2023: GPT-2, the hidden state of the last token (text_pooling
    # last_token), MS head; captions + ' <|endoftext|>', '!' as pad, 77 tokens
    # (models.text_encoder.TEXT_PREPROCESSING). GPT-2 is causal: its first
    # token sees only itself, so "cls" (and "pooler": it has none) is refused.
    if pooling not in ("last_token", "mean"):
        raise ValueError(
            f"text_pooling {pooling!r} does not apply to GPT-2 (a causal model: its first token sees only itself, "
            "and it has no pooler): set text_pooling: last_token (MS CLAP 2023) or mean"
        )
    if isinstance(text_model, os.PathLike):
        text_model = os.fspath(text_model)
    return TextEncoder(text_model, transformer_embed_dim, d_proj, pooling=pooling, pretrained=pretrained,
                       dropout=dropout, projection=projection)
