"""VGGSound and TAU Urban Acoustic Scenes 2019, the zero-shot sets the paper's code prepares besides ESC-50,
UrbanSound8K and TUT 2017: tiny copies of their published layouts, their manifests row by row, and the zero-shot
command end to end with a tiny model whose predictions are recomputed here."""

import csv
import json
import os
import re

import numpy as np
import pytest
import soundfile
import torch

from conftest import TINY_CLAP, load_script, tiny_clap, write_tiny_bert
from dataset.class_lists import read_class_list
from dataset.manifest import read_csv
from dataset.pipelines import labelled_dataset
from dataset.prepare_zeroshot import ZEROSHOT_FIELDS, prepare_tau19, prepare_vggsound, prepare_zeroshot
from dataset.tau19 import paper_labels as tau19_labels
from dataset.vggsound import paper_labels as vggsound_labels
from models.text_encoder import load_tokenizer, tokenize

CUPBOARD = "cupboard opening or closing"  # the published VGGSound class the paper's list lacks


def write_clip(path, seconds=0.3, sr=16000, channels=1, subtype=None, seed=0):
    """A short noise clip (its content depends on ``seed``) in any format soundfile writes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (int(seconds * sr), channels) if channels > 1 else (int(seconds * sr),)
    soundfile.write(path, (0.3 * rng.standard_normal(shape)).astype(np.float32), sr, subtype=subtype)


# ------------------------------------------------------------ class lists
def test_paper_class_lists():
    """The paper code's label-encoder order: VGGSound's 308 classes sorted (no 'cupboard opening or closing'),
    TAU 2019's 10 scenes sorted; indices as in its label_encoder_*_ordered.txt files."""
    labels = vggsound_labels()
    assert len(labels) == 308 == len(set(labels)) and labels == sorted(labels)
    assert CUPBOARD not in labels
    expected = {"air conditioning noise": 0, "alligators, crocodiles hissing": 5, "bee, wasp, etc. buzzing": 16,
                "cow lowing": 53, "cuckoo bird calling": 57, "cutting hair with electric trimmers": 58,
                "dog barking": 61, "police car (siren)": 237, "zebra braying": 307}
    assert {name: labels.index(name) for name in expected} == expected
    assert tau19_labels() == ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
                              "street_pedestrian", "street_traffic", "tram"]
    assert read_class_list("tau19") == tau19_labels()


# ------------------------------------------------------------ VGGSound
# vggsound.csv rows (no header): youtube_id, start_seconds, label, split; then where the clip is written
# (None: not downloaded). YouTube ids may start with '-' and contain '_'; labels with commas are quoted.
VGG_ROWS = [
    ("-AbC_dEf123", 30, "dog barking", "test", "audio/-AbC_dEf123_000030.wav"),             # official name
    ("Xy_9-zzzzzz", 0, "alligators, crocodiles hissing", "test", "audio/more/Xy_9-zzzzzz_0.flac"),  # unpadded
    ("qwertyuiop1", 120, "police car (siren)", "test", "clips/qwertyuiop1_000120_000130.ogg"),  # start_end
    ("missing0001", 10, "dog barking", "test", None),                                          # not downloaded
    ("cupboard001", 5, CUPBOARD, "test", "audio/cupboard001_000005.wav"),                     # not in the list
    ("trainclip01", 20, "dog barking", "train", "audio/trainclip01_000020.wav"),              # train split
]
VGG_TEST_ROWS = {  # ID: (class_name, relative wav_path)
    "-AbC_dEf123_000030": ("dog barking", "audio/-AbC_dEf123_000030.wav"),
    "Xy_9-zzzzzz_000000": ("alligators, crocodiles hissing", "audio/more/Xy_9-zzzzzz_0.flac"),
    "qwertyuiop1_000120": ("police car (siren)", "clips/qwertyuiop1_000120_000130.ogg"),
}


@pytest.fixture
def vggsound_root(tmp_path):
    """A VGGSound copy in the published layout: vggsound.csv (one row repeated verbatim) and clips below it."""
    root = tmp_path / "VGGSound"
    root.mkdir()
    with open(root / "vggsound.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for k, (ytid, start, label, split, rel) in enumerate(VGG_ROWS):
            writer.writerow([ytid, start, label, split])
            if rel:
                write_clip(str(root / rel), seconds=0.3 + 0.1 * k, seed=k)
        writer.writerow(VGG_ROWS[0][:4])  # a repeated row is listed once
    return root


def test_vggsound_published_layout_rows(vggsound_root, tmp_path):
    out = prepare_vggsound(str(vggsound_root), str(tmp_path / "out"))
    assert out["labels"] == vggsound_labels()
    rows = read_csv(out["csv"])
    assert list(rows[0]) == ZEROSHOT_FIELDS
    got = {r["ID"]: (r["class_name"], os.path.relpath(r["wav_path"], vggsound_root)) for r in rows}
    assert got == VGG_TEST_ROWS
    assert {r["ID"]: (r["fold"], r["source_id"]) for r in rows} == {
        "-AbC_dEf123_000030": ("test", "-AbC_dEf123"), "Xy_9-zzzzzz_000000": ("test", "Xy_9-zzzzzz"),
        "qwertyuiop1_000120": ("test", "qwertyuiop1")}
    stats = out["stats"]
    assert {k: stats[k] for k in ("listed", "selected", "excluded", "kept", "missing", "unreadable")} == {
        "listed": 6, "selected": 5, "excluded": 1, "kept": 3, "missing": 1, "unreadable": 0}
    assert stats["per_fold"] == {"test": 3}
    # Both splits: the train clip joins; the cupboard clip is still left out.
    both = prepare_zeroshot("vggsound", str(tmp_path), str(tmp_path / "both"), folds=None)  # the parent works
    assert sorted(r["ID"] for r in read_csv(both["csv"])) == sorted(list(VGG_TEST_ROWS) + ["trainclip01_000020"])
    assert (both["stats"]["selected"], both["stats"]["excluded"]) == (6, 1)
    assert both["stats"]["per_fold"] == {"train": 1, "test": 3}


def test_vggsound_missing_and_excluded_clips_are_reported(vggsound_root, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="dataset.prepare_zeroshot"):
        prepare_vggsound(str(vggsound_root), str(tmp_path / "out"))
    assert re.search(r"vggsound: 1 listed clip\(s\) missing on disk were skipped, e\.g\. \S+missing0001_000010\.wav "
                     r"\(clips are looked for below --data_folder as <youtube_id>_<start:06d>", caplog.text)
    assert "vggsound: 1 clip(s) of 1 class(es) outside the paper's class list (308 classes) were left out: " \
           f"'{CUPBOARD}' (1)" in caplog.text


def test_vggsound_paper_code_class_folder_layout(tmp_path):
    """Without vggsound.csv: the paper code's copy vgg-sound-16k/{train,test}/<label>/<clip>.ogg."""
    base = tmp_path / "VGG-Sound" / "vgg-sound-16k"
    write_clip(str(base / "test" / "dog barking" / "-AbC_dEf123_000030.ogg"), seed=1)
    write_clip(str(base / "test" / "bee, wasp, etc. buzzing" / "k2_x_000004.ogg"), seed=2)
    write_clip(str(base / "test" / CUPBOARD / "cupboard001_000005.ogg"), seed=3)
    write_clip(str(base / "train" / "dog barking" / "trainclip01_000020.ogg"), seed=4)
    out = prepare_vggsound(str(tmp_path / "VGG-Sound"), str(tmp_path / "out"))
    rows = read_csv(out["csv"])
    assert {r["ID"]: (r["class_name"], r["fold"], r["source_id"]) for r in rows} == {
        "-AbC_dEf123_000030": ("dog barking", "test", "-AbC_dEf123"),
        "k2_x_000004": ("bee, wasp, etc. buzzing", "test", "k2_x"),
    }
    assert (out["stats"]["selected"], out["stats"]["excluded"], out["stats"]["kept"]) == (3, 1, 2)


def test_vggsound_wrong_folder_and_bad_rows_are_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"vggsound: found no vggsound\.csv or vgg-sound-16k/train .*"
                                                r"--data_folder must be the root"):
        prepare_vggsound(str(empty), str(tmp_path / "out"))
    with open(empty / "vggsound.csv", "w", encoding="utf-8") as f:
        f.write("abc,30,dog barking,test\nabc,thirty,dog barking,test\n")
    with pytest.raises(ValueError, match=r"vggsound\.csv, line 2: start_seconds 'thirty'"):
        prepare_vggsound(str(empty), str(tmp_path / "out"))
    with open(empty / "vggsound.csv", "w", encoding="utf-8") as f:
        f.write("abc,30,bee, wasp, etc. buzzing,test\n")  # an unquoted comma
    with pytest.raises(ValueError, match=r"line 1: expected 4 fields"):
        prepare_vggsound(str(empty), str(tmp_path / "out"))
    with open(empty / "vggsound.csv", "w", encoding="utf-8") as f:
        f.write("abc,30,dog barking,test\nabc,30,dog barking,train\n")
    with pytest.raises(ValueError, match=r"clip abc_000030 is listed twice with different labels or splits"):
        prepare_vggsound(str(empty), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"vggsound has no fold 'evaluate'.*its folds are train, test"):
        prepare_vggsound(str(empty), str(tmp_path / "out"), folds="evaluate")


# ------------------------------------------------------------ TAU Urban Acoustic Scenes 2019
TAU_DEV = "TAU-urban-acoustic-scenes-2019-development"
# (file stem, scene, fold1 setup file, written to disk?)
TAU_CLIPS = [
    ("airport-lisbon-1000-40000-a", "airport", "evaluate", True),
    ("metro_station-milan-1001-40001-a", "metro_station", "evaluate", True),
    ("street_pedestrian-lyon-1002-40002-a", "street_pedestrian", "evaluate", True),
    ("tram-paris-1003-40003-a", "tram", "evaluate", False),
    ("bus-vienna-1004-40004-a", "bus", "train", True),
    ("park-helsinki-1005-40005-a", "park", "train", True),
]


@pytest.fixture
def tau_parent(tmp_path):
    """The folder holding a TAU 2019 development copy in the published layout (48 kHz 24-bit stereo clips)."""
    dev = tmp_path / "data" / TAU_DEV
    (dev / "evaluation_setup").mkdir(parents=True)
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    setup = {"train": ["filename\tscene_label"], "evaluate": ["filename\tscene_label"], "test": ["filename"]}
    for k, (stem, scene, fold, written) in enumerate(TAU_CLIPS):
        name = f"audio/{stem}.wav"
        city, location = stem.split("-")[1:3]
        meta.append(f"{name}\t{scene}\t{city}-{location}\ta")
        setup[fold].append(f"{name}\t{scene}")
        if fold == "evaluate":
            setup["test"].append(name)
        if written:
            write_clip(str(dev / name), seconds=0.25, sr=48000, channels=2, subtype="PCM_24", seed=10 + k)
    (dev / "meta.csv").write_text("\n".join(meta) + "\n", encoding="utf-8")
    for fold, lines in setup.items():
        (dev / "evaluation_setup" / f"fold1_{fold}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data"


def test_tau19_published_layout_rows(tau_parent, tmp_path):
    out = prepare_tau19(str(tau_parent), str(tmp_path / "out"))
    assert out["labels"] == tau19_labels()
    rows = read_csv(out["csv"])
    dev = tau_parent / TAU_DEV
    assert [(r["ID"], r["class_name"], r["fold"], r["source_id"], r["wav_path"]) for r in rows] == [
        (stem, scene, "evaluate", "-".join(stem.split("-")[1:3]), str(dev / "audio" / f"{stem}.wav"))
        for stem, scene, fold, written in TAU_CLIPS if fold == "evaluate" and written
    ]
    stats = out["stats"]
    assert {k: stats[k] for k in ("listed", "selected", "excluded", "kept", "missing")} == {
        "listed": 6, "selected": 4, "excluded": 0, "kept": 3, "missing": 1}
    train = prepare_tau19(str(dev), str(tmp_path / "train"), folds="train")  # the set's own folder works too
    assert [r["ID"] for r in read_csv(train["csv"])] == ["bus-vienna-1004-40004-a", "park-helsinki-1005-40005-a"]


def test_tau19_wrong_folder_is_a_clear_error(tau_parent, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tau19: found no evaluation_setup/fold1_evaluate\.csv"):
        prepare_tau19(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    # A TUT 2017 copy has evaluation_setup/fold1_evaluate.txt, not .csv.
    tut = tmp_path / "tut" / "TUT-acoustic-scenes-2017-development" / "evaluation_setup"
    tut.mkdir(parents=True)
    (tut / "fold1_evaluate.txt").write_text("audio/a.wav\tbeach\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"fold1_evaluate\.csv"):
        prepare_tau19(str(tmp_path / "tut"), str(tmp_path / "out"))
    os.remove(tau_parent / TAU_DEV / "evaluation_setup" / "fold1_train.csv")
    with pytest.raises(FileNotFoundError, match=r"lacks evaluation_setup/fold1_train\.csv; --data_folder must be "
                                                r"the TAU-urban-acoustic-scenes-2019-development folder"):
        prepare_tau19(str(tau_parent), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"tau19 has no fold 'test'.*its folds are train, evaluate"):
        prepare_tau19(str(tau_parent), str(tmp_path / "out"), folds="test")


# ------------------------------------------------------------ the zero-shot command
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CLAP saved as an MS-CLAP-shaped file, with a vocabulary holding every word of both class lists (so
    that no two prompts tokenise alike), and its architecture as recipe flags."""
    folder = tmp_path_factory.mktemp("tiny")
    words = set()
    for label in vggsound_labels() + tau19_labels():
        words.update(re.findall(r"[a-z]+|[^\sa-z]", label.replace("_", " ")))
    bert = write_tiny_bert(folder / "bert", vocab_words=["this", "is", "sound", "of"] + sorted(words))
    model = tiny_clap(bert, seed=0).eval()
    ckpt = folder / "tiny.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    flags = [f"--{k}={v}" for k, v in dict(TINY_CLAP, text_model=bert).items() if k != "audioenc_name"]
    return {"model": model, "bert": bert, "ckpt": str(ckpt), "flags": flags}


@torch.no_grad()
def expected_predictions(tiny, csv_path, labels, sample_rate=16000, duration=1.0):
    """{ID: (predicted label, cosine)} recomputed from the manifest: "this is a sound of <label>" ('_' as a space),
    the clip's centre crop, the highest cosine."""
    model = tiny["model"]
    tokens = tokenize(load_tokenizer(tiny["bert"]), [f"this is a sound of {lab.replace('_', ' ')}" for lab in labels],
                      max_length=100)
    text = model.encode_text(**tokens)
    expected = {}
    for item in labelled_dataset(csv_path, sample_rate, duration, "center"):
        cosines = (model.encode_audio(item["sig"][None]) @ text.T)[0]
        expected[item["id"]] = (labels[int(cosines.argmax())], float(cosines.max()))
    return expected


def run_zeroshot(yaml, data_folder, out, tiny, capsys, *flags):
    load_script("microsoft_zeroshot").main([
        yaml, f"--data_folder={data_folder}", f"--clap_ckpt_path={tiny['ckpt']}", "--ssl_checkpoints_dir=",
        f"--output_base={out}", "--experiment_name=zs", "--batch_size=2", "--num_workers=0", "--eval_duration=1.0",
        "--noprogressbar", *tiny["flags"], *flags,
    ])
    with open(out / "zs" / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    with open(out / "zs" / "predictions.csv", encoding="utf-8", newline="") as f:
        predictions = {r["ID"]: r for r in csv.DictReader(f)}
    return results, predictions, capsys.readouterr().out


def assert_predictions_are(predictions, expected):
    """Each clip's predicted class and score in predictions.csv are those recomputed here."""
    for cid, (label, score) in expected.items():
        assert predictions[cid]["predicted"] == label and float(predictions[cid]["score"]) == pytest.approx(
            score, abs=1e-4), cid


def test_vggsound_zeroshot_command_end_to_end(vggsound_root, tiny, tmp_path, capsys):
    """hparams/vggsound/microsoft_zeroshot.yaml: the test split over the paper's 308 prompts, each clip's prediction
    and score as recomputed here."""
    out = tmp_path / "runs"
    results, predictions, stdout = run_zeroshot("hparams/vggsound/microsoft_zeroshot.yaml", vggsound_root, out, tiny,
                                                capsys)
    labels = vggsound_labels()
    assert results["labels"] == labels and results["dataset"] == "vggsound"
    assert results["prompts"]["alligators, crocodiles hissing"] == ["this is a sound of alligators, crocodiles hissing"]
    assert results["prompts"]["police car (siren)"] == ["this is a sound of police car (siren)"]
    assert (results["clips_scored"], results["clips_skipped"]) == (3, 0)
    assert list(results["per_fold"]) == ["test"]
    assert {k: results["preparation"][k] for k in ("selected", "excluded", "kept", "missing")} == {
        "selected": 5, "excluded": 1, "kept": 3, "missing": 1}
    assert re.search(r"^Zero-shot vggsound: top-1 [\d.]+, top-5 [\d.]+ on 3 clips \(0 skipped\), 308 classes; .*"
                     r"1 listed clips missing or unreadable at preparation; 1 clips of classes outside the class list "
                     r"left out", stdout, re.M), stdout
    expected = expected_predictions(tiny, str(out / "zs" / "zeroshot_vggsound.csv"), labels)
    assert sorted(predictions) == sorted(expected) == sorted(VGG_TEST_ROWS)
    assert all(predictions[cid]["true"] == VGG_TEST_ROWS[cid][0] for cid in expected)
    assert_predictions_are(predictions, expected)
    hits = sum(predictions[c]["predicted"] == predictions[c]["true"] for c in predictions)
    assert results["top1"] == pytest.approx(hits / 3)
    # 308 classes: the confusion PNG keeps a bounded size (class indices on the axes; names in the CSV).
    with open(out / "zs" / "confusion_matrix.png", "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert max(width, height) <= 1500, (width, height)
    with open(out / "zs" / "confusion_matrix.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f))[1:] == labels


def test_tau19_zeroshot_command_end_to_end(tau_parent, tiny, tmp_path, capsys):
    """hparams/tau19/microsoft_zeroshot.yaml: fold1_evaluate over the 10 scenes, predictions as recomputed here."""
    out = tmp_path / "runs"
    results, predictions, stdout = run_zeroshot("hparams/tau19/microsoft_zeroshot.yaml", tau_parent, out, tiny,
                                                capsys)
    labels = tau19_labels()
    assert results["labels"] == labels and results["dataset"] == "tau19"
    assert results["prompts"]["metro_station"] == ["this is a sound of metro station"]
    assert (results["clips_scored"], results["clips_skipped"], list(results["per_fold"])) == (3, 0, ["evaluate"])
    assert (results["preparation"]["missing"], results["preparation"]["excluded"]) == (1, 0)
    assert "Zero-shot tau19:" in stdout and "10 classes" in stdout
    expected = expected_predictions(tiny, str(out / "zs" / "zeroshot_tau19.csv"), labels)
    assert sorted(predictions) == sorted(expected) == sorted(s for s, _, f, w in TAU_CLIPS if f == "evaluate" and w)
    assert_predictions_are(predictions, expected)


def test_zeroshot_command_with_the_msclap_protocol(tau_parent, tiny, tmp_path, capsys):
    """--protocol=msclap: msclap's reading (48 kHz stereo -> 16 kHz, channels concatenated, repeated to 1 s) and
    prompt (MS CLAP 2022's "this is a sound of ...": the tiny model pools BERT's CLS); each clip's prediction and
    cosine are the API's under the same protocol."""
    from inference.embedder import ClapEmbedder

    out = tmp_path / "runs"
    results, predictions, _ = run_zeroshot("hparams/tau19/microsoft_zeroshot.yaml", tau_parent, out, tiny, capsys,
                                           "--protocol=msclap")
    labels = tau19_labels()
    assert results["protocol"] == "msclap" and results["templates"] == ["this is a sound of {label}"]
    assert results["prompts"]["metro_station"] == ["this is a sound of metro station"]
    assert (results["clips_scored"], results["clips_skipped"]) == (3, 0)
    rows = read_csv(str(out / "zs" / "zeroshot_tau19.csv"))
    clap = ClapEmbedder(tiny["model"], load_tokenizer(tiny["bert"]), 16000, 1.0, protocol="msclap")
    cosines = clap.embed_audio([r["wav_path"] for r in rows], return_tensors="pt") @ clap.label_embeddings(labels).T
    expected = {r["ID"]: (labels[int(c.argmax())], float(c.max())) for r, c in zip(rows, cosines)}
    assert_predictions_are(predictions, expected)
    # ... which is not what our windows give (tiled, not channel-concatenated): the protocol took effect.
    paper = clap.embed_audio([r["wav_path"] for r in rows], protocol="paper", return_tensors="pt")
    assert (paper @ clap.label_embeddings(labels).T - cosines).abs().max() > 1e-3
    # --protocol= (null): the checkpoint's own; an MS CLAP 2022-layout file is the paper's teacher: paper.
    results, _, _ = run_zeroshot("hparams/tau19/microsoft_zeroshot.yaml", tau_parent, tmp_path / "null", tiny, capsys,
                                 "--protocol=")
    assert results["protocol"] == "paper" and results["templates"] == ["this is a sound of {label}"]
