"""Published CLAP checkpoints in our state-dict layout, and the architecture each file implies.

Three foreign layouts are read (every load is safe: :func:`models.checkpoints.read_state_dict`):

- **LAION-CLAP** ``.pt`` (``630k-audioset-best.pt``, ``*-fusion-best.pt``,
  ``music_audioset_epoch_15_esc_90.14.pt``, ...): ``{"state_dict": sd, ...}``
  or a bare ``sd``, keys ``audio_branch.``, ``audio_projection.``,
  ``text_branch.`` (``text_model.`` in some exports), ``text_projection.``,
  ``logit_scale_a`` / ``logit_scale_t`` and the training-only
  ``audio_transform.`` / ``text_transform.`` MLPs;
- **MS CLAP 2023** ``CLAP_weights_2023.pth``: ``{"model": sd}`` with our key
  names except that the HTS-AT sits under ``audio_encoder.base.htsat.``;
- **Hugging Face** ``ClapModel`` folders (``laion/clap-htsat-unfused``, ...):
  ``config.json`` + ``model.safetensors`` (or ``pytorch_model.bin``), whose
  key names (:func:`hf_to_laion`) are mapped to LAION's, then to ours.

:func:`convert_state_dict` turns any of them into ours (``audio_encoder.base.*``,
``audio_encoder.projection.*``, ``caption_encoder.base.*``,
``caption_encoder.projection.*``, ``logit_scale``), dropping the buffers our
modules rebuild (``position_ids``, ``attn_mask``, ``relative_position_index``,
GPT-2's causal ``attn.bias`` / ``attn.masked_bias``) and what only training
used (``logit_scale_t``, ``*_transform``). :func:`infer_architecture` reads
the model keys (:data:`models.factory.ARCHITECTURE_KEYS`) from the file:
HTS-AT size and fusion from tensor shapes and key names, the text tower from
its embedding table, the rest from the published front ends
(:mod:`models.presets`).
"""

from __future__ import annotations

import json
import logging
import os
import re

import torch

from models.checkpoints import CheckpointMismatchError, read_state_dict

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS", "LAION_EXPECTED", "MS2023_EXPECTED", "HF_EXPECTED", "detect_format", "read_any_state_dict",
    "laion_to_ours", "ours_to_laion", "ms2023_to_ours", "hf_to_laion", "convert_state_dict", "infer_architecture",
    "read_checkpoint", "IGNORED_SUFFIXES", "FORMAT_NAMES", "HF_ABSENT_PREFIXES", "matching_presets",
    "load_any_clap_checkpoint",
]

#: File layouts :func:`detect_format` tells apart. ``clap``: our layout (MS CLAP 2022, our runs' files).
FORMATS = ("clap", "ms_clap_2023", "laion", "hf")

LAION_EXPECTED = (
    "expected a LAION-CLAP checkpoint ({'state_dict': ...} with audio_branch.*, audio_projection.*, text_branch.* "
    "and text_projection.* keys, e.g. 630k-audioset-best.pt)"
)
MS2023_EXPECTED = (
    "expected the MS CLAP 2023 checkpoint ({'model': ...} with audio_encoder.base.htsat.* and caption_encoder.* "
    "keys, CLAP_weights_2023.pth)"
)
HF_EXPECTED = (
    "expected a Hugging Face ClapModel folder (config.json with model_type 'clap' and model.safetensors or "
    "pytorch_model.bin), e.g. a download of laion/clap-htsat-unfused"
)

#: Buffers our modules rebuild from their configuration (never read from a file).
IGNORED_SUFFIXES = (".position_ids", ".attn_mask", ".relative_position_index", ".token_type_ids",
                    ".attn.masked_bias")
_GPT2_CAUSAL_MASK = re.compile(r"^caption_encoder\.base\.h\.\d+\.attn\.bias$")
_LAION_PREFIXES = (
    ("audio_branch.", "audio_encoder.base."),
    ("audio_projection.", "audio_encoder.projection."),
    ("text_branch.", "caption_encoder.base."),
    ("text_model.", "caption_encoder.base."),
    ("text_projection.", "caption_encoder.projection."),
)
_LAION_DROPPED = ("audio_transform.", "text_transform.", "logit_scale_t")


def _strip_module(state):
    prefix = "module."
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _ignored(key):
    return key.endswith(IGNORED_SUFFIXES) or bool(_GPT2_CAUSAL_MASK.match(key))


# ------------------------------------------------------------ format detection
def _is_hf_folder(path):
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return False
    with open(config, encoding="utf-8") as f:
        return json.load(f).get("model_type") == "clap"


def detect_format(path, state=None):
    """The layout of a checkpoint (one of :data:`FORMATS`), or None when it is none of them.

    Arguments
    ---------
    path : str
        A file, or a Hugging Face ``ClapModel`` folder.
    state : dict, optional
        The file's state dict, when already read.

    Example
    -------
    >>> detect_format("x.pt", {"audio_branch.bn0.weight": torch.ones(1)}), detect_format("x.pt", {"w": 1})
    ('laion', None)
    """
    if state is None and os.path.isdir(path):
        return "hf" if _is_hf_folder(path) else None
    keys = list(state)
    if any(k.startswith("audio_branch.") for k in keys):
        return "laion"
    if any(k.startswith("audio_encoder.base.htsat.") for k in keys):
        return "ms_clap_2023"
    if any(k.startswith("audio_encoder.") for k in keys) or any(k.startswith("caption_encoder.") for k in keys):
        return "clap"
    if any(k.startswith("audio_model.audio_encoder.") for k in keys):
        return "hf"
    return None


def _read_hf_weights(folder):
    safetensors = os.path.join(folder, "model.safetensors")
    if os.path.isfile(safetensors):
        from safetensors.torch import load_file

        return load_file(safetensors, device="cpu")
    binary = os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(binary):
        return read_state_dict(binary, HF_EXPECTED)
    raise CheckpointMismatchError(folder, expected=HF_EXPECTED + "; found no model.safetensors nor pytorch_model.bin")


def read_any_state_dict(path, expected=""):
    """``(format, state dict as in the file, hf config or None)`` of a checkpoint file or HF folder.

    A leading ``module.`` is stripped from the keys. A folder that is not a
    ``ClapModel`` folder raises :class:`CheckpointMismatchError`.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if not _is_hf_folder(path):
            found = sorted(os.listdir(path))[:20]
            raise CheckpointMismatchError(path, expected=(expected or HF_EXPECTED) + f"; the folder holds {found}")
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        return "hf", _strip_module(_read_hf_weights(path)), config
    state = read_state_dict(path, expected)
    return detect_format(path, state), state, None


# ------------------------------------------------------------------ key maps
def laion_to_ours(state):
    """A LAION-CLAP state dict (``module.`` already stripped or not) in our layout.

    Example
    -------
    >>> sd = {"module.audio_branch.bn0.weight": 1, "text_branch.embeddings.position_ids": 2,
    ...       "text_projection.0.weight": 3, "logit_scale_a": 4, "logit_scale_t": 5, "audio_transform.x": 6,
    ...       "audio_branch.layers.0.blocks.0.attn_mask": 7}
    >>> laion_to_ours(sd)
    {'audio_encoder.base.bn0.weight': 1, 'caption_encoder.projection.0.weight': 3, 'logit_scale': 4}
    """
    out = {}
    for key, value in _strip_module(state).items():
        if key.startswith(_LAION_DROPPED):
            continue
        if key == "logit_scale_a":
            out["logit_scale"] = value
            continue
        for theirs, ours in _LAION_PREFIXES:
            if key.startswith(theirs):
                key = ours + key[len(theirs):]
                break
        if not _ignored(key):
            out[key] = value
    return out


def ours_to_laion(state):
    """Our state dict in LAION-CLAP's layout (the inverse of :func:`laion_to_ours`), as its training saves it.

    Example
    -------
    >>> ours_to_laion({"audio_encoder.base.bn0.weight": 1, "caption_encoder.projection.0.weight": 3,
    ...                "logit_scale": 4})
    {'module.audio_branch.bn0.weight': 1, 'module.text_projection.0.weight': 3, 'module.logit_scale_a': 4}
    """
    out = {}
    for key, value in state.items():
        if key == "logit_scale":
            key = "logit_scale_a"
        for theirs, ours in _LAION_PREFIXES:
            if theirs != "text_model." and key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        out["module." + key] = value
    return out


def ms2023_to_ours(state):
    """The MS CLAP 2023 state dict in our layout (``audio_encoder.base.htsat.`` -> ``audio_encoder.base.``).

    Example
    -------
    >>> ms2023_to_ours({"audio_encoder.base.htsat.bn0.weight": 1, "caption_encoder.base.h.0.attn.bias": 2,
    ...                 "caption_encoder.base.h.0.attn.c_attn.bias": 3, "logit_scale": 4})
    {'audio_encoder.base.bn0.weight': 1, 'caption_encoder.base.h.0.attn.c_attn.bias': 3, 'logit_scale': 4}
    """
    old, new = "audio_encoder.base.htsat.", "audio_encoder.base."
    out = {}
    for key, value in _strip_module(state).items():
        if key.startswith(old):
            key = new + key[len(old):]
        if not _ignored(key):
            out[key] = value
    return out


_HF_BLOCK = [
    ("layernorm_before.", "norm1."),
    ("attention.output.dense.", "attn.proj."),
    ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attention.self.relative_position_index", "attn.relative_position_index"),
    ("layernorm_after.", "norm2."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
]
_HF_QKV = re.compile(r"^(audio_branch\.layers\.\d+\.blocks\.\d+\.)attention\.self\.(query|key|value)\.(weight|bias)$")


def hf_to_laion(state):
    """A ``transformers`` ``ClapModel`` state dict with LAION-CLAP's key names.

    ``audio_model.audio_encoder.`` -> ``audio_branch.`` (``batch_norm`` -> ``bn0``;
    per block ``layernorm_before`` -> ``norm1``, the separate ``query`` / ``key``
    / ``value`` concatenated into ``attn.qkv``, ``attention.output.dense`` ->
    ``attn.proj``, ``layernorm_after`` -> ``norm2``, ``intermediate.dense`` /
    ``output.dense`` -> ``mlp.fc1`` / ``mlp.fc2``); ``text_model.`` ->
    ``text_branch.``; the projections' ``linear1`` / ``linear2`` -> ``0`` / ``2``
    (LAION's ``Sequential(Linear, ReLU, Linear)``). The transformers model has
    no front end, ``tscam_conv`` nor ``head``: those keys are absent.

    Example
    -------
    >>> w = {f"audio_model.audio_encoder.layers.0.blocks.0.attention.self.{n}.weight": torch.full((1, 2), float(i))
    ...      for i, n in enumerate(["query", "key", "value"])}
    >>> sd = hf_to_laion({**w, "audio_projection.linear2.bias": 1, "audio_model.audio_encoder.batch_norm.weight": 2})
    >>> sorted(sd)
    ['audio_branch.bn0.weight', 'audio_branch.layers.0.blocks.0.attn.qkv.weight', 'audio_projection.2.bias']
    >>> sd["audio_branch.layers.0.blocks.0.attn.qkv.weight"][:, 0].tolist()
    [0.0, 1.0, 2.0]
    """
    out, qkv = {}, {}
    for key, value in _strip_module(state).items():
        if key.startswith("audio_model.audio_encoder."):
            key = "audio_branch." + key[len("audio_model.audio_encoder."):]
            if key.startswith("audio_branch.batch_norm."):
                key = "audio_branch.bn0." + key[len("audio_branch.batch_norm."):]
            match = _HF_QKV.match(key)
            if match:
                qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
                continue
            if ".blocks." in key:
                head, _, tail = key.partition(".blocks.")
                index, _, rest = tail.partition(".")
                for theirs, ours in _HF_BLOCK:
                    if rest.startswith(theirs):
                        rest = ours + rest[len(theirs):]
                        break
                key = f"{head}.blocks.{index}.{rest}"
        elif key.startswith("text_model."):
            key = "text_branch." + key[len("text_model."):]
        elif key.startswith(("audio_projection.", "text_projection.")):
            key = key.replace(".linear1.", ".0.").replace(".linear2.", ".2.")
        out[key] = value
    for (block, kind), parts in qkv.items():
        missing = [p for p in ("query", "key", "value") if p not in parts]
        if missing:
            raise CheckpointMismatchError("<Hugging Face folder>", missing=[
                f"audio_model.audio_encoder.{block[len('audio_branch.'):]}attention.self.{p}.{kind}" for p in missing])
        out[f"{block}attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def convert_state_dict(fmt, state):
    """``state`` (of layout ``fmt``, :data:`FORMATS`) in our layout."""
    if fmt == "laion":
        return laion_to_ours(state)
    if fmt == "hf":
        return laion_to_ours(hf_to_laion(state))
    if fmt == "ms_clap_2023":
        return ms2023_to_ours(state)
    if fmt == "clap":
        return {k: v for k, v in _strip_module(state).items() if not _ignored(k) or k.endswith(".position_ids")}
    raise ValueError(f"unknown checkpoint format {fmt!r}; one of {FORMATS}")


# --------------------------------------------------------- architecture
_HTSAT_SIZES = {96: "tiny", 128: "base", 256: "large"}


def _htsat_options(state, prefix="audio_encoder.base."):
    """HTS-AT ``audio_options`` from the backbone's tensors (size, depths, fusion)."""
    patch = state.get(prefix + "patch_embed.proj.weight")
    if patch is None:
        return None, None
    embed_dim = int(patch.shape[0])
    depths = []
    for layer in range(16):
        blocks = {int(m.group(1)) for k in state for m in [re.match(
            re.escape(f"{prefix}layers.{layer}.blocks.") + r"(\d+)\.", k)] if m}
        if not blocks:
            break
        depths.append(max(blocks) + 1)
    size = _HTSAT_SIZES.get(embed_dim)
    options = {"size": size} if size else {"embed_dim": embed_dim}
    published = {"tiny": [2, 2, 6, 2], "base": [2, 2, 12, 2], "large": [2, 2, 12, 2]}
    if size is None or depths != published[size]:
        options = {"embed_dim": embed_dim, "depths": depths}
        table = prefix + "layers.{}.blocks.0.attn.relative_position_bias_table"
        heads = [state.get(table.format(i)) for i in range(len(depths))]
        if all(h is not None for h in heads):
            options["num_heads"] = [int(h.shape[1]) for h in heads]
            options["swin_window_size"] = int((round(int(heads[0].shape[0]) ** 0.5) + 1) // 2)
    if prefix + "patch_embed.mel_conv2d.weight" in state:
        options["enable_fusion"] = True
        if prefix + "patch_embed.fusion_model.local_att2.0.weight" in state:
            options["fusion_type"] = "iaff_2d"
        elif prefix + "patch_embed.fusion_model.local_att.0.weight" in state:
            options["fusion_type"] = "aff_2d"
        else:
            options["fusion_type"] = "daf_2d"
        options["frontend"] = "htk"
    num_features = state.get(prefix + "norm.weight")
    out_emb = int(num_features.shape[0]) if num_features is not None else embed_dim * 8
    return options, out_emb


def _text_tower(state, path):
    """``(hub name, hidden size)`` of the text tower in our layout's ``caption_encoder.base.``."""
    prefix = "caption_encoder.base."
    if prefix + "wte.weight" in state:
        return "gpt2", int(state[prefix + "wte.weight"].shape[1])
    if prefix + "shared.weight" in state:
        return "facebook/bart-base", int(state[prefix + "shared.weight"].shape[1])
    words = state.get(prefix + "embeddings.word_embeddings.weight")
    types = state.get(prefix + "embeddings.token_type_embeddings.weight")
    if words is not None:
        vocab, hidden = (int(n) for n in words.shape)
        if types is not None and int(types.shape[0]) == 1 or vocab == 50265:
            return "roberta-base", hidden
        return "bert-base-uncased", hidden
    found = sorted({k.split(".")[2] for k in state if k.startswith(prefix) and k.count(".") >= 2})[:10]
    raise CheckpointMismatchError(path, expected=(
        "a text tower this project supports (RoBERTa, BERT, BART, GPT-2) under the file's text branch; found "
        f"{found or 'no text branch'} (LAION's CLIP-style 'transformer' text tower is not supported)"))


def _hf_htsat_options(audio):
    """HTS-AT ``audio_options`` from a transformers ``ClapAudioConfig`` (its defaults where a value is absent)."""
    from transformers import ClapAudioConfig

    defaults = ClapAudioConfig().to_dict()
    value = {k: audio.get(k, defaults.get(k)) for k in ("spec_size", "patch_size", "patch_stride",
                                                        "patch_embeds_hidden_size", "depths", "num_attention_heads",
                                                        "window_size")}
    stride = value["patch_stride"]
    stride = list(stride) if isinstance(stride, (list, tuple)) else [stride, stride]
    if stride[0] != stride[1]:
        raise ValueError(f"config.json patch_stride {stride}: only square strides are supported")
    explicit = {"spec_size": int(value["spec_size"]), "patch_size": int(value["patch_size"]),
                "patch_stride": int(stride[0]), "embed_dim": int(value["patch_embeds_hidden_size"]),
                "depths": [int(d) for d in value["depths"]],
                "num_heads": [int(h) for h in value["num_attention_heads"]],
                "swin_window_size": int(value["window_size"])}
    from models.htsat import htsat_config

    for size in ("tiny", "base", "large"):
        cfg = htsat_config(size)
        if all(list(cfg[k]) == v if isinstance(v, list) else cfg[k] == v for k, v in explicit.items()):
            return {"size": size}
    return {"size": None, **explicit}


def infer_architecture(fmt, state, path="", hf_config=None):
    """The model keys a converted state dict (:func:`convert_state_dict`) implies.

    Arguments
    ---------
    fmt : str
        :data:`FORMATS` (``clap``: nothing is inferred, an empty dict).
    state : dict
        The state dict in our layout.
    path : str
        For error messages.
    hf_config : dict, optional
        A Hugging Face folder's ``config.json``.

    Returns
    -------
    dict
        Architecture keys (:data:`models.factory.ARCHITECTURE_KEYS`): the
        published front end of the family, the HTS-AT ``audio_options`` and
        ``out_emb`` read from the tensors, the text tower, ``d_proj``.
    """
    from models.presets import PRESETS

    if fmt == "clap":
        return {}
    if fmt == "ms_clap_2023":
        arch = dict(PRESETS["ms_clap_2023"])
        options, out_emb = _htsat_options(state)
        if options is not None:
            options.setdefault("filterbank_sample_rate", 32000)
            arch["audio_options"] = {**arch.get("audio_options", {}), **options}
            arch["out_emb"] = out_emb
        return arch
    base = dict(PRESETS["laion_630k_audioset"])
    options, out_emb = _htsat_options(state)
    if options is None:
        raise CheckpointMismatchError(path, missing=["audio_encoder.base.patch_embed.proj.weight"],
                                      expected="an HTS-AT audio branch (LAION's PANN audio towers are not supported)")
    if options.get("enable_fusion"):
        base = dict(PRESETS["laion_630k_audioset_fusion"])
    base["audio_options"] = {**{k: v for k, v in base["audio_options"].items() if k != "size"}, **options}
    base["out_emb"] = out_emb
    base["text_model"], base["txt_emb_dim"] = _text_tower(state, path)
    if base["text_model"] != "roberta-base":
        base["text_pooling"] = "mean" if "bart" in base["text_model"] else "pooler"
    proj = state.get("audio_encoder.projection.2.weight")
    if proj is not None:
        base["d_proj"] = int(proj.shape[0])
    head = state.get("audio_encoder.base.head.weight")
    if head is not None:
        base["classes_num"] = int(head.shape[0])
    if hf_config:
        audio = hf_config.get("audio_config") or {}
        base["audio_options"] = {**_hf_htsat_options(audio), **{
            k: v for k, v in base["audio_options"].items() if k in ("enable_fusion", "fusion_type", "frontend")}}
        for ours, theirs in (("mel_bins", "num_mel_bins"), ("classes_num", "num_classes")):
            if theirs in audio:
                base[ours] = audio[theirs]
        if hf_config.get("projection_dim"):
            base["d_proj"] = hf_config["projection_dim"]
        if audio.get("enable_fusion") and not base["audio_options"].get("enable_fusion"):
            raise CheckpointMismatchError(path, expected="config.json says enable_fusion but the weights have no "
                                                         "fusion layers (patch_embed.mel_conv2d)")
    return base


def read_checkpoint(path, expected=""):
    """``(format, state dict in our layout, inferred architecture keys)`` of any supported checkpoint.

    Raises
    ------
    CheckpointMismatchError
        A file of no known layout (its keys are listed).
    """
    fmt, state, config = read_any_state_dict(path, expected)
    if fmt is None:
        raise CheckpointMismatchError(path, unexpected=sorted(state)[:40], expected=(
            expected or "expected a CLAP checkpoint") + "; its keys match no known layout (MS CLAP, LAION-CLAP .pt, "
            "MS CLAP 2023, Hugging Face ClapModel)")
    ours = convert_state_dict(fmt, state)
    return fmt, ours, infer_architecture(fmt, ours, path, config)


#: Human names of the formats, for messages.
FORMAT_NAMES = {"clap": "MS CLAP / our layout", "ms_clap_2023": "MS CLAP 2023", "laion": "LAION-CLAP .pt",
                "hf": "Hugging Face ClapModel folder"}
#: Front-end buffers (computed from the configuration): a file may lack them; the model keeps its own.
FRONTEND_PREFIXES = tuple("audio_encoder.base." + p for p in ("spectrogram_extractor.", "logmel_extractor.",
                                                              "htk_logmel."))
#: Backbone modules a transformers ``ClapModel`` does not have (its front end is the feature extractor;
#: it has no token-semantic head): our model keeps its own (deterministic front end, unused head).
HF_ABSENT_PREFIXES = FRONTEND_PREFIXES + ("audio_encoder.base.tscam_conv.", "audio_encoder.base.head.")


def matching_presets(arch):
    """Names of the presets (:mod:`models.presets`) whose keys equal ``arch`` apart from the text model's location."""
    from models.presets import PRESETS

    keys = [k for k in arch if k != "text_model"]
    return [name for name, preset in PRESETS.items() if all(preset.get(k) == arch.get(k) for k in keys)]


def _architecture_hint(arch):
    if not arch:
        return ""
    names = matching_presets(arch)
    shown = ", ".join(f"{k}={arch[k]!r}" for k in ("audioenc_name", "audio_options", "out_emb", "text_model",
                                                   "txt_emb_dim", "d_proj", "projection", "text_pooling") if k in arch)
    return (f"; the file implies {shown}" + (f" (--model={names[0]})" if names else "")
            + "; build the model with those keys (--model=<preset> on a recipe)")


def load_any_clap_checkpoint(model, path, expected=None, checkpoint=None):
    """Loads a CLAP checkpoint of any supported layout (:data:`FORMATS`) into ``model``.

    Our layout (MS CLAP 2022, our files) goes through
    :func:`models.checkpoints.load_clap_checkpoint`; LAION ``.pt``, MS CLAP 2023
    and Hugging Face folders are converted first (:func:`convert_state_dict`)
    and then must fit key for key and shape for shape, except BatchNorm
    ``num_batches_tracked`` and, for a Hugging Face folder, the modules it
    does not have (:data:`HF_ABSENT_PREFIXES`).

    Arguments
    ---------
    model : models.clap.CLAP
        Built with the file's architecture (:func:`infer_architecture`).
    path : str
        File or Hugging Face folder.
    expected : str, optional
        What the caller expected (added to errors).
    checkpoint : tuple, optional
        ``(format, state in our layout, architecture)`` from :func:`read_checkpoint`,
        when the file was already read.

    Returns
    -------
    str
        The format loaded (:data:`FORMATS`).

    Raises
    ------
    CheckpointMismatchError
        Listing missing, unexpected and mis-shaped keys, and the architecture
        the file implies.
    """
    from models.checkpoints import CLAP_EXPECTED, _compare, _load, _tolerate_bn_counters, load_clap_checkpoint

    expected = expected or CLAP_EXPECTED
    if checkpoint is None:
        fmt, state, config = read_any_state_dict(path, expected)
        if fmt is None:
            raise CheckpointMismatchError(path, unexpected=sorted(state)[:40], expected=(
                f"{expected}; its keys match no known layout (MS CLAP, LAION-CLAP .pt, MS CLAP 2023, Hugging Face "
                "ClapModel)"))
        if fmt == "clap":
            load_clap_checkpoint(model, path, expected, state=state)
            return fmt
        ours = convert_state_dict(fmt, state)
        arch = infer_architecture(fmt, ours, path, config)
    else:
        fmt, ours, arch = checkpoint
        if fmt == "clap":
            load_clap_checkpoint(model, path, expected, state=ours)
            return fmt
    missing, unexpected, mismatched = _compare(model, ours)
    missing, _ = _tolerate_bn_counters(missing, ours)
    kept = [k for k in missing if k.startswith(HF_ABSENT_PREFIXES if fmt == "hf" else FRONTEND_PREFIXES)]
    missing = [k for k in missing if k not in kept]
    if kept:
        logger.info("%s: the file has no %d front-end%s entries; kept the model's.", path, len(kept),
                    " / head" if fmt == "hf" else "")
    _load(model, ours, missing, unexpected, mismatched, path,
          f"{expected} (read as {FORMAT_NAMES[fmt]})" + (_architecture_hint(arch) if missing or unexpected
                                                          or mismatched else ""))
    return fmt
