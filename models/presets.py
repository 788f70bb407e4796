"""Architecture presets of the published CLAP models: ``--model=<name>`` on every recipe.

Each preset is a YAML file ``hparams/models/<name>.yaml`` holding exactly the
model keys (:data:`PRESET_KEYS`, the recipes' own YAML names). ``--model=<name>``
(or ``--model=<path to such a YAML>``) sets them all as overrides; flags given
explicitly win (:class:`experiment.command_line.CommandLine`). The inference
API and the checkpoint converters (:mod:`models.convert`) read the same files.

=============================  =================================================================
name                           checkpoint
=============================  =================================================================
ms_clap_2022                   ``CLAP_weights_2022.pth`` (CNN14 + BERT)
ms_clap_2023                   ``CLAP_weights_2023.pth`` (HTS-AT tiny + GPT-2)
laion_630k                     ``630k-best.pt`` (HTS-AT tiny + RoBERTa)
laion_630k_audioset            ``630k-audioset-best.pt``
laion_630k_fusion              ``630k-fusion-best.pt`` (fused)
laion_630k_audioset_fusion     ``630k-audioset-fusion-best.pt`` (fused)
laion_music_audioset           ``music_audioset_epoch_15_esc_90.14.pt`` (HTS-AT base)
laion_clap_htsat_unfused       Hugging Face ``laion/clap-htsat-unfused``
laion_clap_htsat_fused         Hugging Face ``laion/clap-htsat-fused``
laion_larger_clap_general      Hugging Face ``laion/larger_clap_general`` (HTS-AT base)
=============================  =================================================================
"""

from __future__ import annotations

import os

import yaml

__all__ = ["PRESET_DIR", "PRESET_KEYS", "PRESETS", "preset_names", "load_preset"]

#: Folder of the preset YAML files.
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hparams", "models")

#: The keys every preset sets (:data:`models.factory.ARCHITECTURE_KEYS` plus the HTS-AT / LAION ones).
PRESET_KEYS = (
    "audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "classes_num", "out_emb",
    "text_model", "txt_emb_dim", "d_proj", "audio_width", "text_pooling", "projection", "audio_options",
    "text_max_length", "eval_duration",
)


def preset_names():
    """The preset names (YAML files of :data:`PRESET_DIR`), sorted.

    Example
    -------
    >>> "laion_630k_audioset" in preset_names() and "ms_clap_2023" in preset_names()
    True
    """
    if not os.path.isdir(PRESET_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml"))


def load_preset(name_or_path):
    """The model keys of a preset: a name of :func:`preset_names` or the path of a YAML file of model keys.

    Raises
    ------
    SystemExit
        Naming the known presets when ``name_or_path`` is neither, or when
        the file holds other keys.

    Example
    -------
    >>> arch = load_preset("laion_music_audioset")
    >>> arch["audioenc_name"], arch["audio_options"], arch["out_emb"], arch["sample_rate"]
    ('HTSAT', {'size': 'base'}, 1024, 48000)
    """
    text = os.fspath(name_or_path)
    path = text if text.endswith((".yaml", ".yml")) or os.sep in text else os.path.join(PRESET_DIR, text + ".yaml")
    if not os.path.isfile(path):
        raise SystemExit(f"--model={text}: no such model preset; give one of {', '.join(preset_names())} "
                         f"or the path of a YAML file of model keys (like {PRESET_DIR}/<name>.yaml).")
    with open(path, encoding="utf-8") as f:
        keys = yaml.safe_load(f) or {}
    unknown = sorted(set(keys) - set(PRESET_KEYS)) if isinstance(keys, dict) else ["<not a mapping>"]
    if unknown:
        raise SystemExit(f"--model={text}: {path} holds keys that are not model keys: {unknown}; "
                         f"a preset sets only {', '.join(PRESET_KEYS)}.")
    return keys


class _Presets(dict):
    """``{name: keys}`` of every preset, read on first use."""

    def _fill(self):
        if not dict.__len__(self):
            for name in preset_names():
                dict.__setitem__(self, name, load_preset(name))

    def __getitem__(self, name):
        self._fill()
        return dict(dict.__getitem__(self, name))

    def __iter__(self):
        self._fill()
        return dict.__iter__(self)

    def __len__(self):
        self._fill()
        return dict.__len__(self)

    def __contains__(self, name):
        self._fill()
        return dict.__contains__(self, name)

    def keys(self):
        self._fill()
        return dict.keys(self)

    def items(self):
        self._fill()
        return [(k, self[k]) for k in dict.keys(self)]


#: ``{name: model keys}`` of every preset (a copy per access).
PRESETS = _Presets()
