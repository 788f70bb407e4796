"""Tests for dataset.prepare_zeroshot on the real ESC-50 / UrbanSound8K metadata, a TUT 2017 layout and the toy
world."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile

from conftest import FIXTURES
from dataset.audio import load_audio
from dataset.labels import ESC50_LABELS, US8K_LABELS
from dataset.manifest import read_csv
from dataset.prepare_zeroshot import (
    ZEROSHOT_FIELDS,
    parse_folds,
    prepare_esc50,
    prepare_tut17,
    prepare_us8k,
    prepare_zeroshot,
)

ESC_CLIPS = {  # the five clips whose audio is in ../shared/fixtures/esc50/audio
    "1-100032-A-0": ("dog", "1", "100032"),
    "2-100648-A-43": ("car_horn", "2", "100648"),
    "3-103051-C-19": ("thunderstorm", "3", "103051"),
    "4-156993-A-19": ("thunderstorm", "4", "156993"),
    "5-156999-C-19": ("thunderstorm", "5", "156999"),
}


def _corrupt(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)


@pytest.fixture
def esc50(tmp_path):
    """A copy of the ESC-50 fixture (2000 rows, 5 clips) that tests may write into."""
    root = tmp_path / "ESC-50-master"
    shutil.copytree(os.path.join(FIXTURES, "esc50"), root)
    return str(root)


# ------------------------------------------------------------------ ESC-50
def test_esc50_real_metadata_counts_labels_and_skips(esc50, tmp_path):
    out = prepare_esc50(esc50, tmp_path / "out")
    stats = out["stats"]
    assert (stats["listed"], stats["selected"], stats["kept"], stats["missing"], stats["unreadable"]) == (
        2000, 2000, 5, 1995, 0)
    assert out["labels"] == ESC50_LABELS  # target order 0..49, not alphabetical
    assert out["labels"][43] == "car_horn" and out["labels"][19] == "thunderstorm"
    rows = read_csv(out["csv"])
    assert list(rows[0]) == ZEROSHOT_FIELDS
    got = {r["ID"]: (r["class_name"], r["fold"], r["source_id"]) for r in rows}
    assert got == ESC_CLIPS
    assert all(r["wav_path"] == os.path.join(esc50, "audio", r["ID"] + ".wav") for r in rows)
    assert stats["per_fold"] == {str(k): 1 for k in range(1, 6)}


def test_esc50_fold_selection(esc50, tmp_path):
    out = prepare_esc50(esc50, tmp_path / "a", folds="2,3")
    assert (out["stats"]["selected"], out["stats"]["kept"], out["stats"]["missing"]) == (800, 2, 798)
    assert sorted(r["ID"] for r in read_csv(out["csv"])) == ["2-100648-A-43", "3-103051-C-19"]
    out = prepare_esc50(esc50, tmp_path / "b", folds=[5])
    assert [r["ID"] for r in read_csv(out["csv"])] == ["5-156999-C-19"]
    assert out["stats"]["selected"] == 400


@pytest.mark.parametrize("folds", [6, 0, "x", "1,7", [], "fold1"])
def test_invalid_folds_are_a_clear_error(esc50, tmp_path, folds):
    with pytest.raises(ValueError, match=r"folds"):
        prepare_esc50(esc50, tmp_path / "out", folds=folds)


def test_parse_folds_forms():
    assert parse_folds("[1, 3]", "us8k") == ["1", "3"]
    assert parse_folds(10, "us8k") == ["10"]
    assert parse_folds(" ", "esc50") is None
    assert parse_folds("evaluation,2", "tut17") == ["2", "evaluation"]
    with pytest.raises(ValueError, match="1, 2, 3, 4, evaluation"):
        parse_folds(5, "tut17")


def test_esc50_reuse_same_options_and_redo_on_change(esc50, tmp_path):
    first = prepare_esc50(esc50, tmp_path / "out")
    assert not first["reused"]
    stamp = os.stat(first["csv"]).st_mtime_ns
    again = prepare_esc50(esc50, tmp_path / "out")
    assert again["reused"] and os.stat(first["csv"]).st_mtime_ns == stamp
    assert again["stats"] == first["stats"] and again["labels"] == first["labels"]
    other = prepare_esc50(esc50, tmp_path / "out", folds=1)
    assert not other["reused"] and other["stats"]["kept"] == 1
    with open(os.path.join(tmp_path, "out", "zeroshot_esc50.json"), encoding="utf-8") as f:
        assert json.load(f)["options"]["folds"] == ["1"]


def test_esc50_unreadable_clip_is_skipped_and_counted(esc50, tmp_path):
    _corrupt(os.path.join(esc50, "audio", "1-100038-A-14.wav"))  # listed in the metadata
    soundfile.write(os.path.join(esc50, "audio", "1-115545-A-48.wav"), np.zeros((0,)), 44100)  # empty
    out = prepare_esc50(esc50, tmp_path / "out")
    assert (out["stats"]["kept"], out["stats"]["missing"], out["stats"]["unreadable"]) == (5, 1993, 2)


def test_esc50_parent_folder_and_wrong_folder(esc50, tmp_path):
    out = prepare_esc50(os.path.dirname(esc50), tmp_path / "out")  # the folder holding ESC-50-master/
    assert out["stats"]["kept"] == 5
    with pytest.raises(FileNotFoundError, match="esc50.csv"):
        prepare_esc50(tmp_path / "out", tmp_path / "out2")


# ------------------------------------------------------------ UrbanSound8K
US8K_FORMATS = [  # (sample rate, channels, subtype): the real set mixes all of these
    (44100, 2, "PCM_16"), (48000, 1, "PCM_24"), (22050, 2, "PCM_24"), (96000, 1, "PCM_16"),
    (11025, 1, "PCM_U8"), (16000, 2, "FLOAT"), (8000, 1, "PCM_16"),
]


@pytest.fixture(scope="module")
def us8k(tmp_path_factory):
    """The real UrbanSound8K metadata with generated audio for fold 8 (3 left out, 1 corrupt) and 2 clips of fold 1."""
    root = tmp_path_factory.mktemp("us8k") / "UrbanSound8K"
    os.makedirs(root / "metadata")
    shutil.copyfile(os.path.join(FIXTURES, "urbansound8k", "metadata", "UrbanSound8K.csv"),
                    root / "metadata" / "UrbanSound8K.csv")
    with open(root / "metadata" / "UrbanSound8K.csv", encoding="utf-8", newline="") as f:
        meta = list(csv.DictReader(f))
    fold8 = [r for r in meta if r["fold"] == "8"]
    fold1 = [r for r in meta if r["fold"] == "1"][:2]
    left_out, corrupt = {r["slice_file_name"] for r in fold8[:3]}, fold8[3]["slice_file_name"]
    rng = np.random.default_rng(0)
    for i, r in enumerate(fold8 + fold1):
        name = r["slice_file_name"]
        if name in left_out:
            continue
        path = root / "audio" / f"fold{r['fold']}" / name
        if name == corrupt:
            _corrupt(str(path))
            continue
        sr, channels, subtype = US8K_FORMATS[i % len(US8K_FORMATS)]
        seconds = [0.05, 0.3, 0.9, 0.12][i % 4]  # sub-second clips, as in the real set
        os.makedirs(path.parent, exist_ok=True)
        data = 0.1 * rng.standard_normal((max(1, int(sr * seconds)), channels))
        soundfile.write(str(path), data, sr, subtype=subtype)
    return {"root": str(root), "meta": meta, "fold8": fold8, "left_out": left_out, "corrupt": corrupt}


def test_us8k_real_metadata_one_fold(us8k, tmp_path):
    out = prepare_us8k(us8k["root"], tmp_path / "out", folds=8)
    stats = out["stats"]
    assert (stats["listed"], stats["selected"], stats["kept"], stats["missing"], stats["unreadable"]) == (
        8732, 806, 802, 3, 1)
    assert out["labels"] == US8K_LABELS  # classID order (alphabetical)
    rows = read_csv(out["csv"])
    by_name = {r["slice_file_name"]: r for r in us8k["meta"]}
    for row in rows:
        meta = by_name[os.path.basename(row["wav_path"])]
        assert row["class_name"] == meta["class"] == US8K_LABELS[int(meta["classID"])]
        assert row["source_id"] == meta["fsID"] and row["fold"] == "8"
        assert os.path.dirname(row["wav_path"]) == os.path.join(us8k["root"], "audio", "fold8")
    names = {os.path.basename(r["wav_path"]) for r in rows}
    assert not names & (us8k["left_out"] | {us8k["corrupt"]})


def test_us8k_all_folds_counts_missing(us8k, tmp_path):
    out = prepare_zeroshot("us8k", us8k["root"], tmp_path / "out")
    stats = out["stats"]
    assert (stats["selected"], stats["kept"], stats["missing"], stats["unreadable"]) == (8732, 804, 7927, 1)
    assert stats["per_fold"] == {"1": 2, "8": 802}
    with pytest.raises(ValueError, match="its folds are 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"):
        prepare_us8k(us8k["root"], tmp_path / "x", folds=11)


def test_us8k_mixed_formats_load_at_model_rate(us8k, tmp_path):
    rows = read_csv(prepare_us8k(us8k["root"], tmp_path / "out", folds=8)["csv"])
    for row in rows[: len(US8K_FORMATS) * 2]:
        wav = load_audio(row["wav_path"], 44100, 5.0, crop="center")
        assert wav.shape == (5 * 44100,) and bool(wav.isfinite().all()) and float(wav.abs().max()) > 0


# ------------------------------------------------------------------ TUT 2017
def _tut_layout(root):
    """A small TUT 2017 copy: CRLF line ends, padded fields, 2- and 3-column evaluation meta, one missing clip."""
    dev = os.path.join(root, "TUT-acoustic-scenes-2017-development")
    ev = os.path.join(root, "TUT-acoustic-scenes-2017-evaluation")
    dev_rows = [  # file, scene, location, fold
        ("audio/a001_0_10.wav", "beach", "a001", 1), ("audio/a001_10_20.wav", "beach", "a001", 1),
        ("audio/b002_0_10.wav", "cafe/restaurant", "b002", 2), ("audio/c003_0_10.wav", "city_center", "c003", 3),
        ("audio/d004_0_10.wav", "tram", "d004", 4), ("audio/d004_30_40.wav", "tram", "d004", 4),
    ]
    eval_rows = [("audio/1.wav", "cafe/restaurant", None), ("audio/2.wav", "beach", "e101"),
                 ("audio/3.wav", "tram", None)]
    with open(os.path.join(_mk(dev), "meta.txt"), "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{a}\t{s} \t{loc}\r\n" for a, s, loc, _ in dev_rows)
        f.write("\r\n")
    setup = _mk(os.path.join(dev, "evaluation_setup"))
    for k in range(1, 5):
        with open(os.path.join(setup, f"fold{k}_evaluate.txt"), "w", encoding="utf-8", newline="") as f:
            f.writelines(f"{a}\t{s}\r\n" for a, s, _, fold in dev_rows if fold == k)
    with open(os.path.join(_mk(ev), "meta.txt"), "w", encoding="utf-8", newline="") as f:
        f.writelines(f"{a}\t{s}" + (f"\t{loc}" if loc else "") + "\n" for a, s, loc in eval_rows)
    for set_root, rows in ((dev, dev_rows), (ev, eval_rows)):
        for row in rows:
            if row[0] == "audio/d004_30_40.wav":
                continue  # listed but missing
            path = os.path.join(_mk(os.path.join(set_root, "audio")), os.path.basename(row[0]))
            soundfile.write(path, 0.1 * np.ones((4410, 2)), 44100, subtype="PCM_24")
    return dev, ev


def _mk(path):
    os.makedirs(path, exist_ok=True)
    return path


def test_tut17_dev_and_eval_together(tmp_path):
    dev, ev = _tut_layout(str(tmp_path / "TUT2017"))
    out = prepare_tut17(str(tmp_path / "TUT2017"), tmp_path / "out")
    assert out["labels"] == ["beach", "cafe/restaurant", "city_center", "tram"]  # sorted
    assert (out["stats"]["kept"], out["stats"]["missing"]) == (8, 1)
    assert out["stats"]["per_fold"] == {"1": 2, "2": 1, "3": 1, "4": 1, "evaluation": 3}
    rows = {r["ID"]: r for r in read_csv(out["csv"])}
    assert rows["dev_b002_0_10"]["class_name"] == "cafe/restaurant" and rows["dev_b002_0_10"]["fold"] == "2"
    assert rows["dev_b002_0_10"]["source_id"] == "b002"
    assert rows["dev_a001_0_10"]["wav_path"] == os.path.join(dev, "audio", "a001_0_10.wav")
    assert rows["eval_1"]["class_name"] == "cafe/restaurant" and rows["eval_1"]["source_id"] == ""
    assert rows["eval_2"]["source_id"] == "e101" and rows["eval_2"]["fold"] == "evaluation"
    assert all(r["class_name"] == r["class_name"].strip() for r in rows.values())


def test_tut17_folds_and_sets(tmp_path):
    _tut_layout(str(tmp_path / "TUT2017"))
    root = str(tmp_path / "TUT2017")
    only_dev = prepare_tut17(root, tmp_path / "a", sets=("development",))
    assert {r["fold"] for r in read_csv(only_dev["csv"])} == {"1", "2", "3", "4"}
    only_eval = prepare_tut17(root, tmp_path / "b", folds="evaluation")
    assert [r["ID"] for r in read_csv(only_eval["csv"])] == ["eval_1", "eval_2", "eval_3"]
    fold1 = prepare_tut17(root, tmp_path / "c", folds=1)
    assert [r["ID"] for r in read_csv(fold1["csv"])] == ["dev_a001_0_10", "dev_a001_10_20"]
    with pytest.raises(ValueError, match="no development set"):
        prepare_tut17(root, tmp_path / "d", folds=1, sets=("evaluation",))
    with pytest.raises(ValueError, match="no fold '5'"):
        prepare_tut17(root, tmp_path / "e", folds=5)


# -------------------------------------------------------------- toy world
def test_toy_world_sets_prepare_with_the_world_counts(toy_world, tmp_path):
    with open(os.path.join(toy_world, "world.json"), encoding="utf-8") as f:
        world = json.load(f)
    esc = prepare_zeroshot("esc", os.path.join(toy_world, "ESC-50"), tmp_path)
    targets = world["esc50"]["targets"]
    assert esc["labels"] == [targets[str(t)] for t in range(len(targets))]
    assert esc["labels"] != sorted(esc["labels"])  # the toy ESC-50 order is deliberately not alphabetical
    assert esc["stats"]["kept"] == world["counts"]["esc50"]
    us8k = prepare_zeroshot("us8k", os.path.join(toy_world, "UrbanSound8K"), tmp_path)
    assert us8k["stats"]["kept"] == world["counts"]["us8k"] and len(us8k["stats"]["per_fold"]) == 10
    tut = prepare_zeroshot("tut", os.path.join(toy_world, "TUT2017"), tmp_path)
    assert tut["stats"]["kept"] == world["counts"]["tut_development"] + world["counts"]["tut_evaluation"]
    assert tut["labels"] == sorted(world["tut"]["scenes"])
