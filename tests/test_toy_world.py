"""Tests of the synthetic toy world (``dataset.toy``), on the ``tiny`` size.

Two worlds: seed 0 through the API (the session's ``toy_world``, which other
modules share) and, in the slow tier, seed 0 again through the command line
(byte identity, CLI), with the former module's entry point
``python -m dataset.toy_world``.
"""

import csv
import doctest
import hashlib
import importlib
import os
import pkgutil
import re

import numpy as np
import pytest
import soundfile as sf
from conftest import run_script

from dataset import manifest, toy, toy_world
from dataset.toy import ESC50_CLASSES, SYNTH_SR, TUT_SCENES, US8K_CLASSES


@pytest.fixture(scope="module")
def world(toy_world_summary):
    """The session's toy world (seed 0, through the API): generated once for every test module that uses one."""
    return toy_world_summary


@pytest.fixture(scope="module")
def world_cli(tmp_path_factory, world):
    out = tmp_path_factory.mktemp("toy_cli") / "world"
    proc = run_script(["-m", "dataset.toy_world", str(out), "--size", "tiny", "--seed", "0"], timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return str(out)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def tree_hashes(root):
    """{relative path: sha256} of every file; the root prefix in text files is neutralised
    (manifests hold absolute paths, so two copies differ only there)."""
    root = os.path.abspath(root)
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            data = read_bytes(path)
            if not name.endswith(".wav"):
                data = data.replace(root.encode("utf-8"), b"<OUT>")
            hashes[os.path.relpath(path, root)] = hashlib.sha256(data).hexdigest()
    return hashes


def read_rows(path, encoding="utf-8"):
    with open(path, encoding=encoding, newline="") as f:
        return list(csv.reader(f))


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def words(text):
    return re.findall(r"[a-z']+", text.lower())


def contains_phrase(text, phrase):
    """True if the words of ``phrase`` occur consecutively among the words of ``text``."""
    t, p = words(text), words(phrase)
    return any(t[i:i + len(p)] == p for i in range(len(t) - len(p) + 1))


def clotho_rows(out, split):
    return manifest.read_csv(os.path.join(out, "clotho", f"clotho_captions_{split}.csv"))


# ---------------------------------------------------------------------------
# Determinism and command line
# ---------------------------------------------------------------------------


@pytest.mark.slow  # world_cli generates a second world
def test_same_seed_gives_identical_bytes(world, world_cli):
    a, b = tree_hashes(world["out_dir"]), tree_hashes(world_cli)
    assert sorted(a) == sorted(b)
    assert a == b


def test_different_seed_differs(world):
    """Seed 1 plans other names, captions and ids, and renders other audio.

    (A third full world would double this module's run time; the plans and a
    sample of clips show the seed reaches both metadata and audio.)
    """
    out = world["out_dir"]
    plan0, plan1 = toy.plan_world(out, "tiny", seed=0), toy.plan_world(out, "tiny", seed=1)
    assert plan0["clotho"]["captions"] != plan1["clotho"]["captions"]
    assert plan0["unpaired"]["clips"] != plan1["unpaired"]["clips"]
    esc0, esc1 = plan0["esc50"], plan1["esc50"]
    assert [r["src_file"] for r in esc0["rows"]] != [r["src_file"] for r in esc1["rows"]]
    for spec in esc0["clips"][:4]:
        on_disk, _ = sf.read(spec["path"], always_2d=True)
        # The file on disk is the seed-0 rendering of its spec (up to 16-bit rounding) ...
        assert np.abs(on_disk - toy.render_clip(spec, 0)).max() < 2 / 32768
        # ... and seed 1 renders something else.
        assert np.abs(on_disk - toy.render_clip(spec, 1)).max() > 0.01


def test_plan_is_what_was_written(world):
    """``plan_world`` gives the metadata rows and clip specs that ``generate_toy_world`` wrote."""
    out = world["out_dir"]
    plan = toy.plan_world(out, "tiny", seed=0)
    assert (plan["out_dir"], plan["size"], plan["seed"]) == (out, "tiny", 0)
    for split in ("development", "validation", "evaluation"):
        written = manifest.read_csv(os.path.join(out, "clotho", f"clotho_captions_{split}.csv"))
        assert written == plan["clotho"]["captions"][split]
        assert [os.path.basename(s["path"]) for s in plan["clotho"]["clips"][split]] \
            == [r["file_name"] for r in written]
    assert [s["path"] for s in plan["unpaired"]["clips"]] == read_lines(world["paths"]["unpaired_paths"])
    esc = manifest.read_csv(os.path.join(out, "ESC-50", "meta", "esc50.csv"))
    assert esc == [{k: str(v) for k, v in r.items()} for r in plan["esc50"]["rows"]]
    us8k = manifest.read_csv(os.path.join(out, "UrbanSound8K", "metadata", "UrbanSound8K.csv"))
    assert us8k == [{k: str(v) for k, v in r.items()} for r in plan["us8k"]["rows"]]
    ev_meta = read_tsv(os.path.join(plan["tut"]["evaluation_root"], "meta.txt"))
    assert ev_meta == [[r["file"], r["scene"]] for r in plan["tut"]["evaluation"]]
    specs = [s for split in plan["clotho"]["clips"].values() for s in split] + plan["unpaired"]["clips"] \
        + plan["esc50"]["clips"] + plan["us8k"]["clips"] + plan["tut"]["clips"]
    assert len(specs) == len({s["path"] for s in specs})
    assert all(os.path.isfile(s["path"]) for s in specs)
    wavs = [os.path.join(folder, f) for folder, _, files in os.walk(out) for f in files if f.endswith(".wav")]
    assert sorted(wavs) == sorted(s["path"] for s in specs)


@pytest.mark.slow  # world_cli generates a second world
def test_cli(world_cli):
    # The fixture generated a world through ``main``; here the error path.
    assert os.path.isfile(os.path.join(world_cli, "world.json"))
    with pytest.raises(SystemExit) as err:
        toy.main([world_cli, "--size", "huge"])
    assert err.value.code == 2
    assert os.path.isfile(os.path.join(world_cli, "world.json"))


def test_package_and_former_module_entry_points():
    # ``dataset.toy_world`` re-exports the package's public API (same objects) ...
    for name in toy.__all__:
        assert getattr(toy_world, name) is getattr(toy, name), name
    assert toy_world.generate_toy_world is toy.generate_toy_world
    assert toy_world.caption_events is toy.caption_events
    # ... and both run as a module.
    for module in ("dataset.toy", "dataset.toy_world"):
        proc = run_script(["-m", module, "--help"], timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.startswith(f"usage: python -m {module} "), proc.stdout


def test_refuses_a_folder_that_is_not_a_toy_world(tmp_path):
    (tmp_path / "clotho").mkdir()
    (tmp_path / "clotho" / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="world.json"):
        toy.generate_toy_world(tmp_path, "tiny")
    assert (tmp_path / "clotho" / "precious.txt").exists()


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_rejects_bad_seed(tmp_path, seed):
    with pytest.raises(ValueError):
        toy.generate_toy_world(tmp_path, "tiny", seed=seed)
    with pytest.raises(ValueError):
        toy.plan_world(tmp_path, "tiny", seed=seed)


def test_doctests():
    names = ["dataset.toy"] + [f"dataset.toy.{m.name}" for m in pkgutil.iter_modules(toy.__path__)
                               if m.name != "__main__"]
    assert len(names) >= 8
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name
        assert result.attempted > 0, name


def test_world_json_and_summary(world):
    import json

    with open(world["paths"]["world_json"], encoding="utf-8") as f:
        info = json.load(f)
    assert info["format_version"] == toy.FORMAT_VERSION
    assert info["seed"] == 0 and info["size"] == "tiny"
    assert [info["esc50"]["targets"][str(t)] for t in range(len(ESC50_CLASSES))] == ESC50_CLASSES
    assert [info["us8k"]["classes"][str(i)] for i in range(len(US8K_CLASSES))] == US8K_CLASSES
    assert info["tut"]["scenes"] == TUT_SCENES
    assert info["counts"] == world["counts"]
    assert "reverb_rt60_s" in info["condition"]
    assert world["counts"]["esc50"] == 100
    assert world["counts"]["us8k"] == 10 * len(US8K_CLASSES)
    assert world["counts"]["clotho"]["development"] >= 64


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------


def test_clotho_layout(world):
    out = world["out_dir"]
    names = []
    for split in ("development", "validation", "evaluation"):
        cap_path = os.path.join(out, "clotho", f"clotho_captions_{split}.csv")
        rows = read_rows(cap_path)
        assert rows[0] == ["file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5"]
        meta = read_rows(os.path.join(out, "clotho", f"clotho_metadata_{split}.csv"), "iso-8859-1")
        assert meta[0] == ["file_name", "keywords", "sound_id", "sound_link", "start_end_samples",
                           "manufacturer", "license"]
        assert [r[0] for r in meta[1:]] == [r[0] for r in rows[1:]]
        assert all(r[2].isdigit() and r[2] in r[3] for r in meta[1:])
        for row in rows[1:]:
            assert len(row) == 6
            assert len(set(row[1:])) == 5, row
            info = sf.info(os.path.join(out, "clotho", split, row[0]))
            assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
            assert 3.0 <= info.duration <= 6.0
            names.append(row[0])
    assert len(names) >= 64 + 2 * 12 - 4
    # Clotho file names carry spaces, commas, parentheses and non-ASCII letters.
    assert any(" " in n for n in names)
    assert any("," in n for n in names)
    assert any("(" in n and ")" in n for n in names)
    assert any(any(ord(ch) > 127 for ch in n) for n in names)
    # The metadata really is ISO-8859-1 (non-ASCII names are not UTF-8 encoded).
    raw = read_bytes(os.path.join(out, "clotho", "clotho_metadata_development.csv"))
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_pairs_csv(world):
    out = world["out_dir"]
    rows = manifest.read_caption_csv(world["paths"]["pairs_csv"])
    n_clips = len(clotho_rows(out, "development")) + len(clotho_rows(out, "validation"))
    assert len(rows) == 5 * n_clips
    assert read_rows(world["paths"]["pairs_csv"])[0] == ["ID", "wav_path", "caption"]
    assert len({r["ID"] for r in rows}) == len(rows)
    for r in rows:
        assert os.path.isabs(r["wav_path"]) and os.path.isfile(r["wav_path"])
        assert os.sep + "evaluation" + os.sep not in r["wav_path"]


def test_unpaired_pool(world):
    lines = read_lines(world["paths"]["unpaired_paths"])
    assert len(lines) == world["counts"]["unpaired"] >= 90
    assert lines == sorted(lines)
    for path in lines:
        assert os.path.isabs(path) and os.path.isfile(path)
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (32000, 1, "PCM_16")
        assert 4.0 <= info.duration <= 10.0
    labels = manifest.read_csv(world["paths"]["unpaired_labels"])
    assert [r["wav_path"] for r in labels] == lines
    for r in labels:
        events = r["events"].split(";")
        assert 1 <= len(events) <= 3 and set(events) <= set(toy.EVENTS)
    assert any(r["scene"] for r in labels) and any(not r["scene"] for r in labels)


def test_esc50_layout(world):
    root = world["paths"]["esc50"]
    rows = read_rows(os.path.join(root, "meta", "esc50.csv"))
    assert rows[0] == ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
    rows = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert len(rows) == 100
    target_of = {}
    for r in rows:
        fold, src, take, target = re.fullmatch(r"(\d)-(\d+)-([A-Z])-(\d+)\.wav", r["filename"]).groups()
        assert (fold, src, take, target) == (r["fold"], r["src_file"], r["take"], r["target"])
        assert target_of.setdefault(r["target"], r["category"]) == r["category"]
        assert r["category"] == r["category"].lower() and " " not in r["category"]
        assert r["esc10"] in ("True", "False")
        info = sf.info(os.path.join(root, "audio", r["filename"]))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_16", 5 * 44100)
    assert sorted({int(r["fold"]) for r in rows}) == [1, 2, 3, 4, 5]
    by_target = [target_of[str(t)] for t in range(len(target_of))]
    assert by_target == ESC50_CLASSES
    assert by_target != sorted(by_target)  # prompts must follow ``target``, not the alphabet
    assert any("_" in c for c in by_target)
    for fold in "12345":
        for t in target_of:
            assert sum(r["fold"] == fold and r["target"] == t for r in rows) == 2
    # A recording (src_file) never spans two folds, as in the real set.
    folds_of_src = {}
    for r in rows:
        folds_of_src.setdefault(r["src_file"], set()).add(r["fold"])
    assert all(len(f) == 1 for f in folds_of_src.values())


def test_us8k_layout(world):
    root = world["paths"]["us8k"]
    rows = read_rows(os.path.join(root, "metadata", "UrbanSound8K.csv"))
    assert rows[0] == ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    rows = [dict(zip(rows[0], r)) for r in rows[1:]]
    classes = sorted({r["class"] for r in rows})
    assert 8 <= len(classes) <= 10
    for r in rows:
        assert int(r["classID"]) == classes.index(r["class"])  # classID = alphabetical index
        fs_id, class_id, _, _ = re.fullmatch(r"(\d+)-(\d+)-(\d+)-(\d+)\.wav", r["slice_file_name"]).groups()
        assert (fs_id, class_id) == (r["fsID"], r["classID"])
        assert r["salience"] in ("1", "2")
    assert sorted({int(r["fold"]) for r in rows}) == list(range(1, 11))
    formats = set()
    durations = []
    for r in rows:
        info = sf.info(os.path.join(root, "audio", f"fold{r['fold']}", r["slice_file_name"]))
        formats.add((info.samplerate, info.channels, info.subtype))
        durations.append(info.duration)
        assert info.duration == pytest.approx(float(r["end"]) - float(r["start"]), abs=1e-3)
    assert {f[0] for f in formats} == {22050, 44100, 48000}
    assert {f[1] for f in formats} == {1, 2}
    assert {f[2] for f in formats} == {"PCM_16", "PCM_24"}
    assert max(durations) <= 4.0 + 1e-6
    assert min(durations) < 0.5


def test_tut_layout(world):
    root = world["paths"]["tut"]
    dev = os.path.join(root, "TUT-acoustic-scenes-2017-development")
    meta = read_tsv(os.path.join(dev, "meta.txt"))
    assert all(len(r) == 3 and r[0].startswith("audio/") and r[0].endswith(".wav") for r in meta)
    scene_of = {r[0]: r[1] for r in meta}
    location_of = {r[0]: r[2] for r in meta}
    assert sorted(set(scene_of.values())) == TUT_SCENES
    for scene in TUT_SCENES:
        assert len({location_of[f] for f in scene_of if scene_of[f] == scene}) >= 4
    setup = os.path.join(dev, "evaluation_setup")
    evaluated = {}
    for fold in range(1, 5):
        train = read_tsv(os.path.join(setup, f"fold{fold}_train.txt"))
        evaluate = read_tsv(os.path.join(setup, f"fold{fold}_evaluate.txt"))
        test = read_tsv(os.path.join(setup, f"fold{fold}_test.txt"))
        assert all(len(r) == 2 and scene_of[r[0]] == r[1] for r in train + evaluate)
        assert all(len(r) == 1 for r in test)
        assert [r[0] for r in test] == [r[0] for r in evaluate]
        assert sorted(r[0] for r in train + evaluate) == sorted(scene_of)
        train_locations = {location_of[r[0]] for r in train}
        for r in evaluate:
            evaluated.setdefault(r[0], []).append(fold)
            assert location_of[r[0]] not in train_locations  # folds split by location
    assert sorted(evaluated) == sorted(scene_of)
    assert all(len(f) == 1 for f in evaluated.values())
    folds_of_location = {}
    for f, folds in evaluated.items():
        folds_of_location.setdefault(location_of[f], set()).update(folds)
    assert all(len(f) == 1 for f in folds_of_location.values())

    ev = os.path.join(root, "TUT-acoustic-scenes-2017-evaluation")
    ev_meta = read_tsv(os.path.join(ev, "meta.txt"))
    assert all(len(r) == 2 for r in ev_meta)
    assert sorted({r[1] for r in ev_meta}) == TUT_SCENES
    ev_setup = os.path.join(ev, "evaluation_setup")
    assert read_tsv(os.path.join(ev_setup, "evaluate.txt")) == ev_meta
    assert [r[0] for r in read_tsv(os.path.join(ev_setup, "test.txt"))] == [r[0] for r in ev_meta]
    assert [r[0] for r in read_tsv(os.path.join(ev_setup, "map.txt"))] == [r[0] for r in ev_meta]

    for base, rows in ((dev, meta), (ev, ev_meta)):
        for r in rows:
            info = sf.info(os.path.join(base, r[0]))
            assert (info.samplerate, info.channels, info.subtype) == (44100, 2, "PCM_24")
            assert info.duration == pytest.approx(toy.TUT_SECONDS)


# ---------------------------------------------------------------------------
# Vocabulary, audibility, domain shift, learnability
# ---------------------------------------------------------------------------


def target_labels(world):
    out = world["out_dir"]
    esc = {r["category"] for r in manifest.read_csv(os.path.join(out, "ESC-50", "meta", "esc50.csv"))}
    us8k = {r["class"] for r in manifest.read_csv(os.path.join(out, "UrbanSound8K", "metadata", "UrbanSound8K.csv"))}
    tut = {r[1] for r in read_tsv(os.path.join(out, "TUT2017", "TUT-acoustic-scenes-2017-development", "meta.txt"))}
    return sorted(label.replace("_", " ").replace("/", " ") for label in esc | us8k | tut)


def test_every_target_label_occurs_in_training_captions(world):
    captions = [r["caption"] for r in manifest.read_caption_csv(world["paths"]["pairs_csv"])]
    missing = [label for label in target_labels(world) if not any(contains_phrase(c, label) for c in captions)]
    assert not missing, missing


def test_events_are_audible_in_every_window():
    """Training crops 2 s at random: every 1 s window of an event must carry it."""
    sr = SYNTH_SR
    for key, event in toy.EVENTS.items():
        for seed in range(2):
            x = event["synth"](6 * sr, sr, toy.stream(seed, "test-audible", key))
            windows = np.lib.stride_tricks.sliding_window_view(x, sr)[:: sr // 4]
            rms = np.sqrt(np.mean(windows ** 2, axis=1))
            assert rms.min() > 0.1 * np.sqrt(np.mean(x ** 2)), (key, seed, rms.min())


def test_captions_are_distinct_and_mention_their_events():
    rng = toy.stream(0, "test-captions")
    for key in toy.EVENTS:
        caps = toy.make_captions([key], None, rng)
        assert len(set(caps)) == 5
        assert all(c[0].isupper() and c.endswith(".") for c in caps)
    for scene in toy.SCENES:
        caps = toy.make_captions(toy.SCENES[scene]["events"], scene, rng)
        label = scene.replace("_", " ").replace("/", " ")
        assert any(contains_phrase(c, label) for c in caps), (scene, caps)


def welch_power(path, n_fft):
    """Mean power spectrum over half-overlapping Hann frames (and channels), with frequencies."""
    x, sr = sf.read(path, always_2d=True)
    x = x.mean(axis=1)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    return np.fft.rfftfreq(n_fft, 1.0 / sr), (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)


def low_frequency_ratio(path):
    """Share of the power between 20 and 150 Hz (brown noise and mains hum live there)."""
    f, power = welch_power(path, 4096)
    return power[(f > 20) & (f < 150)].sum() / power[f > 20].sum()


def hum_prominence(path):
    """Power at 50 Hz over the median power of 35-65 Hz (a narrow mains line stands out)."""
    f, power = welch_power(path, 32768)
    return power[np.abs(f - 50.0) < 1.0].max() / np.median(power[(f > 35) & (f < 65)])


def test_domain_condition_is_measurable(world):
    out = world["out_dir"]
    clean = [os.path.join(out, "clotho", "development", r["file_name"]) for r in clotho_rows(out, "development")]
    esc = [os.path.join(out, "ESC-50", "audio", r["filename"])
           for r in manifest.read_csv(os.path.join(out, "ESC-50", "meta", "esc50.csv"))]
    unpaired = read_lines(world["paths"]["unpaired_paths"])
    clean, esc, unpaired = clean[:40], esc[:40], unpaired[:40]
    clean_lf = np.median([low_frequency_ratio(p) for p in clean])
    clean_hum = np.median([hum_prominence(p) for p in clean])
    for shifted in (esc, unpaired):
        shifted_lf = np.median([low_frequency_ratio(p) for p in shifted])
        assert shifted_lf > 10 * clean_lf and shifted_lf > 0.02, (shifted_lf, clean_lf)
        shifted_hum = np.median([hum_prominence(p) for p in shifted])
        assert shifted_hum > 3 * clean_hum and shifted_hum > 3, (shifted_hum, clean_hum)


def mean_log_spectrum(path, bands=48):
    """Mean over time of log band energies (log-spaced, 50-7500 Hz), level-normalised."""
    x, sr = sf.read(path, always_2d=True)
    x = x.mean(axis=1)
    n_fft = 1024
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    band = np.digitize(np.fft.rfftfreq(n_fft, 1.0 / sr), np.geomspace(50, 7500, bands + 1)) - 1
    energy = np.stack([power[:, band == b].sum(axis=1) for b in range(bands)], axis=1)
    v = np.log(energy + 1e-10).mean(axis=0)
    return v - v.mean()


def test_events_are_learnable_across_the_shift(world):
    """Nearest class centroid of clean single-event captioned clips, applied to ESC-50."""
    out = world["out_dir"]
    labels = {}
    # A clip's events are not written in the Clotho files (as in the real corpus): use the plan.
    clips = toy.plan_world(out, "tiny", seed=0)["clotho"]["clips"]
    for split_specs in clips.values():
        for spec in split_specs:
            if spec["scene"] is None and len(spec["events"]) == 1 and spec["events"][0] in ESC50_CLASSES:
                labels[spec["path"]] = spec["events"][0]
    assert set(labels.values()) == set(ESC50_CLASSES)
    feats = {p: mean_log_spectrum(p) for p in labels}
    centroids = np.stack([np.mean([feats[p] for p in labels if labels[p] == c], axis=0) for c in ESC50_CLASSES])
    rows = manifest.read_csv(os.path.join(out, "ESC-50", "meta", "esc50.csv"))
    correct = 0
    for r in rows:
        v = mean_log_spectrum(os.path.join(out, "ESC-50", "audio", r["filename"]))
        correct += ESC50_CLASSES[int(np.argmin(((centroids - v) ** 2).sum(axis=1)))] == r["category"]
    accuracy = correct / len(rows)
    assert accuracy > 2 * (1 / len(ESC50_CLASSES)), accuracy
