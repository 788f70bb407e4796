"""The paper code's caption clean-up (``caption_cleaning``) and validation regime (``use_zs_loader``, ``valid_pct: 0``).

Known answers are worked out by hand from the paper's code
(``dataset/prepare_curation.py`` for the captions, ``microsoft_clap_train.py``
``on_stage_end`` for the checkpoints of a run without validation).
"""

import json
import math
import os
import re

import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import REPO, check_ok, run_script
from dataset.clips import EpochState
from dataset.corpora.cleaning import CAPTION_CLEANING, clean_caption, clean_captions
from dataset.manifest import read_caption_csv, read_csv, write_csv
from dataset.prepare_insper import prepare_insper
from experiment.checkpoints import checkpoint_dirs, find_checkpoint
from experiment.key_tables import CHOICES
from training.run import dataio_prep, prepare_manifests, validation_manifest

SR = 16000
TRAIN = "recipes/microsoft_clap_train.py"
INSPER_YAML = "hparams/insper/microsoft_clap_train.yaml"
PAPER_TRAINING = [f"hparams/{d}/{r}.yaml" for d in ("insper", "us8k", "tut17")
                  for r in ("microsoft_clap_train", "softclap_train")]


def _wav(path, seconds=0.25, freq=300.0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    soundfile.write(path, (0.1 * np.sin(2 * np.pi * freq * t)).astype("float32"), SR)


# ------------------------------------------------------------------ caption clean-up: one caption
@pytest.mark.parametrize("corpus", ["clotho", "audiocaps", "macs"])
def test_clean_caption_removes_commas_and_turns_underscores_into_spaces(corpus):
    assert clean_caption("  A man speaks, then a dog_barks, twice  ", corpus) == "A man speaks then a dog barks twice"
    # Nothing else changes: quotes, $, *, HTML, case.
    assert clean_caption('a "loud" $5 *storm* <b>x</b>', corpus) == 'a "loud" $5 *storm* <b>x</b>'


def test_fsd50k_two_links_on_a_line_drop_everything_between_them():
    """The greedy ``<a.*</a>``: from the first ``<a`` to the last ``</a>`` of the line, link texts included."""
    description = ('Rain on a <a href="https://freesound.org/people/x/">tin roof</a>, recorded by '
                   '<a href="https://freesound.org/people/y/">y_user</a>.\r\nZoom H4n, 44.1kHz *stereo* $5')
    # pieces: 'Rain on a ' | '.\r\nZoom H4n, 44.1kHz *stereo* $5' -> 'Rain on a' | '. Zoom H4n 44.1kHz stereo 5'
    assert clean_caption(description, "fsd50k") == "Rain on a . Zoom H4n 44.1kHz stereo 5"


def test_fsd50k_links_on_two_lines_keep_the_text_between_the_lines():
    """``.`` does not match a line break: each line's links are removed separately."""
    description = 'A <a href="1">one</a> b\nc <a href="2">two</a> d'
    assert clean_caption(description, "fsd50k") == "A b c d"
    # No link: only the characters go (\n -> space, \r, ',', '$', '*' removed, '_' -> space); entities and
    # other tags stay.
    assert clean_caption("Dog_bark,\r\nloud &amp; <br/> $*near*", "fsd50k") == "Dog bark loud &amp; <br/> near"


# ------------------------------------------------------------------ caption clean-up: rows of a corpus
def test_clotho_and_macs_keep_each_cleaned_caption_of_a_clip_once():
    rows = [{"wav_path": "rain.wav", "caption": c} for c in
            ["Rain falls, hard", "rain falls hard", "Rain falls hard", "water_drops on a roof", "Rain falls, hard"]]
    rows += [{"wav_path": "birds.wav", "caption": c} for c in ["birds sing, loudly", "Rain falls hard"]]
    expected = [("rain.wav", "Rain falls hard"), ("rain.wav", "rain falls hard"),
                ("rain.wav", "water drops on a roof"), ("birds.wav", "birds sing loudly"),
                ("birds.wav", "Rain falls hard")]  # the same caption on another clip stays
    for corpus in ("clotho", "macs"):
        assert [(r["wav_path"], r["caption"]) for r in clean_captions(rows, corpus)] == expected
    # AudioCaps and FSD50K rows are not deduplicated (one index row per caption in the paper's code).
    assert len(clean_captions(rows, "audiocaps")) == len(rows)
    # A caption that cleaning empties is dropped; rows are copies.
    assert clean_captions([{"wav_path": "a.wav", "caption": " , _ "}], "clotho") == []
    assert rows[0]["caption"] == "Rain falls, hard"


# ------------------------------------------------------------------ caption clean-up: preparation
@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Tiny Clotho, AudioCaps, MACS and FSD50K folders in their published layouts, and one user CSV."""
    root = tmp_path_factory.mktemp("corpora")
    clotho = root / "clotho"
    clotho.mkdir()
    header = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    write_csv(str(clotho / "clotho_captions_development.csv"), [
        dict(zip(header, ["rain.wav", "Rain falls, hard", "rain falls hard", "Rain falls hard",
                          "water_drops on a roof", "Rain falls, hard"])),
        dict(zip(header, ["birds.wav", "birds sing, loudly", "Rain falls hard", "", "", ""])),
    ], fieldnames=header)
    _wav(str(clotho / "development" / "rain.wav"))
    _wav(str(clotho / "development" / "birds.wav"), freq=500)
    audiocaps = root / "audiocaps"
    write_csv(str(audiocaps / "train.csv"), [
        {"audiocap_id": 1, "youtube_id": "abc", "start_time": 30, "caption": "A man speaks, then a dog_barks"},
        {"audiocap_id": 2, "youtube_id": "abc", "start_time": 30, "caption": "A man speaks then a dog barks"},
    ])
    _wav(str(audiocaps / "audio" / "abc_30.wav"), freq=700)
    macs = root / "macs"
    macs.mkdir()
    with open(macs / "MACS.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump({"files": [{"filename": "street_1.wav", "annotations": [
            {"annotator_id": k, "sentence": s, "tags": ["traffic"]}
            for k, s in enumerate(["cars pass by", "people talk, loudly", "cars pass by"])]}]}, f)
    _wav(str(macs / "audio" / "street_1.wav"), freq=900)
    fsd = root / "fsd50k"
    write_csv(str(fsd / "FSD50K.ground_truth" / "dev.csv"), [
        {"fname": 100, "labels": "Rain", "mids": "/m/1", "split": "train"},
        {"fname": 200, "labels": "Knock", "mids": "/m/2", "split": "train"},
        {"fname": 300, "labels": "Electric_guitar,Music", "mids": "/m/3,/m/4", "split": "val"},
        {"fname": 400, "labels": "Speech", "mids": "/m/5", "split": "train"},
    ])
    info = {
        "100": {"title": "rain.wav", "description": (
            'Rain on a <a href="https://freesound.org/people/x/">tin roof</a>, recorded by '
            '<a href="https://freesound.org/people/y/">y_user</a>.\r\nZoom H4n, 44.1kHz *stereo* $5')},
        "200": {"title": "Door_knock.wav", "description": '<a href="https://freesound.org/">Door knock</a>'},
        "300": {"title": "", "description": ""},
        "400": {"title": "talk", "description": 'A <a href="1">one</a> b\nc <a href="2">two</a> d'},
    }
    (fsd / "FSD50K.metadata").mkdir()
    (fsd / "FSD50K.metadata" / "dev_clips_info_FSD50K.json").write_text(json.dumps(info), encoding="utf-8")
    for k, fname in enumerate((100, 200, 300, 400)):
        _wav(str(fsd / "FSD50K.dev_audio" / f"{fname}.wav"), freq=1100 + 100 * k)
    _wav(str(root / "mine.wav"), freq=2000)
    write_csv(str(root / "mine.csv"), [{"ID": "m", "wav_path": str(root / "mine.wav"), "caption": "mine, as_is"}])
    return str(root)


EXPECTED = {  # (source, caption) of every prepared row, by caption_cleaning
    "paper": sorted([
        ("clotho", "Rain falls hard"), ("clotho", "rain falls hard"), ("clotho", "water drops on a roof"),
        ("clotho", "birds sing loudly"), ("clotho", "Rain falls hard"),
        ("audiocaps", "A man speaks then a dog barks"), ("audiocaps", "A man speaks then a dog barks"),
        ("macs", "cars pass by"), ("macs", "people talk loudly"),
        ("fsd50k", "Rain on a . Zoom H4n 44.1kHz stereo 5"),
        ("fsd50k", "Door knock.wav"),          # the description is all link: the title instead
        ("fsd50k", "Electric guitar Music"),   # no description, no title: the labels
        ("fsd50k", "A b c d"),
        ("user", "mine, as_is"),               # a user CSV is never cleaned
    ]),
    "none": sorted([
        ("clotho", "Rain falls, hard"), ("clotho", "rain falls hard"), ("clotho", "Rain falls hard"),
        ("clotho", "water_drops on a roof"), ("clotho", "Rain falls, hard"),
        ("clotho", "birds sing, loudly"), ("clotho", "Rain falls hard"),
        ("audiocaps", "A man speaks, then a dog_barks"), ("audiocaps", "A man speaks then a dog barks"),
        ("macs", "cars pass by"), ("macs", "people talk, loudly"), ("macs", "cars pass by"),
        ("fsd50k", "Rain on a tin roof , recorded by y_user . Zoom H4n, 44.1kHz *stereo* $5"),
        ("fsd50k", "Door knock"), ("fsd50k", "Electric guitar, Music"), ("fsd50k", "A one b c two d"),
        ("user", "mine, as_is"),
    ]),
}


@pytest.mark.parametrize("cleaning", CAPTION_CLEANING)
def test_prepare_insper_cleans_the_corpora_as_the_paper_code(corpora, tmp_path, cleaning):
    out = prepare_insper(corpora, str(tmp_path / "out"), user_csvs=[os.path.join(corpora, "mine.csv")],
                         valid_pct=0.0, caption_cleaning=cleaning)
    rows = read_csv(out["train"])
    assert sorted((r["source"], r["caption"]) for r in rows) == EXPECTED[cleaning]
    assert read_csv(out["valid"]) == []
    with open(tmp_path / "out" / "prepare_insper.json", encoding="utf-8") as f:
        assert json.load(f)["options"]["caption_cleaning"] == cleaning


def test_a_changed_caption_cleaning_prepares_again(corpora, tmp_path):
    out_dir = str(tmp_path / "out")
    first = prepare_insper(corpora, out_dir, valid_pct=0.0, caption_cleaning="none")
    assert any("," in r["caption"] for r in read_csv(first["train"]))
    second = prepare_insper(corpora, out_dir, valid_pct=0.0, caption_cleaning="paper")
    assert not any("," in r["caption"] or "_" in r["caption"] for r in read_csv(second["train"]))
    written = os.path.getmtime(second["train"])
    third = prepare_insper(corpora, out_dir, valid_pct=0.0, caption_cleaning="paper")  # same options: reused
    assert os.path.getmtime(third["train"]) == written
    with pytest.raises(ValueError, match="caption_cleaning must be one of paper, none"):
        prepare_insper(corpora, out_dir, valid_pct=0.0, caption_cleaning="light")


def test_caption_cleaning_is_a_checked_choice_of_every_training_yaml(tmp_path):
    from experiment.command_line import setup

    assert CHOICES["caption_cleaning"] == CAPTION_CLEANING
    with pytest.raises(SystemExit, match=r"--caption_cleaning=light: expected one of paper, none"):
        setup(["hparams/toy/microsoft_clap_train.yaml", f"--output_base={tmp_path}", f"--data_annot_folder={tmp_path}",
               "--caption_cleaning=light"])


# ------------------------------------------------------------------ validation regime
def test_paper_yamls_need_no_zero_shot_set():
    """``use_zs_loader: False`` as in all six of the paper's training YAMLs: no ``--data_zs_folder`` needed."""
    for path in PAPER_TRAINING:
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            text = f.read()
        assert re.search(r"^use_zs_loader: False\b", text, re.M), path
        assert re.search(r"^data_zs_folder: null\b", text, re.M), path


def _pairs_csv(folder, n_clips):
    """``n_clips`` distinct clips, one caption each (words of the tiny BERT's vocabulary)."""
    words = ["a dog barks", "rain falls", "a bird sings", "a dog_barks, rain falls"]
    rows = []
    for k in range(n_clips):
        path = os.path.join(folder, "wavs", f"c{k}.wav")
        _wav(path, seconds=0.5, freq=200.0 + 150 * k)
        rows.append({"ID": f"c{k}", "wav_path": path, "caption": words[k % len(words)]})
    csv_path = os.path.join(folder, "pairs.csv")
    write_csv(csv_path, rows)
    return csv_path


def test_validation_manifest_is_none_when_nothing_is_held_out(tmp_path):
    path = str(tmp_path / "valid.csv")
    write_csv(path, [], fieldnames=["ID", "wav_path", "caption"])
    assert validation_manifest(path, 0.0) is None
    write_csv(path, [{"ID": "a", "wav_path": "/x.wav", "caption": "c"}])
    assert validation_manifest(path, 0.0) == path


@pytest.mark.parametrize("valid_pct, n_valid_clips", [(0.0, 0), (0.25, 2)])
def test_valid_pct_zero_trains_on_every_row_of_train_csv_path(tmp_path, valid_pct, n_valid_clips):
    """A student given only ``--train_csv_path``: with ``valid_pct: 0`` all its rows are trained on, no valid set."""
    csv_path = _pairs_csv(str(tmp_path), 8)
    hparams = {
        "output_folder": str(tmp_path / "run"), "save_folder": str(tmp_path / "run" / "save"),
        "data_annot_folder": None, "clotho_folder": None, "audiocaps_folder": None, "macs_folder": None,
        "fsd50k_folder": None, "user_csvs": None, "train_csv_path": csv_path, "valid_pct": valid_pct,
        "subset_pct": 1.0, "seed": 1234, "check_audio": True, "caption_cleaning": "paper",
        "sample_rate": SR, "train_duration": 0.5, "eval_duration": 0.5, "eval_crop": "center",
        "train_epoch_state": EpochState(), "curation_prob": 0.0,
    }
    prepare_manifests(hparams)
    train_set, valid_set, curated_set = dataio_prep(hparams)
    assert len(train_set) == 8 - n_valid_clips and curated_set is None
    if valid_pct == 0:
        assert hparams["valid_manifest"] is None and valid_set is None
        # The replay CSV itself is never cleaned (the paper's code copies it): the rows as given.
        def pairs(path):
            return sorted((r["ID"], r["wav_path"], r["caption"]) for r in read_caption_csv(path))

        assert pairs(os.path.join(hparams["save_folder"], "train_raw.csv")) == pairs(csv_path)
        assert ("c3", os.path.join(str(tmp_path), "wavs", "c3.wav"), "a dog_barks, rain falls") in pairs(csv_path)
    else:
        assert len(valid_set) == n_valid_clips


def _tiny_model_flags(bert):
    return [f"--text_model={bert}", "--txt_emb_dim=32", "--pretrained_text=False", "--audio_width=0.0625",
            "--out_emb=32", "--d_proj=16", "--sample_rate=16000", "--window_size=512", "--hop_size=160",
            "--fmax=8000", "--train_duration=0.5", "--eval_duration=0.5", "--num_workers=0", "--noprogressbar"]


def _logged_epochs(train_log):
    """``{epoch: line}`` of train_log.txt."""
    with open(train_log, encoding="utf-8") as f:
        return {int(m.group(1)): line for line in f if (m := re.match(r"epoch: (\d+),", line))}


def _checkpoints(save):
    """``[(epoch, meta)]`` of the checkpoints kept in ``save``."""
    found = []
    for ckpt in checkpoint_dirs(save):
        with open(os.path.join(ckpt, "CKPT.yaml"), encoding="utf-8") as f:
            meta = yaml.safe_load(f)
        with open(os.path.join(ckpt, "counter.ckpt"), encoding="utf-8") as f:
            found.append((int(f.read().strip()), meta))
    return found


@pytest.mark.slow  # trains three epochs
def test_run_without_validation_keeps_checkpoints_by_the_training_loss(tmp_path, tiny_bert):
    """``--valid_pct=0``: 100 % of the rows trained on, a checkpoint each epoch with meta ``loss`` = the logged
    training loss, kept by it (the paper code's student regime)."""
    csv_path = _pairs_csv(str(tmp_path), 8)
    epochs, batch = 3, 4
    proc = run_script([TRAIN, INSPER_YAML, f"--train_csv_path={csv_path}", f"--output_base={tmp_path}",
                       "--experiment_name=novalid", "--valid_pct=0", "--num_ckpt_keep=1",
                       f"--number_of_epochs={epochs}", f"--batch_size={batch}", "--base_lr=0.001"]
                      + _tiny_model_flags(tiny_bert))
    check_ok(proc)
    out = tmp_path / "novalid"
    assert len(read_caption_csv(str(out / "save" / "train_raw.csv"))) == 8
    assert read_csv(str(out / "valid.csv")) == []
    logged = _logged_epochs(out / "train_log.txt")
    assert sorted(logged) == [1, 2, 3]
    assert not any("valid " in line or "test " in line for line in logged.values()), logged  # no validation
    train_loss = {e: float(re.search(r"train loss: ([\d.e+-]+)", line).group(1)) for e, line in logged.items()}
    # One end-of-epoch checkpoint per epoch (SpeechBrain logs each save)...
    with open(out / "log.txt", encoding="utf-8") as f:
        assert f.read().count("Saved an end-of-epoch checkpoint") == epochs
    # ... with the training loss of its epoch as meta (the log rounds it to 3 significant digits).
    kept = _checkpoints(out / "save")
    assert kept and all(set(meta) >= {"loss"} and "acc" not in meta for _, meta in kept)
    for epoch, meta in kept:
        assert isinstance(meta["loss"], float)
        assert meta["loss"] == pytest.approx(train_loss[epoch], rel=6e-3), (epoch, meta, train_loss)
    # Kept: the latest and the best by training loss; selection by loss picks the best epoch.
    best_epoch = min(train_loss, key=train_loss.get)
    assert {e for e, _ in kept} == {epochs, best_epoch}
    chosen = find_checkpoint(str(out / "save"), "loss")
    assert int(open(os.path.join(chosen, "counter.ckpt")).read()) == best_epoch
    # Every epoch took floor(8 / 4) = 2 steps: all 8 rows (7 rows, as with one clip held out, give 1).
    brain = yaml.safe_load(open(os.path.join(find_checkpoint(str(out / "save"), "latest"), "brain.ckpt")))
    assert brain["optimizer_step"] == epochs * math.floor(8 / batch)
    weights = torch.load(os.path.join(chosen, "model.ckpt"), weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


@pytest.mark.slow
def test_run_without_validation_with_zero_shot_keeps_checkpoints_by_accuracy(tmp_path, tiny_bert):
    """``--valid_pct=0 --use_zs_loader=True``: as the paper's code, zero-shot accuracy each epoch, kept by ``acc``."""
    csv_path = _pairs_csv(str(tmp_path), 8)
    proc = run_script([TRAIN, INSPER_YAML, f"--train_csv_path={csv_path}", f"--output_base={tmp_path}",
                       "--experiment_name=zs", "--valid_pct=0", "--number_of_epochs=1", "--batch_size=4",
                       "--use_zs_loader=True", f"--data_zs_folder={os.path.join(REPO, 'tests', 'fixtures', 'esc50')}"]
                      + _tiny_model_flags(tiny_bert))
    check_ok(proc)
    out = tmp_path / "zs"
    line = _logged_epochs(out / "train_log.txt")[1]
    assert "train loss: " in line and "valid acc: " in line and "valid loss" not in line, line
    (epoch, meta), = _checkpoints(out / "save")
    assert epoch == 1 and 0.0 <= meta["acc"] <= 1.0 and isinstance(meta["loss"], float)
    logged_acc = float(re.search(r"valid acc: ([\d.e+-]+)", line).group(1))
    assert meta["acc"] == pytest.approx(logged_acc, rel=6e-3, abs=1e-9)
