"""The paper code's numerics as the paper YAMLs' defaults, ours as named options (issue 12, item 1).

- ``eval_crop: paper``: the curation embedding's crop of a long clip, ``random.seed(123)`` then
  ``random.randrange(N - window)`` in the resampled whole file (``dataset/curation_dataset.py``).
- ``caption_rows: per_row``: one DU / ADS pair per caption-CSV row carrying the caption
  (``retrieve_from_emb_thresh.py`` embeds one text row per CSV row).
- The log-mel front end in float32 under fp16 / bf16 autocast (``models/microsoft_clap.py``).
- ``logit_clamp: logits``: ``clamp(exp(logit_scale) * cos, max=100)`` element-wise
  (``microsoft_clap_train.py``), ours ``scale``: ``clamp(exp(logit_scale), max=100) * cos``.
"""

import math
import os
import random

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio

from conftest import REPO, check_ok, run_script
from curation.builders import caption_repeats, write_curated_pairs
from dataset.audio import load_audio, paper_crop_offset, resampled_length
from dataset.clips import AudioClips
from dataset.manifest import read_caption_csv
from embeddings.lists import caption_table, write_caption_table, write_path_list
from models.cnn14 import Cnn14
from models.loss import ClapLoss, SoftClapLoss
from test_hparams_variants import load_hparams_data


# ------------------------------------------------------------------ row 4: the curation crop
def _original_offset(length, window):
    """What the paper code computes (global ``random``, seeded before every file); the global state is restored."""
    state = random.getstate()
    try:
        random.seed(123)
        return random.randrange(length - window)
    finally:
        random.setstate(state)


@pytest.mark.parametrize("length, window", [(441000, 220500), (480000, 220500), (220501, 220500), (40000, 16000)])
def test_paper_crop_offset_is_the_seeded_randrange(length, window):
    assert paper_crop_offset(length, window) == _original_offset(length, window) == \
        random.Random(123).randrange(length - window)


def test_paper_crop_offset_known_answer_and_short_clips():
    # A 10 s AudioSet clip at 44.1 kHz, 5 s window: 0.311 s to 5.311 s (ours: center, 2.5 s to 7.5 s).
    assert paper_crop_offset(441000, 220500) == 13726
    with pytest.raises(ValueError, match="longer than the window"):
        paper_crop_offset(220500, 220500)


def _write_noise(path, sr, seconds, seed=0):
    data = np.random.default_rng(seed).standard_normal((int(round(seconds * sr)), 2)).astype(np.float32) * 0.1
    sf.write(path, data, sr, subtype="FLOAT")
    return torch.from_numpy(data.T.copy()).mean(dim=0)


# (file rate, model rate, file seconds, window seconds): down- and upsampling, same rate, a 10 s
# AudioSet-like clip, and a clip shorter than the window (tiled whole, crop irrelevant).
CASES = [(48000, 16000, 2.3, 1.0), (16000, 44100, 3.0, 1.0), (44100, 44100, 2.5, 1.0), (32000, 16000, 10.0, 5.0),
         (22050, 44100, 10.0, 5.0), (44100, 16000, 0.7, 1.0)]


@pytest.mark.parametrize("file_sr, model_sr, seconds, window", CASES)
def test_paper_crop_is_that_slice_of_the_resampled_whole_file(tmp_path, file_sr, model_sr, seconds, window):
    """Our reader reads only the frames the window needs, yet returns the paper code's samples."""
    path = str(tmp_path / "clip.wav")
    mono = _write_noise(path, file_sr, seconds)
    # The paper code: resample the whole file (torchaudio.transforms.Resample), then crop or tile.
    full = torchaudio.transforms.Resample(file_sr, model_sr)(mono) if file_sr != model_sr else mono
    num = int(window * model_sr)
    assert full.shape[0] == resampled_length(mono.shape[0], file_sr, model_sr)
    if full.shape[0] > num:
        start = _original_offset(full.shape[0], num)
        expected = full[start : start + num]
    else:
        expected = full.repeat(math.ceil(num / full.shape[0]))[:num]
    got = load_audio(path, model_sr, window, crop="paper")
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # The dataset the embedding step uses gives the same window.
    item = AudioClips([path], model_sr, window, crop="paper")[0]
    torch.testing.assert_close(item["wav"][0], expected, atol=1e-6, rtol=0)
    if full.shape[0] > num:  # the option switches: our centre crop is another window
        assert not torch.allclose(load_audio(path, model_sr, window, crop="center"), expected)


def toy_stage_commands(tmp_path):
    """The commands of the toy pipeline's embedding, DU and ADS stages (fixed thresholds: no embeddings needed)."""
    from experiment.command_line import load_hparams
    from pipeline.stages import Stage
    from pipeline.plan import SeedPlan

    overrides = "\n".join([f"output_folder: {tmp_path}", "du_threshold: 0.5", "ads_threshold_esc50: 0.5",
                           "ads_threshold_us8k: 0.5", "ads_threshold_tut17: 0.5"])
    hparams = load_hparams(os.path.join(REPO, "hparams/toy/pipeline.yaml"), overrides)
    world = Stage("world", "w", marker_dir=str(tmp_path), log_dir=str(tmp_path))
    plan = SeedPlan(hparams, 1, world, str(tmp_path / "world"))
    return hparams, {s.name: s.command() for s in plan.stages
                     if s.name in ("embeddings", "curation_du") or s.name.startswith("curation_ads")}


def test_the_paper_embedding_yaml_crops_as_the_paper_code_and_the_toy_pipeline_keeps_center(tmp_path):
    assert load_hparams_data("hparams/curation/microsoft_audioset_insper_toemb.yaml")["eval_crop"] == "paper"
    hparams, commands = toy_stage_commands(tmp_path)
    assert hparams["curation_eval_crop"] == "center"
    assert "--eval_crop=center" in commands["embeddings"]


# ------------------------------------------------------------------ row 7: pair multiplicity
def _corpus():
    """A caption corpus where "a dog barks" is carried by 3 rows (one with extra spaces), "rain falls" by 1."""
    rows = [{"ID": "r1", "wav_path": "/c/1.wav", "caption": "a dog barks"},
            {"ID": "r2", "wav_path": "/c/2.wav", "caption": "rain falls"},
            {"ID": "r3", "wav_path": "/c/3.wav", "caption": " a dog barks"},
            {"ID": "r4", "wav_path": "/c/4.wav", "caption": "a dog barks"}]
    return rows, {"a dog barks": [1.0, 0.0], "rain falls": [0.0, 1.0]}


def _original_pairs(rows, text_vec, audio, paths, threshold):
    """The paper code's DU: one text embedding per CSV row, every (clip, row) at or above the threshold."""
    text = np.array([text_vec[r["caption"].strip()] for r in rows])
    sim = audio @ text.T
    return sorted((paths[i], rows[j]["caption"].strip()) for i, j in zip(*np.nonzero(sim >= threshold)))


def test_per_row_pairs_are_the_paper_codes_and_distinct_are_ours(tmp_path):
    rows, text_vec = _corpus()
    table = caption_table(rows)
    assert [(t["caption"], t["n_rows"]) for t in table] == [("a dog barks", 3), ("rain falls", 1)]
    text = np.array([text_vec[t["caption"]] for t in table], dtype=np.float16)
    # Clip 0 is a dog, clip 1 both (cosine 0.707 with each), clip 2 rain only.
    audio = np.array([[1.0, 0.0], [0.7071, 0.7071], [0.0, 1.0]], dtype=np.float16)
    paths = ["/u/Ya.wav", "/u/Yb.wav", "/u/Yc.wav"]
    out = str(tmp_path / "per_row.csv")
    summary = write_curated_pairs(out, audio, text, paths, table, 0.7, progress=False,
                                  repeats=caption_repeats(table, "per_row"))
    got = read_caption_csv(out)  # raises on a duplicate ID
    assert sorted((r["wav_path"], r["caption"]) for r in got) == _original_pairs(rows, text_vec, audio.astype(
        np.float64), paths, 0.7)
    assert len(got) == 3 + 3 + 1 + 1 and summary["pairs"] == 8 and summary["distinct_pairs"] == 4
    assert [r["ID"] for r in got if r["wav_path"] == "/u/Ya.wav"] == ["Ya__r1", "Ya__r1__2", "Ya__r1__3"]
    assert len({r["ID"] for r in got}) == len(got)
    distinct = str(tmp_path / "distinct.csv")
    summary = write_curated_pairs(distinct, audio, text, paths, table, 0.7, progress=False,
                                  repeats=caption_repeats(table, "distinct"))
    assert [r["ID"] for r in read_caption_csv(distinct)] == ["Ya__r1", "Yb__r1", "Yb__r2", "Yc__r2"]
    assert summary["pairs"] == summary["distinct_pairs"] == 4


def test_per_row_needs_the_row_counts():
    with pytest.raises(ValueError, match="caption_rows=distinct"):
        caption_repeats([{"caption": "a", "n_rows": 0}], "per_row")
    with pytest.raises(ValueError, match="per_row, distinct"):
        caption_repeats([], "all")


@pytest.mark.slow  # two runs of the DU recipe by subprocess; write_curated_pairs' tests above are fast
def test_du_command_writes_per_row_pairs_by_default(tmp_path):
    """The paper's DU command on a hand-made embedding folder: per_row by default, distinct with the flag."""
    rows, text_vec = _corpus()
    table = caption_table(rows)
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "audio_emb.npy", np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float16))
    write_path_list(str(emb / "audio_paths.txt"), ["/u/Ya.wav", "/u/Yb.wav"])
    np.save(emb / "text_emb.npy", np.array([text_vec[t["caption"]] for t in table], dtype=np.float16))
    write_caption_table(str(emb / "text_captions.csv"), table)
    command = ["recipes/retrieve_from_emb_thresh.py", "hparams/curation/audioset_insper_duv2_retr.yaml",
               f"--emb_dir={emb}", "--sim_threshold=0.75"]
    check_ok(run_script(command))
    per_row = read_caption_csv(str(emb / "du_pairs_thr0.75.csv"))
    assert [(r["ID"], r["caption"]) for r in per_row] == [
        ("Ya__r1", "a dog barks"), ("Ya__r1__2", "a dog barks"), ("Ya__r1__3", "a dog barks"), ("Yb__r2", "rain falls")]
    check_ok(run_script(command + [f"--output_folder={tmp_path / 'distinct'}", "--caption_rows=distinct"]))
    assert [r["ID"] for r in read_caption_csv(str(tmp_path / "distinct" / "du_pairs_thr0.75.csv"))] == [
        "Ya__r1", "Yb__r2"]


def test_the_paper_du_and_ads_yamls_repeat_pairs_per_row_and_the_toy_pipeline_keeps_distinct(tmp_path):
    for name in ("audioset_insper_duv2_retr", "esc_insper_audioset_dudsv3_retr", "us8k_insper_audioset_dudsv3_retr",
                 "tut_insper_audioset_dudsv3_retr"):
        assert load_hparams_data(f"hparams/curation/{name}.yaml")["caption_rows"] == "per_row", name
    hparams, commands = toy_stage_commands(tmp_path)
    assert hparams["caption_rows"] == "distinct"
    assert sorted(commands) == ["curation_ads_esc50", "curation_ads_tut17", "curation_ads_us8k", "curation_du",
                                "embeddings"]
    for name, command in commands.items():
        assert ("--caption_rows=distinct" in command) == (name != "embeddings"), name


# ------------------------------------------------------------------ row 11: the front end under autocast
def _net():
    torch.manual_seed(0)
    return Cnn14(44100, 1024, 320, 64, 50, 14000, 10, out_emb=16, width=1 / 16).eval()


def _tone(amplitude, seconds=1.0, sr=44100):
    t = torch.arange(int(seconds * sr), dtype=torch.float32) / sr
    return (amplitude * torch.sin(2 * math.pi * 1000.0 * t))[None]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_logmel_is_float32_under_autocast(dtype):
    net = _net()
    wav = torch.randn(2, 22050) * 0.3
    with torch.no_grad():
        reference = net.logmel(wav)
        with torch.autocast("cpu", dtype=dtype):
            feats = net.logmel(wav)
            # Without the guard the mel product runs in the low precision (the test can fail).
            unguarded = net.logmel_extractor(net.spectrogram_extractor(wav))
    assert feats.dtype == torch.float32 and unguarded.dtype == dtype
    torch.testing.assert_close(feats, reference, atol=1e-5, rtol=0)


def test_loud_and_silent_clips_stay_finite_under_fp16():
    """A tone whose power exceeds float16's 65504, and silence (1e-10 is below float16's smallest number)."""
    net = _net()
    loud, silent = _tone(4.0), torch.zeros(1, 44100)
    with torch.no_grad():
        assert float(net.spectrogram_extractor(loud).max()) > 65504
        reference = net.logmel(loud)
        with torch.autocast("cpu", dtype=torch.float16):
            feats, quiet = net.logmel(loud), net.logmel(silent)
            unguarded = [net.logmel_extractor(net.spectrogram_extractor(w)) for w in (loud, silent)]
            embedding = net(loud)["embedding"]
    assert not any(bool(torch.isfinite(u).all()) for u in unguarded)  # what the guard prevents
    assert bool(torch.isfinite(feats).all()) and float(feats.max()) > 40
    torch.testing.assert_close(feats, reference, atol=1e-4, rtol=0)
    assert float(quiet.min()) == float(quiet.max()) == -100.0
    assert bool(torch.isfinite(embedding).all())


# ------------------------------------------------------------------ row 15: where the logits are clamped
def _embeddings():
    """a = e1, e2; t chosen so that cos = a @ t.T = [[0.70, 0.66], [0.64, 0.68]] (unit rows, float64)."""
    a = torch.eye(2, 4, dtype=torch.float64)
    t = torch.tensor([[0.70, 0.64, math.sqrt(1 - 0.70**2 - 0.64**2), 0.0],
                      [0.66, 0.68, 0.0, math.sqrt(1 - 0.66**2 - 0.68**2)]], dtype=torch.float64)
    return a, t


def _loss_and_grad(loss_fn, log_scale):
    a, t = _embeddings()
    logit_scale = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)  # the model's parameter
    loss, logits = loss_fn(a, t, logit_scale.exp())
    loss.backward()
    return float(loss.detach()), float(logit_scale.grad), logits.detach()


def test_logit_clamp_known_answer_above_100():
    """exp(logit_scale) = 150: the paper code's clamp of each logit vs ours of the scale, value and gradient."""
    lp1, lp4 = math.log1p(math.exp(-1)), math.log1p(math.exp(-4))
    sig1, sig4 = 1 / (1 + math.e), 1 / (1 + math.exp(4))

    # logits: min(150 cos, 100) = [[100, 99], [96, 100]]. Rows (a->t): CE of [100, 99] and [96, 100];
    # columns (t->a): [100, 96] and [99, 100]; the loss is the mean of the two directions' means.
    loss, grad, logits = _loss_and_grad(ClapLoss(100.0, logit_clamp="logits"), math.log(150.0))
    torch.testing.assert_close(logits, torch.tensor([[100.0, 99.0], [96.0, 100.0]], dtype=torch.float64))
    assert loss == pytest.approx((lp1 + lp4) / 2, rel=1e-12)
    # Only the unclamped logits 99 = 150 * 0.66 and 96 = 150 * 0.64 pass gradient: dL/dz = (σ(-1) or σ(-4)) / 2
    # (a quarter from each direction), dz/ds = cos, ds/dlogit_scale = s = 150.
    assert grad == pytest.approx(150.0 * (0.5 * sig1 * 0.66 + 0.5 * sig4 * 0.64), rel=1e-12)

    # scale: min(150, 100) cos = [[70, 66], [64, 68]]: rows [70, 66], [64, 68]; columns [70, 64], [66, 68].
    loss, grad, logits = _loss_and_grad(ClapLoss(100.0, logit_clamp="scale"), math.log(150.0))
    torch.testing.assert_close(logits, torch.tensor([[70.0, 66.0], [64.0, 68.0]], dtype=torch.float64))
    lp6, lp2 = math.log1p(math.exp(-6)), math.log1p(math.exp(-2))
    assert loss == pytest.approx(0.5 * (lp4 + (lp6 + lp2) / 2), rel=1e-12)
    assert grad == 0.0  # the scale is frozen at 100


def test_logit_clamp_modes_agree_below_100_and_softclap_takes_the_key():
    paper = _loss_and_grad(ClapLoss(100.0, logit_clamp="logits"), math.log(50.0))
    ours = _loss_and_grad(ClapLoss(100.0, logit_clamp="scale"), math.log(50.0))
    assert paper[0] == pytest.approx(ours[0], rel=1e-12) and paper[1] == pytest.approx(ours[1], rel=1e-12)
    assert paper[1] != 0.0
    a, t = _embeddings()
    scale = torch.tensor(150.0, dtype=torch.float64)
    for targets in ("paper", "normalized"):
        soft = SoftClapLoss(beta=0.3, targets=targets, logit_clamp="logits")
        _, logits = soft(a, t, scale, teacher_audio=a, teacher_text=F.normalize(t, dim=-1))
        assert float(logits.max()) == 100.0 and float(logits[0, 1]) == pytest.approx(99.0)
    with pytest.raises(ValueError, match="logits, scale"):
        ClapLoss(logit_clamp="cos")


def test_every_training_yaml_passes_logit_clamp_to_its_loss():
    for family in ("insper", "us8k", "tut17", "toy"):
        for recipe in ("microsoft_clap_train", "softclap_train"):
            loss = load_hparams_data(f"hparams/{family}/{recipe}.yaml")["loss"]
            assert loss.value["logit_clamp"].value == "<logit_clamp>", (family, recipe)
