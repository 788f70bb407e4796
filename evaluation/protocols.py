"""Published zero-shot evaluation protocols: ours (``paper``), LAION-CLAP's (``laion``), MS CLAP's (``msclap``) and
transformers' ClapProcessor + ClapModel (``hf``).

The same checkpoint scores differently under different evaluation code, so
each protocol reproduces one reference's preprocessing and scoring exactly:

- ``paper``: prompt "this is a sound of {label}"; our windows
  (:mod:`dataset.clips`): a short clip tiled to ``eval_duration``, a long
  one cut into windows whose embeddings are averaged; score: the cosine.
- ``laion``: prompt "This is a sound of {label}."; ``librosa.load(sr=48000)``
  (soundfile, channel mean, soxr HQ), the int16 round trip, ``repeatpad`` to
  10 s; a longer clip: ``rand_trunc`` (unfused) or ``fusion`` (fused models);
  score: ``exp(logit_scale_a) * cosine``, no softmax.
- ``msclap``: prompt "this is the sound of {label}" (MS CLAP 2023; "this is a
  sound of {label}" for MS CLAP 2022, :data:`MSCLAP_2022_TEMPLATE`);
  ``torchaudio.load`` + ``T.Resample`` to the model rate, channels
  concatenated, repeated to ``duration`` (7 s / 5 s) and cut, a longer clip
  cropped at random; score: ``softmax(exp(logit_scale) * cosine)`` over the
  classes.
- ``hf``: LAION's reading without the int16 round trip, then transformers'
  ``ClapFeatureExtractor`` on one file (``truncation`` / ``padding`` of the
  folder's ``preprocessor_config.json``), the mel in float64; score:
  ``logits_per_audio`` (as ``laion``).

Sources (read from the installed reference code): LAION-CLAP 1.1.7
``laion_clap/hook.py`` (``get_audio_embedding_from_filelist``),
``training/data.py`` (``get_audio_features``, ``get_mel``,
``int16_to_float32`` / ``float32_to_int16``) and
``evaluate/eval_zeroshot_classification.py`` (the prompt, the logits);
msclap 1.3.4 ``CLAPWrapper.py`` (``load_audio_into_tensor``,
``preprocess_text``, ``compute_similarity``) and the repository's
``examples/zero_shot_classification.py`` (the prompt, the softmax). Labels
are read with ``_`` as a space (MS CLAP's ESC-50 loader: ``replace('_', ' ')``;
ours also turns ``/`` into a space).

Random parts. The references draw at random where a clip is longer than the
model's input: LAION's and transformers' ``rand_trunc`` crop (``np.random.randint``) and fusion
chunk starts (three ``np.random.choice``), MS CLAP's crop
(``random.randrange``). Given the same seeded state — a
``numpy.random.RandomState`` for ``laion`` / ``hf`` (``np.random`` itself works: the
global state), a ``random.Random`` for ``msclap`` (or the ``random`` module) —
the draws here are the references' draws, call for call, so the results are
identical (the parity tests, ``tests/test_protocols.py``, seed both alike).
Without one, each clip gets its own generator seeded from its file name
(:func:`clip_seed`): the same file always gets the same crop, whatever the
batch or order.

Two details of LAION's fusion input follow the code its published numbers
were computed with: the whole-clip mel is shrunk by ``torchvision``'s
``Resize`` on a tensor, which had no antialiasing before torchvision 0.17
(as transformers' ``ClapFeatureExtractor`` does it); and a clip is fused
only when its mel is longer than one window (``longer``).
"""

from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dataset.audio import AudioReadError, read_audio_channels, resample
from evaluation.zeroshot import as_templates, prompt_label

__all__ = [
    "PROTOCOLS", "Protocol", "get_protocol", "clip_seed", "protocol_prompts", "laion_waveform", "laion_input",
    "msclap_waveform", "msclap_input", "ProtocolAudio", "collate_protocol", "protocol_encoder", "protocol_logits",
    "protocol_templates", "protocol_template", "MSCLAP_2022_TEMPLATE", "manifest_embeddings", "protocol_reader",
    "hf_input", "HF_DEFAULTS", "FORMAT_PROTOCOLS", "checkpoint_protocol",
]

#: The protocol names, ``paper`` first (ours, the default of our own runs); ``hf``: transformers' ClapProcessor.
PROTOCOLS = ("paper", "laion", "msclap", "hf")

#: transformers' ``ClapFeatureExtractor`` defaults (its ``__init__``): how a clip is fitted without a
#: ``preprocessor_config.json``.
HF_DEFAULTS = {"truncation": "fusion", "padding": "repeatpad", "max_length_s": 10}

#: LAION-CLAP's model rate and input length (``hook.py``: ``sr=48000``, ``max_len`` 480000).
LAION_RATE, LAION_MAX_LEN = 48000, 480000


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: its default prompt template and how its logits are formed."""

    name: str
    template: str
    logit_scale: bool
    softmax: bool
    description: str


_PROTOCOLS = {
    "paper": Protocol("paper", "this is a sound of {label}", False, False,
                      "ours: windows of eval_duration (short clips tiled, long ones averaged), cosine"),
    "laion": Protocol("laion", "This is a sound of {label}.", True, False,
                      "LAION-CLAP: 48 kHz, int16 round trip, 10-s repeatpad / rand_trunc / fusion, "
                      "exp(logit_scale_a) * cosine"),
    "msclap": Protocol("msclap", "this is the sound of {label}", True, True,
                       "MS CLAP: 44.1 kHz, repeated to duration / random crop, softmax(exp(logit_scale) * cosine)"),
    "hf": Protocol("hf", "This is a sound of {label}.", True, False,
                   "transformers' ClapProcessor + ClapModel: LAION's reading without the int16 round trip, "
                   "the processor's truncation / padding (one file per call), logits_per_audio"),
}


#: MS CLAP 2022's prompt: ``src/zero_shot_classification.py`` of microsoft/CLAP before the 2023 model (its output:
#: "ESC50 Accuracy: 82.6%"); the 2023 example says "this is the sound of " (its output: 93.9%).
MSCLAP_2022_TEMPLATE = "this is a sound of {label}"


def protocol_template(protocol, text_pooling=None):
    """The protocol's prompt template; ``msclap`` with a model that is not MS CLAP 2023 (``text_pooling`` other
    than ``last_token``, GPT-2's) gets MS CLAP 2022's.

    Example
    -------
    >>> protocol_template("msclap", "last_token"), protocol_template("msclap", "cls")
    ('this is the sound of {label}', 'this is a sound of {label}')
    """
    if protocol == "msclap" and text_pooling is not None and text_pooling != "last_token":
        return MSCLAP_2022_TEMPLATE
    return get_protocol(protocol).template


def get_protocol(name):
    """The :class:`Protocol` called ``name`` (ValueError naming the choices otherwise).

    Example
    -------
    >>> get_protocol("laion").template
    'This is a sound of {label}.'
    """
    if name not in _PROTOCOLS:
        raise ValueError(f"protocol={name!r} is not one of {', '.join(PROTOCOLS)} (see docs/zeroshot.md).")
    return _PROTOCOLS[name]


def clip_seed(path):
    """The default seed of a clip's random draws: a CRC-32 of its file name (the same clip, the same crop).

    The name alone, not the folder: a clip gets the same crop in a folder, a path list or a webdataset
    shard (``shard.tar#name.flac``), and after its folder is moved.

    Example
    -------
    >>> clip_seed("a.wav") == clip_seed("/data/a.wav") == clip_seed("/x/s.tar#a.wav")
    True
    >>> clip_seed("a.wav") == clip_seed("b.wav")
    False
    """
    name = os.path.basename(str(path).rsplit("#", 1)[-1])
    return zlib.crc32(name.encode("utf-8", "surrogatepass"))


def protocol_prompts(labels, protocol, templates=None, text_pooling=None):
    """Prompts ``[template][class]`` of ``labels``: ``templates`` when given, else the protocol's own template
    (:func:`protocol_template`).

    Example
    -------
    >>> protocol_prompts(["sea_waves"], "laion"), protocol_prompts(["sea_waves"], "msclap")
    ([['This is a sound of sea waves.']], [['this is the sound of sea waves']])
    """
    chosen = as_templates(templates if templates is not None else [protocol_template(protocol, text_pooling)])
    return [[t.replace("{label}", prompt_label(label)) for label in labels] for t in chosen]


# ------------------------------------------------------------------ LAION-CLAP
def _soxr():
    try:
        import soxr
    except ImportError:
        raise ImportError("protocol 'laion' resamples as librosa.load does, with soxr: pip install soxr") from None
    return soxr


def laion_waveform(path, sample_rate=LAION_RATE, quantise=True):
    """A file as ``librosa.load(path, sr=48000)`` reads it, after LAION's int16 round trip: float32 torch ``[T]``.

    ``sample_rate``: another model's rate (LAION's are all 48 kHz); ``quantise=False`` skips the int16 round trip
    (the ``hf`` protocol: transformers' processor takes the float samples).

    soundfile's float32 samples, the mean of the channels, soxr's ``HQ``
    resampling to 48 kHz cut or zero-padded to ``ceil(T * (48000 / rate))``
    samples (librosa's ``fix_length``); then ``clip(-1, 1) * 32767`` cast to
    int16 and divided by 32767 (``float32_to_int16``, ``int16_to_float32``).
    """
    data, rate = read_audio_channels(path)
    y = np.mean(data.T, axis=0) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        ratio = float(sample_rate) / rate  # librosa's order of operations: 44100 samples -> 48001
        n_samples = int(np.ceil(y.shape[-1] * ratio))
        y = _soxr().resample(y, rate, sample_rate, quality="soxr_hq")
        y = y[:n_samples] if len(y) >= n_samples else np.pad(y, (0, n_samples - len(y)))
        y = np.asarray(y, dtype=np.float32)
    if not quantise:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    y = (np.clip(y, a_min=-1.0, a_max=1.0) * 32767.0).astype(np.int16)
    return torch.from_numpy((y / 32767.0).astype(np.float32)).float()


def _repeatpad(wav, max_len):
    wav = wav.repeat(int(max_len / len(wav)))
    return F.pad(wav, (0, max_len - len(wav)), mode="constant", value=0)


def _mel_fusion(mel, chunk, rng):
    """The fusion input of a long clip's log-mel ``[frames, mel_bins]``, as LAION's and transformers' code build it.

    The whole mel shrunk to ``chunk`` frames (bilinear, no antialiasing), then one ``chunk``-frame window drawn
    from each third of the possible starts (``rng.choice``); ``(input [4, chunk, mel_bins], longer)``. A mel
    of exactly ``chunk`` frames is not longer: its four copies.
    """
    total = mel.shape[0]
    if chunk == total:
        return torch.stack([mel] * 4), False
    ranges = np.array_split(list(range(total - chunk + 1)), 3)
    starts = [rng.choice(r if len(r) else [0]) for r in ranges]
    shrink = F.interpolate(mel[None, None], size=[chunk, mel.shape[1]], mode="bilinear", align_corners=False,
                           antialias=False)[0, 0]
    return torch.stack([shrink] + [mel[s:s + chunk] for s in starts]), True


def laion_input_length(base):
    """LAION's input length for this backbone: its ``clip_samples`` (480000 in every published model).

    A model built smaller than LAION's (a test's tiny HTS-AT whose window holds fewer frames than
    ``clip_samples`` gives) is fed what its window holds: ``(max_frames - 1) * hop_size`` samples. LAION's
    own models hold 1024 frames of hop 480, more than 10 s, so their length is 480000 as in ``hook.py``.

    Example
    -------
    >>> import types
    >>> laion_input_length(types.SimpleNamespace(clip_samples=480000, max_frames=1024, hop_size=480))
    480000
    >>> laion_input_length(types.SimpleNamespace(clip_samples=480000, max_frames=128, hop_size=160))
    20320
    """
    length = int(getattr(base, "clip_samples", LAION_MAX_LEN) or LAION_MAX_LEN)
    max_frames, hop = getattr(base, "max_frames", None), getattr(base, "hop_size", None)
    if max_frames and hop:
        length = min(length, (int(max_frames) - 1) * int(hop))
    return length


def laion_input(wav, base, rng, max_len=LAION_MAX_LEN, fused=False):
    """LAION's ``get_audio_features`` (``repeatpad``; ``rand_trunc`` or ``fusion``) for one waveform.

    Arguments
    ---------
    wav : torch.Tensor
        ``[T]`` at the model's rate (:func:`laion_waveform`).
    base : models.htsat.HTSAT
        The audio backbone (its ``logmel``, ``chunk_frames`` and ``hop_size``, for fused models).
    rng : numpy.random.RandomState or module
        Where the random draws come from (``np.random`` itself: the reference's global state).
    max_len : int
        The input length (LAION: 480000).
    fused : bool
        The model fuses long clips (``data_truncating='fusion'``).

    Returns
    -------
    torch.Tensor, bool
        Unfused: the ``[max_len]`` waveform. Fused: ``mel_fusion`` ``[4, chunk_frames, mel_bins]`` (before
        ``bn0``); and ``longer`` (fuse the chunks).
    """
    if len(wav) <= max_len:
        wav = _repeatpad(wav, max_len) if len(wav) < max_len else wav
        if not fused:
            return wav, False
        mel = base.logmel(wav[None])[0, 0]
        return torch.stack([mel] * 4), False
    longer, out = True, None
    if fused:
        out, longer = _mel_fusion(base.logmel(wav[None])[0, 0], max_len // base.hop_size + 1, rng)
    idx = rng.randint(0, len(wav) - max_len + 1)  # the reference crops the waveform in both modes
    return (wav[idx: idx + max_len] if out is None else out), longer


def hf_input(wav, mel, rng, max_len, truncation="fusion", padding="repeatpad", hop_size=480):
    """transformers' ``ClapFeatureExtractor._get_input_mel`` for one file, called alone (its ``__call__`` on one clip).

    Arguments
    ---------
    wav : torch.Tensor
        ``[T]`` at the model's rate.
    mel : callable
        ``(waveform [T], htk) -> log-mel [frames, mel_bins]``: HTK filters (``truncation="fusion"``) or Slaney ones.
    rng : numpy.random.RandomState or module
        The random draws (``np.random``: the processor's global state).
    max_len : int
        ``max_length_s * sampling_rate``.
    truncation, padding : str
        The processor's (``fusion`` / ``rand_trunc``; ``repeatpad`` / ``repeat`` / ``pad``).
    hop_size : int
        The hop of the mel (fusion windows are ``max_len // hop_size + 1`` frames).

    Returns
    -------
    torch.Tensor, bool
        ``input_features`` of the clip ``[1 or 4, frames, mel_bins]`` and ``is_longer``. With ``fusion`` a clip
        that is not longer is still marked longer: the processor marks one clip of a call when none is
        (``np.random.randint(0, 1)``, drawn here too), and here every call holds one clip.
    """
    if truncation not in ("fusion", "rand_trunc"):
        raise ValueError(f"truncation={truncation!r}; transformers' ClapFeatureExtractor knows fusion and rand_trunc.")
    htk = truncation == "fusion"
    if len(wav) > max_len:
        if truncation == "rand_trunc":
            idx = rng.randint(0, len(wav) - max_len + 1)
            out, longer = mel(wav[idx: idx + max_len], False)[None], True
        else:
            out, longer = _mel_fusion(mel(wav, True), max_len // hop_size + 1, rng)
    else:
        longer = False
        if len(wav) < max_len:
            if padding == "repeat":
                wav = wav.repeat(int(max_len / len(wav)) + 1)[:max_len]
            if padding == "repeatpad":
                wav = wav.repeat(int(max_len / len(wav)))
            wav = F.pad(wav, (0, max_len - len(wav)))
        one = mel(wav, htk)
        out = torch.stack([one] * 4) if htk else one[None]
    if htk and not longer:
        longer = bool(rng.randint(0, 1) == 0)  # the processor's "randomly select one audio to be longer"
    return out, longer


# ------------------------------------------------------------------ MS CLAP
def msclap_waveform(path, sample_rate):
    """A file as msclap's ``read_audio`` gives it (``resample=True``): channels resampled, then concatenated.

    ``torchaudio.load`` ``[C, T]`` (soundfile's float32 here: the same
    samples), ``torchaudio.transforms.Resample(rate, sample_rate)`` when the
    rates differ, ``reshape(-1)``: a stereo file is its left channel followed
    by its right one, as in the reference.
    """
    data, rate = read_audio_channels(path)
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    return resample(wav, rate, sample_rate).reshape(-1)


def msclap_input(wav, num_samples, rng):
    """msclap's ``load_audio_into_tensor``: repeated ``ceil(n / T)`` times and cut, or a random crop.

    A clip of at most ``num_samples`` samples is repeated; a longer one is cut
    at ``rng.randrange(T - num_samples)`` (``rng``: a ``random.Random`` or the
    ``random`` module).
    """
    if num_samples >= wav.shape[0]:
        return wav.repeat(int(np.ceil(num_samples / wav.shape[0])))[:num_samples]
    start = rng.randrange(wav.shape[0] - num_samples)
    return wav[start:start + num_samples]


# ------------------------------------------------------------------ embeddings
def _backbone(model):
    return model.audio_encoder.base


class ProtocolAudio(torch.utils.data.Dataset):
    """Model inputs of audio files under the ``laion`` or ``msclap`` protocol (one item per file).

    Arguments
    ---------
    paths : list of str
        Audio files.
    model : models.clap.CLAP
        The model (its backbone computes the fused input of LAION's fused models).
    protocol : str
        ``"laion"`` or ``"msclap"``.
    sample_rate : int
        The model's rate (msclap: the audio is resampled to it; laion: 48 kHz).
    duration : float
        msclap's ``duration`` (seconds).
    rng : optional
        One generator for all clips, drawn from in file order (see the module); default: one per clip
        (:func:`clip_seed`).
    hf_options : dict, optional
        ``hf``: the processor's ``truncation``, ``padding``, ``max_length_s`` (:data:`HF_DEFAULTS`).
    """

    def __init__(self, paths, model, protocol, sample_rate, duration, rng=None, hf_options=None):
        if protocol not in ("laion", "msclap", "hf"):
            raise ValueError(f"ProtocolAudio: protocol={protocol!r}; expected 'laion', 'msclap' or 'hf'.")
        self.paths, self.model, self.protocol, self.rng = list(paths), model, protocol, rng
        self.hf_options = dict(HF_DEFAULTS, **(hf_options or {}))
        self.sample_rate, self.num_samples = int(sample_rate), int(round(float(duration) * int(sample_rate)))
        base = _backbone(model)
        self.fused = getattr(base, "long_audio", None) == "fusion"
        if not self.fused and "truncation" not in (hf_options or {}):
            self.hf_options["truncation"] = "rand_trunc"  # transformers' 'fusion' fails on an unfused ClapModel
        if protocol == "hf":
            if not hasattr(base, "forward_mel"):
                raise ValueError(f"protocol 'hf' is transformers' ClapModel: an HTS-AT model, not "
                                 f"{type(base).__name__}; use protocol 'paper' or 'msclap'.")
            opts = self.hf_options
            if opts["truncation"] not in ("fusion", "rand_trunc") or opts["padding"] not in ("repeatpad", "repeat",
                                                                                              "pad"):
                raise ValueError(f"protocol 'hf': truncation={opts['truncation']!r}, padding={opts['padding']!r}; "
                                 "transformers' ClapFeatureExtractor knows fusion | rand_trunc and "
                                 "repeatpad | repeat | pad.")
        self.max_len = laion_input_length(base)

    def __len__(self):
        return len(self.paths)

    def _mel(self, wav, htk):
        """``[frames, mel_bins]`` float32: the backbone's STFT and log-mel (HTK filters when ``htk``) computed in
        float64 like transformers' numpy feature extractor, then rounded."""
        if getattr(self, "_front", None) is None:
            import copy

            from models.htsat import HTKLogmel

            base = _backbone(self.model)
            htk_mel = base.htk_logmel if hasattr(base, "htk_logmel") else HTKLogmel(*base.filterbank)
            self._front = tuple(copy.deepcopy(m).double()
                                for m in (base.spectrogram_extractor, base.logmel_extractor, htk_mel))
        spectrogram, slaney, htk_mel = self._front
        power = spectrogram(wav[None].double())
        return (htk_mel if htk else slaney)(power)[0, 0].float()

    def __getitem__(self, index):
        path = self.paths[index]
        try:
            if self.protocol == "laion":
                rng = self.rng if self.rng is not None else np.random.RandomState(clip_seed(path))
                with torch.no_grad():
                    wav = laion_waveform(path, self.sample_rate)
                    x, longer = laion_input(wav, _backbone(self.model), rng, self.max_len, self.fused)
            elif self.protocol == "hf":
                rng = self.rng if self.rng is not None else np.random.RandomState(clip_seed(path))
                wav = laion_waveform(path, self.sample_rate, quantise=False)
                opts = self.hf_options
                with torch.no_grad():
                    x, longer = hf_input(wav, self._mel, rng, int(opts["max_length_s"]) * self.sample_rate,
                                         opts["truncation"], opts["padding"], _backbone(self.model).hop_size)
            else:
                rng = self.rng if self.rng is not None else random.Random(clip_seed(path))
                x, longer = msclap_input(msclap_waveform(path, self.sample_rate), self.num_samples, rng), False
            return {"index": index, "x": x, "longer": longer, "ok": True, "error": ""}
        except (AudioReadError, ValueError, RuntimeError) as err:
            return self.missing_item(index, str(err))

    @staticmethod
    def missing_item(index, error):
        """The item of a clip that is not read (unreadable, or dropped by a resumed run): never kept."""
        return {"index": index, "x": None, "longer": False, "ok": False, "error": error}


def collate_protocol(items):
    """Batches of :class:`ProtocolAudio` items (inputs kept as a list: unreadable files have none)."""
    return {key: [it[key] for it in items] for key in ("index", "x", "longer", "ok", "error")}


def protocol_encoder(model, device, fused, precision="fp32"):
    """``batch -> (float32 [B, d], ok, errors)`` for :func:`collate_protocol` batches: unit-norm embeddings."""
    from models.precision import autocast

    linears = [m for m in model.audio_encoder.projection.modules() if isinstance(m, torch.nn.Linear)]
    dim = linears[-1].out_features if linears else 0

    def encode(batch):
        ok = np.array(batch["ok"], dtype=bool)
        out = np.zeros((len(ok), dim), dtype=np.float32)
        rows = {}
        for longer in (False, True):
            sel = [i for i, good in enumerate(ok) if good and batch["longer"][i] == longer]
            if not sel:
                continue
            x = torch.stack([batch["x"][i] for i in sel]).to(device)
            with torch.no_grad(), autocast(precision, device):
                if fused:
                    emb = _backbone(model).forward_mel(x, longer=longer)["embedding"]
                    emb = model.audio_encoder.projection(emb)
                else:
                    emb = model.audio_encoder(x)[0]
            for i, e in zip(sel, F.normalize(emb.float(), dim=-1).cpu()):
                rows[i] = e.numpy()
        if rows and len(next(iter(rows.values()))) != dim:
            out = np.zeros((len(ok), len(next(iter(rows.values())))), dtype=np.float32)
        for i, e in rows.items():
            out[i] = e
        return out, ok, batch["error"]

    return encode


#: The default protocol of a model loaded from a whole-model file of each format (the last one loaded wins):
#: :data:`models.convert.FORMATS` names; MS CLAP 2022 / our layout (``clap``) keeps ``paper``.
FORMAT_PROTOCOLS = {"laion": "laion", "hf": "hf", "ms_clap_2023": "msclap"}


def checkpoint_protocol(source, fmt=None):
    """The protocol a model's checkpoint implies (``source``: the line :func:`experiment.weights.load_weights`
    returns, e.g. ``"LAION-CLAP .pt 630k.pt"``; ``fmt``: the last whole-model file's format when known).

    A checkpoint of one of our runs (``checkpoint ...`` in the line) and an MS CLAP 2022 / our-layout file give
    ``paper``; otherwise the format of the last whole-model file named decides (:data:`FORMAT_PROTOCOLS`).

    Example
    -------
    >>> checkpoint_protocol("LAION-CLAP .pt /m/630k.pt"), checkpoint_protocol("MS CLAP /m/c.pth, then checkpoint x")
    ('laion', 'paper')
    """
    from models.convert import FORMAT_NAMES

    source = source or ""
    if "checkpoint " in source:
        return "paper"
    if fmt is None:
        found = [(source.rfind(FORMAT_NAMES[f]), f) for f in FORMAT_PROTOCOLS if FORMAT_NAMES[f] in source]
        fmt = max(found)[1] if found else "clap"
    return FORMAT_PROTOCOLS.get(fmt, "paper")


def protocol_reader(model, paths, protocol, sample_rate, duration, device="cpu", precision="fp32", rng=None,
                    hf_options=None):
    """``(dataset, collate_fn, encode)`` that embed ``paths`` under ``laion``, ``msclap`` or ``hf``.

    ``encode(batch) -> (float32 [B, d] unit rows, ok, errors)``; see :class:`ProtocolAudio` for the rest.
    """
    data = ProtocolAudio(paths, model, protocol, sample_rate, duration, rng=rng, hf_options=hf_options)
    mel_input = protocol == "hf" or (data.fused and protocol == "laion")
    return data, collate_protocol, protocol_encoder(model, device, mel_input, precision)


def protocol_logits(audio_emb, text_emb, protocol, logit_scale):
    """The protocol's ``[clips, classes]`` scores from unit-norm audio and class embeddings.

    ``paper``: cosines; ``laion``: ``exp(logit_scale) * cosine`` (LAION's
    ``logits_per_audio``); ``msclap``: ``softmax`` over classes of the same
    (``compute_similarity`` then ``F.softmax(similarity, dim=1)``).

    Example
    -------
    >>> a, t = torch.eye(2), torch.eye(2)
    >>> protocol_logits(a, t, "laion", torch.tensor(0.0)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    spec = get_protocol(protocol)
    sims = audio_emb.float() @ text_emb.float().T
    if spec.logit_scale:
        sims = torch.as_tensor(logit_scale).float().exp() * sims
    return torch.softmax(sims, dim=1) if spec.softmax else sims


def protocol_templates(templates, protocol, text_pooling=None):
    """The prompt templates a zero-shot run uses: the protocol's own in place of our default prompt.

    The paper YAMLs' ``prompt_templates`` is ``["this is a sound of {label}"]``
    (the ``paper`` protocol's); under ``laion`` / ``msclap`` that default
    becomes the reference's prompt, and any other list is kept as given.

    Example
    -------
    >>> protocol_templates(["this is a sound of {label}"], "laion"), protocol_templates(["{label}"], "laion")
    (['This is a sound of {label}.'], ['{label}'])
    """
    templates = as_templates(templates)
    if protocol != "paper" and templates == [_PROTOCOLS["paper"].template]:
        return [protocol_template(protocol, text_pooling)]
    return templates


def manifest_embeddings(model, rows, protocol, sample_rate, duration, device="cpu", batch_size=8, num_workers=0,
                        precision="fp32"):
    """Yields ``(embeddings [B, d] torch, rows of the batch, ok)`` of a zero-shot manifest's clips under a protocol.

    ``rows`` are the manifest's dicts (``wav_path``, ...); the clips are read
    and fitted as :class:`ProtocolAudio` does (one generator per clip: the
    same numbers on every run).
    """
    data, collate, encode = protocol_reader(model, [r["wav_path"] for r in rows], protocol, sample_rate, duration,
                                            device, precision)
    loader = torch.utils.data.DataLoader(data, batch_size=int(batch_size), collate_fn=collate,
                                         num_workers=int(num_workers))
    for batch in loader:
        emb, ok, _ = encode(batch)
        yield torch.from_numpy(emb), [rows[i] for i in batch["index"]], ok.tolist()
