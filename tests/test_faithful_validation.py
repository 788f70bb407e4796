"""The paper code's caption clean-up (``caption_cleaning``).

Known answers are worked out by hand from the paper's code
(``dataset/prepare_curation.py``).
"""

import json
import os

import numpy as np
import pytest
import soundfile
import yaml

from dataset.manifest import read_csv, write_csv
from dataset.prepare_insper import CAPTION_CLEANING, clean_caption, clean_captions, prepare_insper
from experiment.inputs import CHOICES

SR = 16000


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
    from experiment.arguments import setup

    assert CHOICES["caption_cleaning"] == CAPTION_CLEANING
    with pytest.raises(SystemExit, match=r"--caption_cleaning=light: expected one of paper, none"):
        setup(["hparams/toy/microsoft_clap_train.yaml", f"--output_base={tmp_path}", f"--data_annot_folder={tmp_path}",
               "--caption_cleaning=light"])
