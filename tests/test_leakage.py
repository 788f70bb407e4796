"""Content-based leakage audit (curation/leakage.py): known answers on real ESC-50 clips and the toy world."""

import glob
import inspect
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import soundfile
import torch

from curation import leakage
from curation.leakage import aligned_correlation, audio_digest, audio_digests, find_leaks, mel_signature
from dataset.audio import resample
from conftest import FIXTURES

ESC_CLIPS = sorted(glob.glob(os.path.join(FIXTURES, "esc50", "audio", "*.wav")))
DEFAULT_MEL_CORR = inspect.signature(find_leaks).parameters["mel_corr"].default
# Dropped from the start and the end of the lossy copies: not whole numbers of 10 ms hops.
TRIM_START_S, TRIM_END_S = 1.373, 0.81


def unit_rows(n, d=32, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def lossy_trimmed_copy(src, dst, rate, **format_kwargs):
    """``src`` trimmed by TRIM_START_S / TRIM_END_S, resampled to ``rate`` and written with a lossy codec."""
    wav, sr = soundfile.read(src, dtype="float32")
    wav = wav[round(TRIM_START_S * sr): len(wav) - round(TRIM_END_S * sr)]
    wav = resample(torch.from_numpy(wav), sr, rate).numpy()
    soundfile.write(dst, wav, rate, **format_kwargs)
    return dst


@pytest.fixture(scope="module")
def esc_dupes(tmp_path_factory):
    """Copies of three real ESC-50 clips: an exact one (FLAC, renamed), Ogg Vorbis at 22.05 kHz and MP3 at
    32 kHz (both lossy and trimmed); ``{kind: (copy, original)}``."""
    assert len(ESC_CLIPS) == 5, ESC_CLIPS
    out = tmp_path_factory.mktemp("esc_dupes")
    dog, horn, thunder = ESC_CLIPS[0], ESC_CLIPS[1], ESC_CLIPS[2]
    samples, sr = soundfile.read(horn, dtype="int16")
    flac = str(out / "Yq1w2e3r4t5y.flac")
    soundfile.write(flac, samples, sr)
    ogg = lossy_trimmed_copy(thunder, str(out / "Yzz9thunder.ogg"), 22050, format="OGG", subtype="VORBIS")
    dupes = {"exact": (flac, horn), "ogg": (ogg, thunder)}
    if "MP3" in soundfile.available_formats():
        dupes["mp3"] = (lossy_trimmed_copy(dog, str(out / "Ydogdogdog.mp3"), 32000, format="MP3"), dog)
    return dupes


# ------------------------------------------------------------ aligned_correlation


def test_aligned_correlation_known_offsets():
    a = np.random.default_rng(1).normal(size=(700, 16)).astype(np.float32)
    corr, offset, overlap = aligned_correlation(a, a[137:460])
    assert (corr, offset, overlap) == (1.0, 1.37, 3.23)
    # Swapped: the offset is where sig_b starts in sig_a's time, so a starts 1.37 s before b's start.
    assert aligned_correlation(a[137:460], a) == (1.0, -1.37, 3.23)
    # Partial overlaps on either side: b's first 1.5 s are a's last 1.5 s, and the reverse.
    b = np.concatenate([a[550:], np.random.default_rng(2).normal(size=(300, 16))])
    assert aligned_correlation(a, b)[:2] == (1.0, 5.5)
    assert aligned_correlation(b, a)[:2] == (1.0, -5.5)
    # A gain and an offset per band change nothing (each band is centred over the overlap).
    assert aligned_correlation(a, 3.0 * a[137:460] + np.arange(16))[:2] == (1.0, 1.37)
    # Overlap below min_overlap, or a flat side: no score.
    assert aligned_correlation(a, a[:99]) == (-1.0, 0.0, 0.0)
    assert aligned_correlation(a, a[:99], min_overlap=0.99)[:2] == (1.0, 0.0)
    assert aligned_correlation(a, np.ones((200, 16))) == (-1.0, 0.0, 0.0)
    assert aligned_correlation(np.zeros((0, 16)), a) == (-1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        aligned_correlation(a, a[:, :8])


def _corr_at(a, b, k):
    lo, hi = max(0, k), min(len(a), k + len(b))
    wa, wb = a[lo:hi] - a[lo:hi].mean(0), b[lo - k:hi - k] - b[lo - k:hi - k].mean(0)
    return (wa * wb).sum() / np.sqrt((wa * wa).sum() * (wb * wb).sum()), hi - lo


def _brute_force(a, b, min_frames):
    return max(_corr_at(a, b, k)[0] for k in range(min_frames - len(b), len(a) - min_frames + 1))


def test_aligned_correlation_is_the_brute_force_maximum():
    rng = np.random.default_rng(3)
    for trial in range(20):
        # Smooth random signatures: many offsets score alike, the FFT pre-selection must still find the best.
        a = np.cumsum(rng.normal(size=(int(rng.integers(30, 90)), 5)), axis=0)
        b = np.cumsum(rng.normal(size=(int(rng.integers(30, 90)), 5)), axis=0)
        corr, offset, overlap = aligned_correlation(a, b, min_overlap=0.2)
        assert corr == pytest.approx(_brute_force(a, b, 20), abs=1e-6), trial
        # ... and the figures are those of the offset returned.
        at_offset, frames = _corr_at(a, b, round(offset / 0.01))
        assert corr == pytest.approx(at_offset, abs=1e-6) and overlap == pytest.approx(frames * 0.01)


# ------------------------------------------------------------------- digests


def test_audio_digest_same_samples_same_digest(esc_dupes, tmp_path):
    flac, wav = esc_dupes["exact"]
    assert audio_digest(flac) == audio_digest(wav)
    assert audio_digest(esc_dupes["ogg"][0]) != audio_digest(esc_dupes["ogg"][1])
    # A shard's member: the same digest as the file it holds.
    tar = str(tmp_path / "shard-000000.tar")
    with tarfile.open(tar, "w") as t:
        t.add(flac, arcname="key.flac")
    assert audio_digest(tar + "#key.flac") == audio_digest(wav)
    assert audio_digests([tar + "#key.flac", tar + "#absent.flac"]) == {
        tar + "#key.flac": audio_digest(wav), tar + "#absent.flac": None}


def test_audio_digests_cache_and_bad_files(tmp_path, monkeypatch):
    good = []
    for i in range(3):
        good.append(str(tmp_path / f"c{i}.wav"))
        soundfile.write(good[-1], np.random.default_rng(i).normal(0, 0.1, 800), 16000)
    bad = str(tmp_path / "bad.wav")
    with open(bad, "wb") as f:
        f.write(b"RIFF not really a wave file")
    missing = str(tmp_path / "missing.flac")
    reads = []
    real = leakage.audio_digest
    monkeypatch.setattr(leakage, "audio_digest", lambda p: reads.append(p) or real(p))
    cache = str(tmp_path / "cache" / "digests.json")
    paths = good + [bad, missing]

    first = audio_digests(paths, cache_path=cache)
    assert list(first) == paths
    assert [first[p] is None for p in paths] == [False, False, False, True, True]
    assert len({first[p] for p in good}) == 3
    assert sorted(reads) == sorted(good + [bad])  # a missing file is not even opened
    stored = json.load(open(cache))
    assert set(stored) == set(good + [bad]) and stored[bad]["digest"] is None

    reads.clear()
    assert audio_digests(paths, cache_path=cache) == first
    assert reads == []  # all from the cache, the unreadable file included

    # A changed file (new mtime) is hashed again; entries of other paths stay in the cache.
    soundfile.write(good[1], np.zeros(800), 16000)
    os.utime(good[1], ns=(1, 1))
    again = audio_digests(good[1:2], cache_path=cache)
    assert reads == [good[1]] and again[good[1]] != first[good[1]]
    assert set(json.load(open(cache))) == set(good + [bad])

    # A corrupt cache is replaced, not fatal.
    with open(cache, "w") as f:
        f.write("{truncated")
    reads.clear()
    assert audio_digests(good, cache_path=cache)[good[0]] == first[good[0]]
    assert len(reads) == 3


# -------------------------------------------------------------- mel signature


def test_mel_signature_shape_and_centring(esc_dupes):
    sig = mel_signature(ESC_CLIPS[0])
    assert sig.dtype == np.float32 and sig.shape == (498, 64)  # 5 s at 16 kHz: (80000 - 400) // 160 + 1
    assert np.abs(sig.mean(axis=0)).max() < 1e-4 and np.abs(sig.mean(axis=1)).max() < 1e-4
    assert mel_signature(ESC_CLIPS[0], n_mels=32).shape == (498, 32)


# ---------------------------------------------------------------- find_leaks


def test_find_leaks_real_esc50(esc_dupes, monkeypatch):
    """Exact and lossy+trimmed copies are found with the right reference and offset; different real clips
    (three of them thunderstorms) are rejected by the mel check alone, with the cosine gate open."""
    kinds = list(esc_dupes)
    candidates = [esc_dupes[k][0] for k in kinds] + ESC_CLIPS[3:]
    references = ESC_CLIPS[:3]
    ref_emb = unit_rows(len(references), seed=1)
    cand_emb = unit_rows(len(candidates), seed=2)

    # Gate open: every candidate is compared with every reference.
    leaks = find_leaks(candidates, cand_emb, references, ref_emb, cosine=-1.0, top_k=3)
    assert [leak["path"] for leak in leaks] == [esc_dupes[k][0] for k in kinds]
    assert leaks.unreadable == []
    by_kind = dict(zip(kinds, leaks))
    assert by_kind["exact"] == {"path": esc_dupes["exact"][0], "reference": esc_dupes["exact"][1],
                                "kind": "exact", "cosine": pytest.approx(float(cand_emb[0] @ ref_emb[1]), abs=1e-5),
                                "mel_corr": 1.0, "offset_s": 0.0, "wave_corr": 1.0}
    for kind in kinds[1:]:
        leak = by_kind[kind]
        assert leak["kind"] == "near" and leak["reference"] == esc_dupes[kind][1], leak
        assert leak["mel_corr"] >= 0.95 > DEFAULT_MEL_CORR, leak
        assert leak["wave_corr"] >= 0.95, leak  # the samples below 4 kHz survive the codec
        assert abs(leak["offset_s"] - TRIM_START_S) <= 0.015, leak

    # Every pair of different real clips: far below the threshold.
    sigs = [mel_signature(p) for p in ESC_CLIPS]
    worst = max(aligned_correlation(sigs[i], sigs[j])[0] for i in range(5) for j in range(5) if i < j)
    assert worst < DEFAULT_MEL_CORR - 0.25, worst

    # The teacher's gate: identical embeddings for the copies, random ones otherwise; float16 storage and
    # blocks of two candidates give the same answer.
    cand_emb = cand_emb.copy()
    for i, kind in enumerate(kinds):
        cand_emb[i] = ref_emb[references.index(esc_dupes[kind][1])]
    monkeypatch.setattr(leakage, "COSINE_CHUNK", 2)
    gated = find_leaks(candidates, cand_emb.astype(np.float16), references, ref_emb.astype(np.float16))
    assert [(g["path"], g["reference"], g["kind"]) for g in gated] == [
        (g["path"], g["reference"], g["kind"]) for g in leaks]
    assert all(g["cosine"] == pytest.approx(1.0, abs=1e-3) for g in gated)
    # A closed gate: near copies are not checked; exact copies are found by their digest alone.
    closed = find_leaks(candidates, unit_rows(len(candidates), seed=5), references, ref_emb, cosine=0.99)
    assert [leak["kind"] for leak in closed] == ["exact"]


def test_find_leaks_unreadable_and_bad_arguments(esc_dupes, tmp_path, caplog):
    bad = str(tmp_path / "broken.flac")
    with open(bad, "wb") as f:
        f.write(b"fLaC but nothing else")
    ogg, thunder = esc_dupes["ogg"]
    candidates = [bad, ogg, str(tmp_path / "gone.wav")]
    references = [thunder, ESC_CLIPS[4]]
    digests = audio_digests(candidates + references)
    with caplog.at_level("WARNING", logger="curation.leakage"):
        leaks = find_leaks(candidates, unit_rows(3), references, unit_rows(2, seed=1), cosine=-1.0, digests=digests)
    assert [(leak["path"], leak["reference"]) for leak in leaks] == [(ogg, thunder)]
    assert leaks.unreadable == [candidates[0], candidates[2]]
    assert "2 unreadable files" in caplog.text
    assert json.loads(json.dumps(leaks)) == list(leaks)
    with pytest.raises(ValueError):
        find_leaks(candidates, unit_rows(2), references, unit_rows(2))
    with pytest.raises(ValueError):
        find_leaks(candidates, unit_rows(3, d=8), references, unit_rows(2))
    assert find_leaks([], np.zeros((0, 4)), references, unit_rows(2, d=4)) == []


def test_find_leaks_toy_world_no_false_positives(toy_world_summary, tmp_path):
    """The toy world's unpaired pool against its three target sets, cosine gate open (random embeddings, top 3):
    no leak; a re-encoded, trimmed copy of one target clip planted in the pool is the only one found."""
    paths = toy_world_summary["paths"]
    pool = sorted(glob.glob(os.path.join(paths["unpaired_dir"], "*.wav")))
    targets = sorted(glob.glob(os.path.join(paths["esc50"], "audio", "*.wav"))
                     + glob.glob(os.path.join(paths["us8k"], "audio", "*", "*.wav"))
                     + glob.glob(os.path.join(paths["tut"], "*", "audio", "*.wav")))
    assert len(pool) == toy_world_summary["counts"]["unpaired"] and len(targets) == 100 + 80 + 36
    planted_ref = targets[7]
    planted = lossy_trimmed_copy(planted_ref, str(tmp_path / "Yplanted.ogg"), 22050, format="OGG",
                                 subtype="VORBIS")
    shutil.copy(pool[0], tmp_path / "renamed.wav")  # a pool clip under another name: not a target, no leak
    candidates = pool + [planted, str(tmp_path / "renamed.wav")]
    ref_emb = unit_rows(len(targets), seed=11)
    cand_emb = unit_rows(len(candidates), seed=12)
    cand_emb[len(pool)] = ref_emb[7]  # the planted copy's top reference is its original

    # mel_corr=-1: every candidate reports its best-correlated reference among its top 3, the margin.
    best = find_leaks(candidates, cand_emb, targets, ref_emb, cosine=-1.0, mel_corr=-1.0, top_k=3, wave_corr=-1.0)
    assert len(best) == len(candidates)
    found = [leak for leak in best if leak["mel_corr"] >= DEFAULT_MEL_CORR]
    assert [(leak["path"], leak["reference"]) for leak in found] == [(planted, planted_ref)]
    assert abs(found[0]["offset_s"] - TRIM_START_S) <= 0.015
    others = max(leak["mel_corr"] for leak in best if leak["path"] != planted)
    assert others < DEFAULT_MEL_CORR - 0.1, others
    assert max(leak["wave_corr"] for leak in best if leak["path"] != planted) < 0.5 < found[0]["wave_corr"]


# ------------------------------------------------------------ by hand: python -m curation.audit / curation.report
def _emb_dir(folder, paths, emb):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "audio_paths.txt"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in paths))
    np.save(os.path.join(folder, "audio_emb.npy"), emb)
    return folder


def test_audit_command_finds_drops_and_shows_the_leak_on_the_report(esc_dupes, tmp_path, capsys):
    """A curation folder run by hand: the audit command lists the leaked clips, cleans the pairs CSV and
    the report command shows them."""
    from curation.audit import main as audit_main
    from curation.report import main as report_main
    from dataset.manifest import read_csv, write_csv

    copy, original = esc_dupes["ogg"]
    exact, exact_src = esc_dupes["exact"]
    others = [p for p in ESC_CLIPS if p not in (original, exact_src)]
    pool = [copy, exact] + others
    emb = unit_rows(len(pool))
    save = _emb_dir(str(tmp_path / "save"), pool, emb)
    refs = [original, exact_src]
    ref_emb = emb[:2].copy()  # the copies' teacher embeddings equal their originals': the cosine gate passes
    eval_dir = _emb_dir(str(tmp_path / "esc50_emb"), refs, ref_emb)
    write_csv(os.path.join(save, "du_pairs_thr0.5.csv"),
              [{"ID": f"{i}", "wav_path": p, "caption": f"caption {i}", "similarity": "0.6"} for i, p in
               enumerate(pool)], ["ID", "wav_path", "caption", "similarity"])
    audit = str(tmp_path / "audit")
    code = audit_main([f"--emb_dir={save}", f"--eval_emb_dir={eval_dir}", "--pairs",
                       os.path.join(save, "du_pairs_thr0.5.csv"), f"--out={audit}", "--cosine=-1.0"])
    assert code == 0
    rows = read_csv(os.path.join(audit, "leakage.csv"))
    assert {(r["path"], r["reference"], r["kind"], r["action"]) for r in rows} == {
        (copy, original, "near", "dropped"), (exact, exact_src, "exact", "dropped")}
    kept = read_csv(os.path.join(audit, "du_pairs_thr0.5_clean.csv"))
    assert [r["wav_path"] for r in kept] == others
    assert "2 of 5 clips are evaluation clips (1 exact, 1 near)" in capsys.readouterr().out
    assert audit_main([f"--emb_dir={save}", f"--eval_emb_dir={eval_dir}", f"--out={audit}", "--policy=fail",
                       "--cosine=-1.0"]) == 1
    written = report_main([f"--emb_dir={save}", f"--leakage={os.path.join(audit, 'leakage.csv')}",
                           f"--out={tmp_path / 'page'}"])
    html = open(written["html"], encoding="utf-8").read()
    assert 'class="leakage-counts"' in html and os.path.basename(copy) in html
    with pytest.raises(SystemExit, match="audio_emb.npy has 2 rows for 3 paths"):
        _emb_dir(str(tmp_path / "bad"), refs + [copy], ref_emb)
        audit_main([f"--emb_dir={tmp_path / 'bad'}", f"--eval_emb_dir={eval_dir}", f"--out={audit}"])


def _sweep(rng, n, sr=16000):
    """A siren: one sweep pattern (0.5-1.1 kHz, 1.2 s period) with its own small drift, phase and noise."""
    t = np.arange(n) / sr
    track = 800 + 300 * np.sin(2 * np.pi * t / 1.2) + np.cumsum(rng.normal(0, 0.05, n))
    phase = 2 * np.pi * np.cumsum(track) / sr + rng.uniform(0, 2 * np.pi)
    return 0.3 * (np.sin(phase) + 0.5 * np.sin(2 * phase)) + 0.01 * rng.normal(size=n)


def test_two_recordings_of_one_repeating_pattern_are_not_taken_for_copies(tmp_path):
    """The demo toy world's synthetic sirens reach a log-mel correlation of 0.93: the spectrogram's pattern repeats.
    The waveform at the aligned offset tells them apart; a lossy, trimmed copy keeps it."""
    from curation.leakage import aligned_correlation, waveform_correlation

    sr = 16000
    a, b = (str(tmp_path / f"{name}.wav") for name in ("a", "b"))
    soundfile.write(a, _sweep(np.random.default_rng(0), 5 * sr), sr)
    soundfile.write(b, _sweep(np.random.default_rng(50), 5 * sr), sr)
    copy = lossy_trimmed_copy(a, str(tmp_path / "copy.ogg"), 22050, format="OGG", subtype="VORBIS")
    mel, offset, _ = aligned_correlation(mel_signature(a), mel_signature(b))
    assert mel > DEFAULT_MEL_CORR  # the mel check alone would take b for a copy of a
    assert waveform_correlation(a, b, offset) < 0.3
    mel_copy, offset_copy, _ = aligned_correlation(mel_signature(a), mel_signature(copy))
    assert mel_copy > DEFAULT_MEL_CORR and waveform_correlation(a, copy, offset_copy) > 0.9
    emb = unit_rows(1)
    leaks = find_leaks([b, copy], np.repeat(emb, 2, axis=0), [a], emb, cosine=-1.0)
    assert [(x["path"], x["kind"]) for x in leaks] == [(copy, "near")]
    assert leaks[0]["wave_corr"] > 0.9
