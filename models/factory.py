"""One factory for every CLAP the project builds, keyed by the YAML's own names.

Every recipe YAML builds its model with ``!apply:models.factory.create_model``
and the same keys (``audioenc_name``, ``sample_rate``, ..., ``txt_emb_dim``,
``d_proj``); the inference API and the index build theirs from a run's
``hyperparams.yaml`` with the same function. Which audio backbone and text
tower those keys select is decided in :mod:`models.registry`, so a new
architecture is one entry there and every caller gets it.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.clap import CLAP, MSCLAP2022

__all__ = ["MODEL_KEYS", "ARCHITECTURE_KEYS", "MS_CLAP_2022", "audio_options_mapping", "create_model", "architecture"]

#: YAML keys of the model's constructor (``txt_emb_dim`` is CLAP's ``transformer_embed_dim``).
MODEL_KEYS = (
    "audioenc_name", "sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "classes_num",
    "out_emb", "text_model", "txt_emb_dim", "d_proj", "audio_width", "text_pooling", "audio_options",
    "projection",
)

#: Every key that describes a model for inference: the constructor's, the
#: token limit and the window length in seconds.
ARCHITECTURE_KEYS = MODEL_KEYS + ("text_max_length", "eval_duration")

#: MS CLAP 2022 in YAML keys (the published ``config_2022.yml``: 5-s windows, 100 tokens).
MS_CLAP_2022 = {key: MSCLAP2022[key] for key in MODEL_KEYS if key in MSCLAP2022}
MS_CLAP_2022.update(txt_emb_dim=MSCLAP2022["transformer_embed_dim"], audio_width=1.0, text_pooling="cls",
                    audio_options=None, text_max_length=100, eval_duration=5.0)
MS_CLAP_2022.update(projection="ms")


def audio_options_mapping(value):
    """``audio_options`` as a dict (or None), whether the YAML gave a mapping or a command line a YAML string.

    A ``--audio_options={...}`` flag reaches the YAML as a string: SpeechBrain merges a mapping override
    into the YAML's value key by key and refuses keys that value lacks, so the flag is passed whole
    (:class:`experiment.command_line.CommandLine`) and read here.

    Example
    -------
    >>> audio_options_mapping("{size: base, enable_fusion: true}")
    {'size': 'base', 'enable_fusion': True}
    >>> audio_options_mapping(None) is None, audio_options_mapping("null") is None
    (True, True)
    >>> audio_options_mapping("size=base")
    Traceback (most recent call last):
    ...
    ValueError: audio_options must be a mapping such as {size: base, enable_fusion: true}, got 'size=base'
    >>> audio_options_mapping([1, 2])
    Traceback (most recent call last):
    ...
    ValueError: audio_options must be a mapping such as {size: base, enable_fusion: true}, got [1, 2]
    """
    form = "audio_options must be a mapping such as {size: base, enable_fusion: true}"
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"{form}; {value!r} is not valid YAML ({getattr(err, 'problem', None) or err})") from None
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{form}, got {value!r}")
    if value and not isinstance(value, Mapping):
        raise ValueError(f"{form}, got {value!r}")
    return dict(value) if value else None


def create_model(audioenc_name, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb,
                 text_model, txt_emb_dim, d_proj, audio_width=1.0, text_pooling="cls", pretrained_text=False,
                 spec_augment=True, proj_dropout=0.5, audio_options=None, projection="ms"):
    """A :class:`models.clap.CLAP` from the YAML keys (the recipes' ``model:`` entry).

    Arguments
    ---------
    audioenc_name : str
        Audio backbone (:data:`models.registry.AUDIO_ENCODERS`).
    sample_rate, window_size, hop_size, mel_bins, fmin, fmax : int
        Front end.
    classes_num, out_emb : int
        Sizes of the backbone's outputs.
    text_model : str
        Hub name, local folder or offline MiniLM alias of the text transformer.
    txt_emb_dim : int
        Its hidden size.
    d_proj : int
        Shared embedding size.
    audio_width : float
        Channel multiplier of the audio backbone (1.0: the published size).
    text_pooling : str
        Token pooling of the text tower (``cls``, ``mean``, ``pooler``, ``last_token``).
    pretrained_text : bool
        Load the text transformer's own weights (False when a checkpoint
        provides every weight).
    spec_augment : bool
        SpecAugment in training mode.
    proj_dropout : float
        Dropout of both projection heads (MS CLAP's head; LAION's has none).
    audio_options : dict, optional
        Extra options of the audio backbone (HTSAT: ``size``, ``enable_fusion``,
        ``frontend``, ... see :class:`models.htsat.HTSAT`); None for Cnn14.
    projection : str
        Projection head of both towers: ``ms`` (MS CLAP) or ``laion`` (LAION-CLAP's MLP).

    Returns
    -------
    models.clap.CLAP

    Example
    -------
    >>> import tempfile, torch
    >>> from transformers import BertConfig
    >>> folder = tempfile.mkdtemp()
    >>> BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
    ...            vocab_size=100).save_pretrained(folder)
    >>> model = create_model("Cnn14", 16000, 512, 160, 64, 50, 8000, 5, 32, folder, 32, 16, audio_width=1 / 16)
    >>> type(model).__name__, model.encode_audio(torch.randn(1, 16000)).shape
    ('CLAP', torch.Size([1, 16]))
    """
    return CLAP(
        audioenc_name, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num, out_emb,
        text_model, txt_emb_dim, d_proj, audio_width=audio_width, text_pooling=text_pooling,
        pretrained_text=pretrained_text, spec_augment=spec_augment, dropout=proj_dropout, projection=projection,
        audio_options=audio_options_mapping(audio_options),
    )


def architecture(*sources, **overrides):
    """The architecture keys of a model: MS CLAP 2022, then each source in turn, then ``overrides``.

    Arguments
    ---------
    *sources : dict
        Mappings holding (some of) :data:`ARCHITECTURE_KEYS`, e.g. loaded
        hparams or the keys read from a run's ``hyperparams.yaml``; other
        keys and None values are ignored.
    **overrides
        Architecture keys that take precedence (None: not given).

    Returns
    -------
    dict
        Every key of :data:`ARCHITECTURE_KEYS`.

    Example
    -------
    >>> arch = architecture({"sample_rate": 16000, "batch_size": 8}, d_proj=256)
    >>> arch["sample_rate"], arch["d_proj"], arch["text_model"], "batch_size" in arch
    (16000, 256, 'bert-base-uncased', False)
    >>> architecture(width=2)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    TypeError: Unknown model key(s) ['width']; the architecture keys are ['audioenc_name', 'sample_rate', 'window_size',
    'hop_size', 'mel_bins', 'fmin', 'fmax', 'classes_num', 'out_emb', 'text_model', 'txt_emb_dim', 'd_proj',
    'audio_width', 'text_pooling', 'audio_options', 'projection', 'text_max_length', 'eval_duration'].
    """
    unknown = sorted(set(overrides) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise TypeError(f"Unknown model key(s) {unknown}; the architecture keys are {list(ARCHITECTURE_KEYS)}.")
    config = dict(MS_CLAP_2022)
    for source in sources + (overrides,):
        config.update({k: source[k] for k in ARCHITECTURE_KEYS if source.get(k) is not None})
    config["audio_options"] = audio_options_mapping(config["audio_options"])
    return config
