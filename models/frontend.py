"""Log-mel front end numerically compatible with PANNs / torchlibrosa.

PANNs (and MS CLAP, which reuses its Cnn14) compute the STFT as two
``Conv1d`` layers whose kernels are Hann-windowed DFT bases, and store those
kernels in their checkpoints (``spectrogram_extractor.stft.conv_real.weight``
and ``conv_imag.weight``) together with the mel matrix
(``logmel_extractor.melW``).  This module keeps exactly that parameter layout,
so the official files load unchanged, but computes the transform with
``torch.stft`` (an FFT), which is several times faster on CPU and at least as
accurate.  The FFT is only legitimate while the kernels are the textbook
ones, so a load-time hook checks that and falls back to the convolution with
the loaded kernels when a file carries anything else.

The plain float64 numpy formula, :func:`reference_logmel`, is what tests
compare both paths against.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "STFT",
    "Spectrogram",
    "LogmelFilterBank",
    "mel_filterbank",
    "dft_kernels",
    "reference_logmel",
    "hz_to_mel",
    "mel_to_hz",
    "float32_features",
]

# Power floor of PANNs' power_to_db (amin), i.e. -100 dB.
AMIN = 1e-10
# Loaded kernels within this distance of the formula still count as "the
# formula": float32 rounding of a float64 design differs by ~1e-7.
KERNEL_ATOL = 1e-5
# Target size of one chunk's complex spectrum in STFT.power: small enough to
# stay in cache, large enough to amortise per-call overhead.
_CHUNK_BYTES = 12 * 2**20


def periodic_hann(n: int) -> np.ndarray:
    """Periodic (DFT-even) Hann window in float64.

    Arguments
    ---------
    n : int
        Window length.

    Returns
    -------
    numpy.ndarray
        ``0.5 - 0.5 * cos(2 pi k / n)`` for ``k = 0 .. n-1``.

    Example
    -------
    >>> periodic_hann(4).round(3).tolist()
    [0.0, 0.5, 1.0, 0.5]
    """
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed one-sided DFT kernels, as PANNs stores them.

    Arguments
    ---------
    n_fft : int
        FFT size (also the window length).

    Returns
    -------
    real, imag : numpy.ndarray
        float64 arrays ``[n_fft // 2 + 1, n_fft]`` with
        ``real[k, n] = cos(2 pi k n / n_fft) w[n]`` and
        ``imag[k, n] = -sin(2 pi k n / n_fft) w[n]`` (``w`` periodic Hann).

    Example
    -------
    >>> real, imag = dft_kernels(8)
    >>> real.shape, imag.shape
    ((5, 8), (5, 8))
    >>> bool(np.allclose(real[0], periodic_hann(8)))
    True
    """
    k = np.arange(n_fft // 2 + 1, dtype=np.float64)[:, None]
    n = np.arange(n_fft, dtype=np.float64)[None, :]
    # Reduce k*n modulo n_fft before scaling so large products keep full
    # precision in the cos/sin argument.
    angle = 2.0 * np.pi * np.mod(k * n, n_fft) / n_fft
    window = periodic_hann(n_fft)[None, :]
    return np.cos(angle) * window, -np.sin(angle) * window


class STFT(nn.Module):
    """One-sided STFT with PANNs' frozen conv-kernel parameters.

    Arguments
    ---------
    n_fft : int
        FFT size and window length (periodic Hann window).
    hop_length : int
        Hop between frames, in samples.

    Notes
    -----
    ``conv_real`` / ``conv_imag`` hold the windowed DFT kernels so that state
    dicts have PANNs' keys.  While they equal :func:`dft_kernels`, forward
    uses ``torch.stft`` on the input reflect-padded by ``n_fft // 2`` on
    both sides (what ``center=True, pad_mode="reflect"`` does).  After every
    ``load_state_dict`` a hook re-checks the kernels; if a file carried other
    kernels, forward switches to the convolution with those kernels, so what
    the file says is always what is computed.

    Example
    -------
    >>> stft = STFT(16, 4)
    >>> real, imag = stft(torch.randn(2, 32))
    >>> tuple(real.shape), stft.uses_fft
    ((2, 1, 9, 9), True)
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        n_freq = self.n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, n_freq, self.n_fft, stride=self.hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, n_freq, self.n_fft, stride=self.hop_length, bias=False)
        real, imag = dft_kernels(self.n_fft)
        # torch.tensor (unlike from_numpy) honours a default-device context,
        # so building under torch.device("meta") stays allocation-free.
        self.conv_real.weight = nn.Parameter(
            torch.tensor(real[:, None, :], dtype=torch.float32), requires_grad=False
        )
        self.conv_imag.weight = nn.Parameter(
            torch.tensor(imag[:, None, :], dtype=torch.float32), requires_grad=False
        )
        # Non-persistent: the window is implied by the kernels and must not
        # add a key that PANNs files lack.
        self.register_buffer(
            "window", torch.hann_window(self.n_fft, periodic=True), persistent=False
        )
        self.uses_fft = True
        self.register_load_state_dict_post_hook(_stft_post_load_hook)

    def kernels_match_formula(self) -> bool:
        """Whether the current kernels equal the windowed-DFT formula.

        Returns
        -------
        bool
            True when both kernels are within ``1e-5`` of :func:`dft_kernels`
            (meta tensors, which hold no values, count as matching).
        """
        w_real, w_imag = self.conv_real.weight, self.conv_imag.weight
        if w_real.is_meta or w_imag.is_meta:
            return True
        expected_shape = (self.n_fft // 2 + 1, 1, self.n_fft)
        if tuple(w_real.shape) != expected_shape or tuple(w_imag.shape) != expected_shape:
            return False
        real, imag = dft_kernels(self.n_fft)
        with torch.no_grad():
            ok_real = torch.allclose(
                w_real.detach().double().cpu(), torch.from_numpy(real[:, None, :]), atol=KERNEL_ATOL, rtol=0.0
            )
            ok_imag = torch.allclose(
                w_imag.detach().double().cpu(), torch.from_numpy(imag[:, None, :]), atol=KERNEL_ATOL, rtol=0.0
            )
        return bool(ok_real and ok_imag)

    def refresh_path(self) -> bool:
        """Re-decide between the FFT and the convolution path.

        Called automatically after ``load_state_dict``; call it by hand after
        editing the kernels in place.

        Returns
        -------
        bool
            True if the FFT path is used.
        """
        self.uses_fft = self.kernels_match_formula()
        return self.uses_fft

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the STFT in PANNs' layout.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform.

        Returns
        -------
        real, imag : torch.Tensor
            ``[B, 1, frames, n_fft // 2 + 1]`` each, ``frames = T // hop + 1``.
        """
        if self.uses_fft:
            spec = self._fft(self._pad(wav))
            real, imag = spec.real, spec.imag
        else:
            real, imag = self._conv(self._pad(wav))
        return real.transpose(1, 2).unsqueeze(1), imag.transpose(1, 2).unsqueeze(1)

    def power(self, wav: torch.Tensor) -> torch.Tensor:
        """Power spectrum ``real**2 + imag**2``.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform.

        Returns
        -------
        torch.Tensor
            Contiguous ``[B, 1, frames, n_fft // 2 + 1]``.
        """
        padded = self._pad(wav)
        if not self.uses_fft:
            real, imag = self._conv(padded)
            return (real.square() + imag.square()).transpose(1, 2).unsqueeze(1).contiguous()
        if torch.is_grad_enabled() and wav.requires_grad:
            spec = self._fft(padded)
            power = spec.real.square() + spec.imag.square()
            return power.transpose(1, 2).unsqueeze(1).contiguous()
        # No autograd: work a few clips at a time so each complex spectrum
        # stays cache-sized, and write the power straight into the output
        # (out= / in-place) instead of materialising the whole complex STFT
        # and its temporaries (~3x faster at 32 x 5 s on CPU).
        batch, n_frames = padded.shape[0], 1 + (padded.shape[-1] - self.n_fft) // self.hop_length
        n_freq = self.n_fft // 2 + 1
        out = padded.new_empty(batch, n_frames, n_freq)
        chunk = max(1, _CHUNK_BYTES // (n_frames * n_freq * 8))
        for start in range(0, batch, chunk):
            spec = self._fft(padded[start : start + chunk])
            dest = out[start : start + chunk].transpose(1, 2)
            torch.mul(spec.real, spec.real, out=dest)
            dest.addcmul_(spec.imag, spec.imag)
        return out.unsqueeze(1)

    def _fft(self, padded: torch.Tensor) -> torch.Tensor:
        # center=False on an input we padded ourselves: torch.stft's own
        # centre padding is markedly slower on CPU, the result is identical.
        return torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window.to(padded.dtype),
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )

    def _conv(self, padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = padded[:, None, :]
        return (
            F.conv1d(x, self.conv_real.weight, stride=self.hop_length),
            F.conv1d(x, self.conv_imag.weight, stride=self.hop_length),
        )

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        half = self.n_fft // 2
        # Reflect padding is only implemented for batched (3-D) inputs.
        return F.pad(wav[:, None, :], (half, half), mode="reflect")[:, 0]


def _stft_post_load_hook(module: STFT, incompatible_keys) -> None:
    module.refresh_path()


class Spectrogram(nn.Module):
    """Power spectrogram in PANNs' layout ``[B, 1, frames, n_freq]``.

    Arguments
    ---------
    n_fft : int
        FFT size and window length.
    hop_length : int
        Hop between frames, in samples.

    Example
    -------
    >>> spec = Spectrogram(1024, 320)
    >>> tuple(spec(torch.randn(2, 44100)).shape)
    (2, 1, 138, 513)
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.stft = STFT(n_fft, hop_length)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """Compute ``real**2 + imag**2``.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveform.

        Returns
        -------
        torch.Tensor
            ``[B, 1, frames, n_fft // 2 + 1]``.
        """
        return self.stft.power(wav)


def hz_to_mel(freq):
    """Slaney mel scale: linear below 1 kHz, logarithmic above.

    Arguments
    ---------
    freq : float or numpy.ndarray
        Frequency in Hz.

    Returns
    -------
    numpy.ndarray
        Mel value(s), float64.

    Example
    -------
    >>> round(float(hz_to_mel(1000.0)), 9)
    15.0
    """
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = freq / f_sp
    # np.maximum keeps log() finite on the linear branch; np.where discards it.
    log_part = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log_part, mels)


def mel_to_hz(mels):
    """Inverse of :func:`hz_to_mel`.

    Arguments
    ---------
    mels : float or numpy.ndarray
        Mel value(s).

    Returns
    -------
    numpy.ndarray
        Frequency in Hz, float64.

    Example
    -------
    >>> round(float(mel_to_hz(hz_to_mel(4000.0))), 6)
    4000.0
    """
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = mels * f_sp
    log_part = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return np.where(mels >= min_log_mel, log_part, freqs)


def _mel_filterbank_f64(sample_rate, n_fft, n_mels, fmin, fmax) -> np.ndarray:
    n_freq = n_fft // 2 + 1
    if fmax is None:
        fmax = sample_rate / 2.0
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_freq)
    mel_pts = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    widths = np.diff(hz_pts)
    offsets = hz_pts[:, None] - fft_freqs[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: every triangle gets unit area in Hz.
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.T  # [n_freq, n_mels]


def mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters.

    Equal to ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft,
    n_mels=n_mels, fmin=fmin, fmax=fmax).T`` (htk=False, norm="slaney"),
    computed in float64 and cast once.

    Arguments
    ---------
    sample_rate : int
        Sampling rate in Hz.
    n_fft : int
        FFT size.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Band edges in Hz (``fmax=None`` means Nyquist).

    Returns
    -------
    numpy.ndarray
        float32 ``[n_fft // 2 + 1, n_mels]``.

    Example
    -------
    >>> W = mel_filterbank(16000, 512, 40, 0, 8000)
    >>> W.shape, W.dtype
    ((257, 40), dtype('float32'))
    >>> bool((W >= 0).all())
    True
    """
    return _mel_filterbank_f64(sample_rate, n_fft, n_mels, fmin, fmax).astype(np.float32)


class LogmelFilterBank(nn.Module):
    """Mel projection and ``10 log10`` with PANNs' ``melW`` parameter.

    Arguments
    ---------
    sample_rate : int
        Sampling rate in Hz.
    n_fft : int
        FFT size of the incoming power spectrogram.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Band edges in Hz.

    Notes
    -----
    ``melW`` is a frozen ``nn.Parameter`` ``[n_freq, n_mels]``; a loaded
    ``melW`` replaces the constructor's and is the one used.  Output is
    ``10 log10(max(power @ melW, 1e-10))`` (ref 1, no top_db), as in PANNs.

    Example
    -------
    >>> fb = LogmelFilterBank(16000, 512, 40, 0, 8000)
    >>> out = fb(torch.zeros(1, 1, 3, 257))
    >>> tuple(out.shape), float(out.min())
    ((1, 1, 3, 40), -100.0)
    """

    def __init__(self, sample_rate, n_fft, n_mels, fmin, fmax):
        super().__init__()
        self.melW = nn.Parameter(
            torch.tensor(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)),
            requires_grad=False,
        )

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """Project onto mel bands and convert to dB.

        Arguments
        ---------
        power : torch.Tensor
            ``[B, 1, frames, n_freq]`` power spectrogram.

        Returns
        -------
        torch.Tensor
            ``[B, 1, frames, n_mels]`` log-mel in dB.
        """
        mel = torch.matmul(power, self.melW)
        if mel.requires_grad:
            return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
        # Nothing to differentiate: reuse the buffer instead of allocating
        # two more [B, 1, frames, n_mels] tensors.
        return mel.clamp_(min=AMIN).log10_().mul_(10.0)


def reference_logmel(
    wav: np.ndarray, sample_rate, n_fft, hop, n_mels, fmin, fmax
) -> np.ndarray:
    """Plain float64 numpy log-mel, the formula the fast paths must match.

    Reflect-pad ``n_fft // 2`` on both sides, frame every ``hop`` samples,
    periodic Hann window, ``rfft``, power, Slaney mel filters (float64),
    ``10 log10(max(x, 1e-10))``.

    Arguments
    ---------
    wav : numpy.ndarray
        ``[T]`` waveform.
    sample_rate, n_fft, hop, n_mels, fmin, fmax
        As for :class:`Spectrogram` and :class:`LogmelFilterBank`.

    Returns
    -------
    numpy.ndarray
        float64 ``[T // hop + 1, n_mels]``.

    Example
    -------
    >>> ref = reference_logmel(np.zeros(1600), 16000, 512, 160, 40, 0, 8000)
    >>> ref.shape, float(ref.max())
    ((11, 40), -100.0)
    """
    x = np.asarray(wav, dtype=np.float64)
    half = n_fft // 2
    x = np.pad(x, (half, half), mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = x[idx] * periodic_hann(n_fft)[None, :]
    spec = np.fft.rfft(frames, n=n_fft, axis=1)
    power = spec.real**2 + spec.imag**2
    mel = power @ _mel_filterbank_f64(sample_rate, n_fft, n_mels, fmin, fmax)
    return 10.0 * np.log10(np.maximum(mel, AMIN))


def float32_features(wav: torch.Tensor):
    """The guard every log-mel front end runs under: autocast off, the waveform in (at least) float32.

    Under fp16 autocast the power spectrum of a loud clip overflows (65504) and silence's floor rounds
    to 0; under bf16 the mel product would lose precision for nothing. So the STFT and the mel product
    always see float32 (float64 stays float64).

    Returns
    -------
    guard : torch.autocast
        The context to run the front end in.
    wav : torch.Tensor
        ``wav`` in ``promote_types(wav.dtype, float32)``.

    Example
    -------
    >>> guard, x = float32_features(torch.zeros(2, 8, dtype=torch.float16))
    >>> with guard:
    ...     x.dtype
    torch.float32
    """
    guard = torch.autocast(device_type=wav.device.type, enabled=False)
    return guard, wav.to(torch.promote_types(wav.dtype, torch.float32))
