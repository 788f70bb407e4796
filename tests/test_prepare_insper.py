"""Tests for dataset.prepare_insper on tiny copies of the real corpus layouts."""

import csv
import json
import logging
import os
import unicodedata

import numpy as np
import pytest
import soundfile
import yaml

from conftest import REPO
from dataset.corpora.audiocaps import read_audiocaps
from dataset.corpora.clotho import read_clotho
from dataset.corpora.fsd50k import read_fsd50k
from dataset.corpora.macs import read_macs
from dataset.corpora.user_csv import read_user_csv
from dataset.manifest import read_caption_csv, read_csv, write_csv
from dataset.prepare_insper import INSPER_FIELDS, prepare_insper

SR = 16000

TRICKY_CAPTIONS = [
    'a "quoted" word, then a comma',
    "braces {x} and {0} and $HOME and ${VAR}",
    "first line\nsecond line",
    "windows\r\nline break",
    "   leading and trailing spaces  ",
    "naïve café, 日本語, ümlaut",
    "emoji 🎵🐶 and a tab\there",
    "back\\slash; semi;colon",
]

CLOTHO_DEV_NAME = "a, b (c) é.wav"


def _audio(path, seconds=0.1, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * 300 * t), SR, format=fmt)


def _corrupt(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())


def _csv(path, header, rows, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _build_clotho(root):
    folder = os.path.join(root, "clotho")
    header = ["file_name"] + [f"caption_{k}" for k in range(1, 6)]
    dev = [
        [CLOTHO_DEV_NAME, "rain, on a roof", 'a "loud" storm', "braces {x} $HOME", "line one\nline two", "été à Paris"],
        ["rain 01.wav", "r1", "r2", "r3", "r4", ""],  # an empty caption is not a row
        ["broken.wav", "b1", "b2", "b3", "b4", "b5"],  # corrupt audio
        ["gone.wav", "g1", "g2", "g3", "g4", "g5"],  # audio missing
        ["café.wav", "c1", "c2", "c3", "c4", "c5"],  # NFC in the CSV, NFD on disk
    ]
    _csv(os.path.join(folder, "csv_files", "clotho_captions_development.csv"), header, dev)
    _csv(os.path.join(folder, "csv_files", "clotho_captions_validation.csv"), header, [["wind.wav"] + ["w"] * 5])
    _csv(os.path.join(folder, "csv_files", "clotho_captions_evaluation.csv"), header, [["held out.wav"] + ["h"] * 5])
    _csv(
        os.path.join(folder, "csv_files", "clotho_metadata_development.csv"),
        ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license"],
        [[CLOTHO_DEV_NAME, "rain;roof", "12345", "https://freesound.org/s/12345", "", "José", "CC0"]],
        encoding="iso-8859-1",
    )
    _audio(os.path.join(folder, "development", CLOTHO_DEV_NAME))
    _audio(os.path.join(folder, "development", "rain 01.wav"))
    _corrupt(os.path.join(folder, "development", "broken.wav"))
    _audio(os.path.join(folder, "development", unicodedata.normalize("NFD", "café.wav")))
    _audio(os.path.join(folder, "validation", "wind.wav"))
    _audio(os.path.join(folder, "evaluation", "held out.wav"))
    # found rows 5 + 4 + 5 + 5 + 5, 5 missing, 5 unreadable, 4 readable clips
    return {"rows": 24, "missing": 5, "unreadable": 5, "kept": 19, "clips": 4}


def _build_audiocaps(root):
    folder = os.path.join(root, "audiocaps")
    header = ["audiocap_id", "youtube_id", "start_time", "caption"]
    train = [
        [1, "-abc_d", "30", "a man speaks, then a dog barks"],
        [2, "xyz_1", "0", "an engine idles"],
        [3, "qq", "10", "birds chirp"],
        [4, "missing1", "0", "never downloaded"],
    ]
    _csv(os.path.join(folder, "dataset", "train.csv"), header, train)
    _csv(os.path.join(folder, "dataset", "val.csv"), header,
         [[10 + k, "vv", "0", f"val caption {k}"] for k in range(5)])
    _csv(os.path.join(folder, "dataset", "test.csv"), header, [[20, "tt", "0", "a test clip"]])
    _audio(os.path.join(folder, "audio", "train", "-abc_d_30.flac"))
    _audio(os.path.join(folder, "audio", "train", "Yxyz_1.wav"))
    _audio(os.path.join(folder, "audio", "train", "qq_10.000.wav"))
    _audio(os.path.join(folder, "audio", "val", "vv.wav"))
    _audio(os.path.join(folder, "audio", "test", "tt_0.wav"))
    return {"rows": 8, "missing": 1, "unreadable": 0, "kept": 8, "clips": 4}


def _build_macs(root):
    folder = os.path.join(root, "macs")
    meta = {
        "files": [
            {
                "filename": "street_1.wav",
                "annotations": [
                    {"annotator_id": k, "sentence": s, "tags": ["traffic"]}
                    for k, s in enumerate(["cars pass by", "a bus, then people talk", "traffic noise"])
                ],
            },
            {
                "filename": "park_2.wav",
                "annotations": [{"annotator_id": 1, "sentence": "birds sing", "tags": ["birds"]},
                                {"annotator_id": 2, "sentence": "children play", "tags": ["children"]}],
            },
            {
                "filename": "absent_3.wav",
                "annotations": [{"annotator_id": 1, "sentence": "x", "tags": []},
                                {"annotator_id": 2, "sentence": "y", "tags": []}],
            },
        ]
    }
    os.makedirs(folder)
    with open(os.path.join(folder, "MACS.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(meta, f)
    audio = os.path.join(folder, "TAU-urban-acoustic-scenes-2019-development", "audio")
    _audio(os.path.join(audio, "street_1.wav"))
    _audio(os.path.join(audio, "park_2.wav"))
    return {"rows": 5, "missing": 2, "unreadable": 0, "kept": 5, "clips": 2}


def _build_fsd50k(root):
    folder = os.path.join(root, "fsd50k")
    _csv(
        os.path.join(folder, "FSD50K.ground_truth", "dev.csv"),
        ["fname", "labels", "mids", "split"],
        [
            [100, "Rain,Water", "/m/06mb1,/m/0838f", "train"],
            [200, "Knock,Door", "/m/07r4wb8,/m/02dgv", "val"],
            [300, "Electric_guitar,Music", "/m/02sgy,/m/04rlf", "train"],
            [400, "Bark", "/m/05tny_", "train"],
        ],
    )
    _csv(os.path.join(folder, "FSD50K.ground_truth", "eval.csv"), ["fname", "labels", "mids"],
         [[500, "Bark", "/m/05tny_"]])
    info = {
        "100": {
            "title": "rain.wav",
            "description": 'Rain on a <a href="https://x.org/?a=1&amp;b=2">tin roof</a>.<br />\n\n'
            "Recorded with a Zoom H4n &amp; edited.",
            "tags": ["rain"],
        },
        "200": {"title": "Door knock.wav", "description": "  ", "tags": []},
        "300": {"title": "", "description": "", "tags": []},
        "400": {"title": "dog", "description": "a dog", "tags": []},
    }
    os.makedirs(os.path.join(folder, "FSD50K.metadata"))
    with open(os.path.join(folder, "FSD50K.metadata", "dev_clips_info_FSD50K.json"), "w", encoding="utf-8") as f:
        json.dump(info, f)
    for fname in (100, 200, 300):
        _audio(os.path.join(folder, "FSD50K.dev_audio", f"{fname}.wav"))
    _audio(os.path.join(folder, "FSD50K.eval_audio", "500.wav"))
    return {"rows": 3, "missing": 1, "unreadable": 0, "kept": 3, "clips": 3}


def _build_user(root):
    folder = os.path.join(root, "user")
    for k in range(4):
        _audio(os.path.join(folder, "wavs", f"u{k}.wav"))
    rows = [{"ID": "my id,1", "wav_path": "wavs/u0.wav", "caption": TRICKY_CAPTIONS[0]},
            # collides with the first Clotho ID: must be made unique
            {"ID": "clotho_000000", "wav_path": "wavs/u1.wav", "caption": TRICKY_CAPTIONS[1]}]
    rows += [{"ID": f"u{k}", "wav_path": f"wavs/u{k % 4}.wav", "caption": c}
             for k, c in enumerate(TRICKY_CAPTIONS[2:], 2)]
    rows.append({"ID": "lost", "wav_path": "wavs/missing.wav", "caption": "no audio"})
    pairs = os.path.join(folder, "pairs.csv")
    write_csv(pairs, rows)
    _audio(os.path.join(folder, "other.wav"))
    other = os.path.join(folder, "other.csv")
    write_csv(other, [{"wav_path": os.path.join(folder, "other.wav"), "caption": f"mine {k}", "source": "mydata"}
                      for k in range(2)])
    return ([pairs, other], {"rows": len(TRICKY_CAPTIONS), "missing": 1, "clips": 4},
            {"rows": 2, "missing": 0, "clips": 1})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("insper"))
    expected = {
        "clotho": _build_clotho(root),
        "audiocaps": _build_audiocaps(root),
        "macs": _build_macs(root),
        "fsd50k": _build_fsd50k(root),
    }
    user_csvs, user_pairs, user_other = _build_user(root)
    return {"root": root, "expected": expected, "user_csvs": user_csvs, "user_pairs": user_pairs,
            "user_other": user_other}


def _prepare(world, save_folder, **kwargs):
    kwargs.setdefault("user_csvs", world["user_csvs"])
    kwargs.setdefault("valid_pct", 0.25)
    # The world's expected counts include AudioCaps' validation split (ours); the default is tested on its own.
    kwargs.setdefault("audiocaps_splits", "train+val")
    return prepare_insper(world["root"], str(save_folder), **kwargs)


def _clips(rows):
    return {row["wav_path"] for row in rows}


# ------------------------------------------------------------------- readers
def test_read_clotho(world):
    rows, n_missing = read_clotho(os.path.join(world["root"], "clotho"))
    assert n_missing == 5 and len(rows) == 24
    by_name = {}
    for row in rows:
        by_name.setdefault(unicodedata.normalize("NFC", os.path.basename(row["wav_path"])), []).append(row)
    assert set(by_name) == {CLOTHO_DEV_NAME, "rain 01.wav", "broken.wav", "café.wav", "wind.wav"}
    assert [r["caption"] for r in by_name[CLOTHO_DEV_NAME]] == [
        "rain, on a roof", 'a "loud" storm', "braces {x} $HOME", "line one\nline two", "été à Paris"]
    assert {r["source_id"] for r in by_name[CLOTHO_DEV_NAME]} == {"12345"}
    assert {r["source_id"] for r in by_name["wind.wav"]} == {""}
    assert all(os.path.isabs(r["wav_path"]) and os.path.isfile(r["wav_path"]) for r in rows)
    assert {r["source"] for r in rows} == {"clotho"}
    evaluation, _ = read_clotho(os.path.join(world["root"], "clotho"), splits=("evaluation",))
    assert len(evaluation) == 5


def test_read_audiocaps(world):
    rows, n_missing = read_audiocaps(os.path.join(world["root"], "audiocaps"))
    assert n_missing == 1 and len(rows) == 8
    found = {r["source_id"]: os.path.basename(r["wav_path"]) for r in rows}
    assert found == {"-abc_d": "-abc_d_30.flac", "xyz_1": "Yxyz_1.wav", "qq": "qq_10.000.wav", "vv": "vv.wav"}
    assert "a test clip" not in {r["caption"] for r in rows}


def test_read_macs_and_fsd50k(world):
    rows, n_missing = read_macs(os.path.join(world["root"], "macs"))
    assert n_missing == 2 and [r["caption"] for r in rows][:3] == ["cars pass by", "a bus, then people talk",
                                                                  "traffic noise"]
    assert {r["source_id"] for r in rows} == {""}
    rows, n_missing = read_fsd50k(os.path.join(world["root"], "fsd50k"))
    assert n_missing == 1
    captions = {r["source_id"]: r["caption"] for r in rows}
    assert captions == {
        "100": "Rain on a tin roof . Recorded with a Zoom H4n & edited.",
        "200": "Door knock.wav",
        "300": "Electric guitar, Music",
    }


def test_read_user_csv(world):
    rows, n_missing = read_user_csv(world["user_csvs"][0])
    assert n_missing == 1 and [r["caption"] for r in rows] == TRICKY_CAPTIONS
    assert {r["source"] for r in rows} == {"user"}
    other, _ = read_user_csv(world["user_csvs"][1])
    assert {r["source"] for r in other} == {"mydata"}


# ------------------------------------------------------------------ preparer
def test_prepare_counts_ids_and_split(world, tmp_path):
    out = _prepare(world, tmp_path / "out")
    stats = out["stats"]
    for corpus, expected in world["expected"].items():
        got = stats["corpora"][corpus]
        assert {k: got[k] for k in ("rows", "missing", "unreadable", "kept")} == {
            k: expected[k] for k in ("rows", "missing", "unreadable", "kept")}, corpus
    pairs, other = world["user_csvs"]
    assert stats["corpora"][f"user:{pairs}"]["kept"] == len(TRICKY_CAPTIONS)
    assert stats["corpora"][f"user:{pairs}"]["missing"] == 1
    assert stats["corpora"][f"user:{other}"]["kept"] == 2

    train, valid = read_csv(out["train"]), read_csv(out["valid"])
    assert list(train[0]) == INSPER_FIELDS
    total_rows = sum(e["kept"] for e in world["expected"].values()) + len(TRICKY_CAPTIONS) + 2
    total_clips = sum(e["clips"] for e in world["expected"].values()) + 4 + 1
    assert len(train) + len(valid) == total_rows == stats["train_rows"] + stats["valid_rows"]
    assert len(_clips(train)) == stats["train_clips"] and len(_clips(valid)) == stats["valid_clips"]
    assert stats["train_clips"] + stats["valid_clips"] == total_clips
    assert stats["valid_clips"] == round(0.25 * total_clips)
    assert not _clips(train) & _clips(valid)

    ids = [row["ID"] for row in train + valid]
    assert len(ids) == len(set(ids))
    assert all(id_ and all(c.isalnum() or c in "_.-" for c in id_) for id_ in ids)
    assert "my_id_1" in ids and "clotho_000000_2" in ids
    assert all(os.path.isabs(row["wav_path"]) for row in train + valid)
    assert not any("broken" in row["wav_path"] or "held out" in row["wav_path"] for row in train + valid)
    assert not any(row["caption"] in ("a test clip", "h") for row in train + valid)
    sources = {row["source"] for row in train + valid}
    assert sources == {"clotho", "audiocaps", "macs", "fsd50k", "user", "mydata"}

    # Tricky captions survive the whole trip, read back as SpeechBrain-independent CSV.
    back = read_caption_csv(out["train"]) + read_caption_csv(out["valid"])
    assert sorted(r["caption"] for r in back if r["source"] == "user") == sorted(TRICKY_CAPTIONS)
    assert {r["caption"] for r in back if r["source"] == "clotho"} >= {"braces {x} $HOME", "line one\nline two"}

    saved = json.load(open(os.path.join(out["train"].rsplit(os.sep, 1)[0], "prepare_insper.json"), encoding="utf-8"))
    assert saved["options"]["seed"] == 1234 and saved["stats"] == json.loads(json.dumps(stats))


def test_audiocaps_is_its_training_split_by_default_as_the_papers_index(world, tmp_path):
    """Default: AudioCaps' train.csv only (the paper code's insper_audiocaps_train_index.tsv); train+val: ours."""
    from dataset.prepare_insper import AUDIOCAPS_SPLITS
    from experiment.key_tables import CHOICES

    assert CHOICES["audiocaps_splits"] == AUDIOCAPS_SPLITS == ("train", "train+val")
    paper = prepare_insper(world["root"], str(tmp_path / "paper"), valid_pct=0.0)
    ours = prepare_insper(world["root"], str(tmp_path / "ours"), valid_pct=0.0, audiocaps_splits="train+val")

    def audiocaps(out):
        return sorted(r["caption"] for r in read_csv(out["train"]) if r["source"] == "audiocaps")

    # train.csv: 4 captions, one clip never downloaded; val.csv: 5 captions of one clip; test.csv never read.
    assert audiocaps(paper) == ["a man speaks, then a dog barks", "an engine idles", "birds chirp"]
    assert audiocaps(ours) == audiocaps(paper) + [f"val caption {k}" for k in range(5)]
    assert paper["stats"]["corpora"]["audiocaps"]["rows"] == 3 and ours["stats"]["corpora"]["audiocaps"]["rows"] == 8
    # Recorded, so that switching prepares again instead of reusing the other split's manifests.
    for out, value in ((paper, "train"), (ours, "train+val")):
        saved = json.load(open(os.path.join(os.path.dirname(out["train"]), "prepare_insper.json"), encoding="utf-8"))
        assert saved["options"]["audiocaps_splits"] == value
    with pytest.raises(ValueError, match=r"audiocaps_splits must be one of train, train\+val.*got 'test'"):
        prepare_insper(world["root"], str(tmp_path / "bad"), audiocaps_splits="test")
    assert not (tmp_path / "bad").exists()


def test_audiocaps_splits_flag_is_checked_before_any_work():
    from experiment.checks import check_overrides

    with pytest.raises(SystemExit, match="audiocaps_splits"):
        check_overrides(os.path.join(REPO, "hparams/insper/microsoft_clap_train.yaml"), "audiocaps_splits: val")


def test_check_audio_off_keeps_corrupt_files(world, tmp_path):
    out = _prepare(world, tmp_path / "out", check_audio=False)
    assert out["stats"]["corpora"]["clotho"]["unreadable"] == 0
    rows = read_csv(out["train"]) + read_csv(out["valid"])
    assert sum("broken" in row["wav_path"] for row in rows) == 5


def test_subset_pct_halves_training_clips(world, tmp_path):
    full = _prepare(world, tmp_path / "full")
    half = _prepare(world, tmp_path / "half", subset_pct=0.5)
    n_full = full["stats"]["train_clips"]
    assert half["stats"]["train_clips"] == round(0.5 * n_full) < n_full
    full_train, half_train = read_csv(full["train"]), read_csv(half["train"])
    assert _clips(half_train) < _clips(full_train)
    # The validation set does not depend on how much training data is kept.
    assert open(full["valid"], "rb").read() == open(half["valid"], "rb").read()
    for bad in (0, 50, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            _prepare(world, tmp_path / "bad", subset_pct=bad)
    with pytest.raises(ValueError, match="valid_pct"):
        _prepare(world, tmp_path / "bad", valid_pct=1.0)


def test_same_seed_same_bytes_other_seed_other_order(world, tmp_path):
    a = _prepare(world, tmp_path / "a")
    b = _prepare(world, tmp_path / "b")
    c = _prepare(world, tmp_path / "c", seed=99)
    for key in ("train", "valid"):
        assert open(a[key], "rb").read() == open(b[key], "rb").read()
    assert open(a["train"], "rb").read() != open(c["train"], "rb").read()


def test_second_call_skips_and_changed_options_reprepare(world, tmp_path, caplog):
    save = tmp_path / "out"
    first = _prepare(world, save)
    old = 1_000_000_000_000_000_000  # ns; an mtime no real write produces
    for path in (first["train"], first["valid"]):
        os.utime(path, ns=(old, old))
    with caplog.at_level(logging.INFO, logger="dataset.prepare_insper"):
        second = _prepare(world, save)
    assert "skipping preparation" in caplog.text
    assert os.stat(first["train"]).st_mtime_ns == old and os.stat(first["valid"]).st_mtime_ns == old
    assert second["stats"] == json.loads(json.dumps(first["stats"]))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dataset.prepare_insper"):
        third = _prepare(world, save, seed=7)
    assert "skipping preparation" not in caplog.text
    assert os.stat(third["train"]).st_mtime_ns != old
    saved = json.load(open(save / "prepare_insper.json", encoding="utf-8"))
    assert saved["options"]["seed"] == 7

    # A missing CSV also forces preparation.
    os.remove(third["valid"])
    _prepare(world, save, seed=7)
    assert os.path.isfile(third["valid"])


def test_folders_overrides_and_errors(world, tmp_path):
    root = world["root"]
    # Only explicit folders, no root; user CSVs as one comma-separated string.
    out = prepare_insper(
        None, str(tmp_path / "explicit"), macs_folder=os.path.join(root, "macs"),
        user_csvs=",".join(world["user_csvs"]), valid_pct=0.0,
    )
    assert set(out["stats"]["corpora"]) == {"macs", *(f"user:{p}" for p in world["user_csvs"])}
    assert out["stats"]["valid_rows"] == 0 and read_csv(out["valid"]) == []

    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(ValueError, match="clotho/.*audiocaps/.*macs/.*fsd50k/"):
        prepare_insper(str(empty), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="clotho/"):
        prepare_insper(None, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="audiocaps_folder"):
        prepare_insper(root, str(tmp_path / "x"), audiocaps_folder=str(tmp_path / "nonexistent"))
    with pytest.raises(ValueError, match="data_annot_folder"):
        prepare_insper(str(tmp_path / "nonexistent"), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="user_csvs"):
        prepare_insper(None, str(tmp_path / "x"), user_csvs=[str(tmp_path / "nope.csv")])


def test_corpus_folder_names_are_case_insensitive(world, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(os.path.join(world["root"], "fsd50k"), root / "FSD50K")
    out = prepare_insper(str(root), str(tmp_path / "out"), valid_pct=0.0)
    assert set(out["stats"]["corpora"]) == {"fsd50k"} and out["stats"]["train_rows"] == 3


def test_tricky_captions_round_trip(tmp_path):
    rows = [{"ID": f"r{k}", "wav_path": f"/data/{k}, x.wav", "caption": c} for k, c in enumerate(TRICKY_CAPTIONS)]
    path = tmp_path / "tricky.csv"
    write_csv(str(path), rows)
    back = read_caption_csv(str(path))
    assert [(r["ID"], r["wav_path"], r["caption"]) for r in back] == [
        (r["ID"], r["wav_path"], r["caption"]) for r in rows]
