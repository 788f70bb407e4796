"""The paper code's files read by our recipes: label encoders, embedding files, curated CSVs, index layout.

The paper's code (zhepeiw/clap_curation) keeps its class lists in SpeechBrain
``CategoricalEncoder`` files, its curation embeddings as bare ``.npy`` arrays
whose rows are labelled by a path list or a caption CSV, its curated pairs as
``ID,wav_path,caption`` CSVs written by pandas, and its caption corpora as
tab-separated index files under ``data_annot_folder``. Every file here is
written by the tests in those formats (tiny), never copied from the paper's
repository.
"""

import csv
import json
import os
import re

import numpy as np
import pytest
import soundfile
import torch

from conftest import FIXTURES, REPO, load_script, tiny_clap, write_tiny_bert
from curation.paper_files import paper_embedding_files
from dataset.labels import dataset_labels, labels_in_file_order, prompt_label, read_label_file
from dataset.manifest import read_caption_csv, read_csv
from dataset.prepare_insper import prepare_insper

PAPER = os.path.join(FIXTURES, "paper_code")
ENCODER_FILE = os.path.join(PAPER, "label_encoder_3class.txt")
PLAIN_FILE = os.path.join(PAPER, "labels_3class.txt")
HP = os.path.join(REPO, "hparams")
SR = 16000
# The tests' tiny CLAP as YAML overrides (conftest.TINY_CLAP), the text model added per test.
TINY_FLAGS = ["--sample_rate=16000", "--window_size=512", "--hop_size=160", "--mel_bins=64", "--fmin=50",
              "--fmax=8000", "--classes_num=5", "--out_emb=32", "--txt_emb_dim=32", "--d_proj=16",
              "--audio_width=0.0625"]


def write_pandas_csv(path, header, rows):
    """A CSV as the paper's code writes them (``DataFrame.to_csv(index=False)``: minimal quoting, ``\\n`` lines)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_wav(path, seconds=0.5, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    soundfile.write(path, (0.1 * rng.standard_normal(int(SR * seconds))).astype(np.float32), SR)


# ------------------------------------------------------------ label files
def test_both_label_file_formats_give_the_class_order_of_the_file(tmp_path):
    assert read_label_file(ENCODER_FILE) == ["rain", "sea waves", "dog"]
    assert read_label_file(PLAIN_FILE) == ["rain", "sea_waves", "dog"]
    # Windows line ends, lines out of index order, a blank line: still ordered by index.
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_bytes(b"'dog' => 2\r\n\r\n'rain' => 0\r\n'sea waves' => 1\r\n================\r\n"
                         b"'starting_index' => 0\r\n")
    assert read_label_file(shuffled) == ["rain", "sea waves", "dog"]


def test_the_fixture_is_speechbrains_format_and_speechbrains_files_are_read(tmp_path):
    """SpeechBrain's own CategoricalEncoder reads our fixture, and writes files that we read, in the same order."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.load(ENCODER_FILE)
    assert list(encoder.ind2lab.values()) == read_label_file(ENCODER_FILE)
    written = tmp_path / "label_encoder_written.txt"
    CategoricalEncoder().load_or_create(str(written), from_iterables=[["wind", "it's raining", "dog bark"]])
    assert read_label_file(written) == ["wind", "it's raining", "dog bark"]


@pytest.mark.parametrize("text, message", [
    ("'rain' => 0\n'rain' => 1\n", "more than once"),
    ("'rain' => 0\n'wind' => 0\n", "index 0 is given twice"),
    ("'rain' => 0\nwind\n", "line 2"),
    ("'rain' => zero\n", "line 1"),
    ("\n\n", "no label"),
])
def test_malformed_label_files_are_refused(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_label_file(path)
    with pytest.raises(SystemExit, match=r"--label_encoder_path=.*bad\.txt"):
        labels_in_file_order(["rain"], str(path))


# The index of a few classes in the paper code's dataset/label_encoder_esc.txt,
# label_encoder_us8k_ordered.txt and label_encoder_tut2017_ordered.txt.
PAPER_INDEX = {
    "esc50": {0: "dog", 1: "rooster", 11: "sea waves", 29: "drinking sipping", 30: "door wood knock",
              33: "door wood creaks", 49: "hand saw"},
    "us8k": {0: "air conditioner", 2: "children playing", 3: "dog bark", 6: "gun shot", 9: "street music"},
    "tut17": {0: "beach", 2: "cafe restaurant", 4: "city center", 9: "metro station", 12: "residential area",
              14: "tram"},
}
PAPER_SIZES = {"esc50": 50, "us8k": 10, "tut17": 15}


@pytest.mark.parametrize("dataset", sorted(PAPER_INDEX))
def test_our_class_order_is_the_paper_codes(dataset):
    """Our ESC-50 (by target), UrbanSound8K (by classID) and TUT 2017 (sorted) orders index the classes as the
    paper code's label files do, from the published lists and from the real metadata files."""
    folders = {"esc50": os.path.join(FIXTURES, "esc50"), "us8k": os.path.join(FIXTURES, "urbansound8k")}
    lists = [dataset_labels(dataset)] + ([dataset_labels(dataset, folders[dataset])] if dataset in folders else [])
    for labels in lists:
        assert len(labels) == PAPER_SIZES[dataset]
        for index, label in PAPER_INDEX[dataset].items():
            assert prompt_label(labels[index]) == label, (dataset, index)


def test_a_label_file_orders_our_classes_and_keeps_our_spelling():
    ours = ["dog", "rain", "sea_waves"]  # ESC-50 target order
    assert labels_in_file_order(ours, ENCODER_FILE) == ["rain", "sea_waves", "dog"]
    assert labels_in_file_order(ours, PLAIN_FILE) == ["rain", "sea_waves", "dog"]
    # A label of the file that the dataset lacks stays a candidate class (the paper code scores it too).
    assert labels_in_file_order(["dog", "rain"], ENCODER_FILE) == ["rain", "sea waves", "dog"]
    with pytest.raises(SystemExit, match=r"--zs_label_encoder_path=.*\['wind'\].*not in this label file"):
        labels_in_file_order(ours + ["wind"], ENCODER_FILE, "zs_label_encoder_path")
    assert labels_in_file_order(ours + ["wind"], ENCODER_FILE, require_all=False) == ["rain", "sea_waves", "dog"]


def write_esc50(root, seconds=0.5):
    """A three-class ESC-50 layout (targets 0, 10, 11: dog, rain, sea_waves), one short clip per class."""
    rows = []
    for k, (target, category) in enumerate([(0, "dog"), (10, "rain"), (11, "sea_waves")]):
        name = f"1-{100 + k}-A-{target}.wav"
        write_wav(os.path.join(root, "audio", name), seconds, seed=k)
        rows.append([name, 1, target, category, "False", 100 + k, "A"])
    os.makedirs(os.path.join(root, "meta"), exist_ok=True)
    write_pandas_csv(os.path.join(root, "meta", "esc50.csv"),
                     ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows)
    return str(root)


@pytest.fixture
def tiny_model_file(tmp_path):
    """A tiny CLAP saved as an MS-CLAP-style file, and the folder of its text model (prompt words known)."""
    bert = write_tiny_bert(tmp_path / "bert", vocab_words="this is a sound of rain sea waves dog".split())
    path = tmp_path / "tiny_clap.pth"
    torch.save({"model": tiny_clap(bert, seed=3).state_dict()}, path)
    return str(path), bert


def test_zero_shot_recipe_scores_in_the_label_files_order(tmp_path, tiny_model_file):
    """--label_encoder_path on the paper's zero-shot command: classes, prompts and results in the file's order."""
    clap, bert = tiny_model_file
    esc = write_esc50(tmp_path / "ESC-50")
    argv = [os.path.join(HP, "esc", "microsoft_zeroshot.yaml"), f"--data_folder={esc}", f"--clap_ckpt_path={clap}",
            "--ssl_checkpoints_dir=", f"--output_base={tmp_path / 'out'}", "--experiment_name=zs",
            f"--label_encoder_path={ENCODER_FILE}", f"--text_model={bert}", "--pretrained_text=False",
            "--eval_duration=0.5", "--num_workers=0", "--batch_size=2", "--noprogressbar", "--device=cpu"] + TINY_FLAGS
    load_script("microsoft_zeroshot").main(argv)
    with open(tmp_path / "out" / "zs" / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert results["labels"] == ["rain", "sea_waves", "dog"]
    # The paper code's prompts: text_prompt + the file's label.
    assert [results["prompts"][label] for label in results["labels"]] == [
        ["this is a sound of rain"], ["this is a sound of sea waves"], ["this is a sound of dog"]]
    assert results["clips_scored"] == 3
    with open(tmp_path / "out" / "zs" / "confusion_matrix.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f))[1:] == ["rain", "sea_waves", "dog"]


def test_training_zero_shot_validation_takes_zs_label_encoder_path(tmp_path):
    from evaluation.zeroshot import zeroshot_validation_from_hparams

    hparams = {"use_zs_loader": True, "data_zs_folder": write_esc50(tmp_path / "ESC-50"), "zs_dataset": "esc50",
               "zs_folds": None, "output_folder": str(tmp_path / "out"), "sample_rate": SR, "eval_duration": 0.5,
               "eval_crop": "center", "tokenizer": None, "batch_size": 2, "num_workers": 0}
    assert zeroshot_validation_from_hparams(hparams).evaluator.labels == ["dog", "rain", "sea_waves"]
    hparams["zs_label_encoder_path"] = ENCODER_FILE
    assert zeroshot_validation_from_hparams(hparams).evaluator.labels == ["rain", "sea_waves", "dog"]


def test_label_keys_are_in_every_yaml_that_reads_labels():
    from conftest import yaml_keys

    for d in ("esc", "us8k", "tut", "tut17", "toy"):
        assert "label_encoder_path" in yaml_keys(f"hparams/{d}/microsoft_zeroshot.yaml"), d
    for d in ("insper", "us8k", "tut17", "toy"):
        for r in ("microsoft_clap_train", "softclap_train"):
            assert "zs_label_encoder_path" in yaml_keys(f"hparams/{d}/{r}.yaml"), (d, r)
    for d in ("esc", "us8k", "tut"):
        assert {"label_encoder_path", "target_emb_path"} <= yaml_keys(f"hparams/curation/{d}_insper_t2t_retr.yaml")
    for name in ("audioset_insper_duv2_retr", "esc_insper_audioset_dudsv3_retr", "us8k_insper_audioset_dudsv3_retr",
                 "tut_insper_audioset_dudsv3_retr"):
        assert {"aud_emb_path", "txt_emb_path", "txt_ds_path"} <= yaml_keys(f"hparams/curation/{name}.yaml")


# --------------------------------------------------------- embedding files
# Three clips and five caption rows in 4-d, as the paper's embedding step stores them: float16 unit rows, one
# per line of the audio list and one per row of the caption CSV (a repeated caption and an empty one included).
AUDIO_ROWS = [[1, 0, 0, 0], [0, 1, 0, 0], [0.6, 0.8, 0, 0]]
CLIPS = ["/audioset/Ya.wav", "/audioset/Yb.wav", "/audioset/Yc.wav"]
CAPTION_ROWS = [
    ("0", "/insper/0.wav", "a dog barks", [1, 0, 0, 0]),
    ("1", "/insper/1.wav", "rain falls", [0, 0, 1, 0]),
    ("2", "/insper/2.wav", "a dog barks", [1, 0, 0, 0]),
    ("3", "/insper/3.wav", "wind, then rain", [0.8, 0.6, 0, 0]),
    ("4", "/insper/4.wav", "", [0, 1, 0, 0]),
]
THRESHOLD = 0.75


def expected_pairs():
    """(clip, caption ID, caption, similarity) by hand: cosines 1 (Ya, "a dog barks"), 0.8 (Ya, "wind, then rain"),
    0.96 (Yc, "wind, then rain"); below 0.75: 0.6 (Yb and Yc with the others). Similarities are the float64
    products of the stored float16 rows. A repeated caption pairs once (row 0, not row 2); an empty caption
    (row 4, cosine 1 with Yb) is no caption."""
    a = np.array(AUDIO_ROWS, np.float16).astype(np.float64)
    t = np.array([r[3] for r in CAPTION_ROWS], np.float16).astype(np.float64)
    return [("Ya__0", CLIPS[0], "a dog barks", f"{a[0] @ t[0]:.6f}"),
            ("Ya__3", CLIPS[0], "wind, then rain", f"{a[0] @ t[3]:.6f}"),
            ("Yc__3", CLIPS[2], "wind, then rain", f"{a[2] @ t[3]:.6f}")]


def write_paper_embeddings(folder, audio_name="audio_audioset_embeddings.npy",
                           text_name="text_insper_embeddings.npy", csv_name="insper_train.csv"):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, audio_name), np.array(AUDIO_ROWS, np.float16))
    np.save(os.path.join(folder, text_name), np.array([r[3] for r in CAPTION_ROWS], np.float16))
    with open(os.path.join(folder, "good_files_du.txt"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in CLIPS))
    write_pandas_csv(os.path.join(folder, csv_name), ["ID", "wav_path", "caption"], [r[:3] for r in CAPTION_ROWS])
    return {"aud_emb_path": os.path.join(folder, audio_name), "aud_ds_path": os.path.join(folder, "good_files_du.txt"),
            "txt_emb_path": os.path.join(folder, text_name), "txt_ds_path": os.path.join(folder, csv_name)}


def run_join(yaml_name, emb_dir, *flags):
    summary = load_script("retrieve_from_emb_thresh").main(
        [os.path.join(HP, "curation", yaml_name), f"--emb_dir={emb_dir}", f"--sim_threshold={THRESHOLD}",
         "--audio_bs=2", "--text_bs=2", "--noprogressbar"] + list(flags))
    rows = read_csv(summary["curation_csv"])
    return [(r["ID"], r["wav_path"], r["caption"], r["similarity"]) for r in rows], summary["curation_csv"]


def test_du_joins_the_paper_codes_embedding_files_named_by_flags(tmp_path):
    files = write_paper_embeddings(tmp_path / "paper")
    out = tmp_path / "out"
    os.makedirs(out)
    # One pair per distinct caption (ours); the paper's per-row multiplicity: tests/test_faithful_numerics.py.
    pairs, _ = run_join("audioset_insper_duv2_retr.yaml", out, *[f"--{k}={v}" for k, v in files.items()],
                        "--caption_rows=distinct")
    assert pairs == expected_pairs()


def test_the_same_pairs_from_our_files_and_from_the_paper_codes(tmp_path):
    """Our embedding folder holding the same rows gives the same curation CSV, byte for byte."""
    from embeddings.lists import caption_table, write_caption_table, write_path_list
    from embeddings.store import save_npy

    files = write_paper_embeddings(tmp_path / "paper")
    _, paper_csv = run_join("audioset_insper_duv2_retr.yaml", tmp_path / "paper",
                            *[f"--{k}={v}" for k, v in files.items()])
    ours = tmp_path / "ours"
    rows = read_caption_csv(files["txt_ds_path"])
    table = caption_table(rows)
    save_npy(ours / "audio_emb.npy", np.array(AUDIO_ROWS, np.float16))
    write_path_list(ours / "audio_paths.txt", CLIPS)
    save_npy(ours / "text_emb.npy", np.array([CAPTION_ROWS[i][3] for i in (0, 1, 3)], np.float16))
    write_caption_table(ours / "text_captions.csv", table)
    _, our_csv = run_join("audioset_insper_duv2_retr.yaml", ours)
    with open(paper_csv, "rb") as a, open(our_csv, "rb") as b:
        assert a.read() == b.read()


def test_the_paper_codes_default_file_names_are_found_in_emb_dir(tmp_path):
    """DU: emb_dir holds audio_audioset_embeddings.npy + text_insper_embeddings.npy; ADS: + esc_insper_t2t_*."""
    emb_dir = tmp_path / "microsoft_clap_official"
    files = write_paper_embeddings(emb_dir)
    pairs, _ = run_join("audioset_insper_duv2_retr.yaml", emb_dir, f"--aud_ds_path={files['aud_ds_path']}",
                        f"--txt_ds_path={files['txt_ds_path']}", "--caption_rows=distinct")
    assert pairs == expected_pairs()
    # The paper's DS output for ESC-50: its kept rows and their CSV (IDs renumbered 0..k-1 by its writer).
    np.save(emb_dir / "esc_insper_t2t_embeddings.npy", np.array([CAPTION_ROWS[3][3]], np.float16))
    write_pandas_csv(emb_dir / "esc_insper_t2t_ds.csv", ["ID", "wav_path", "caption"],
                     [["0", CAPTION_ROWS[3][1], CAPTION_ROWS[3][2]]])
    pairs, path = run_join("esc_insper_audioset_dudsv3_retr.yaml", emb_dir, f"--aud_ds_path={files['aud_ds_path']}",
                           "--caption_rows=distinct")
    assert os.path.basename(path) == f"ads_esc50_pairs_thr{THRESHOLD}.csv"
    assert pairs == [("Ya__0",) + expected_pairs()[1][1:], ("Yc__0",) + expected_pairs()[2][1:]]
    # Ours win when both are there.
    audio, captions = paper_embedding_files(str(emb_dir), "ds_esc50", aud_ds_path=files["aud_ds_path"])
    assert audio[0].endswith("audio_audioset_embeddings.npy") and captions[0].endswith("esc_insper_t2t_embeddings.npy")
    np.save(emb_dir / "audio_emb.npy", np.zeros((1, 4), np.float16))
    assert paper_embedding_files(str(emb_dir), "ds_esc50")[0] is None


@pytest.mark.parametrize("change, message", [
    (lambda f: f.update(aud_ds_path=""), r"--aud_emb_path=.* give that list as --aud_ds_path"),
    (lambda f: open(f["aud_ds_path"], "a").write("/audioset/Yd.wav\n"),
     r"--aud_emb_path=.* has 3 rows but --aud_ds_path has 4"),
    (lambda f: f.update(txt_ds_path=""), r"--txt_emb_path=.* give that CSV as --txt_ds_path"),
    (lambda f: np.save(f["txt_emb_path"], np.ones((5, 4), np.float16)), r"not unit vectors"),
])
def test_mismatched_paper_files_are_refused_with_the_flags_named(tmp_path, change, message):
    files = write_paper_embeddings(tmp_path / "paper")
    change(files)
    with pytest.raises(SystemExit, match=message):
        run_join("audioset_insper_duv2_retr.yaml", tmp_path / "paper", *[f"--{k}={v}" for k, v in files.items()])


def test_ds_reads_the_paper_codes_caption_embeddings_and_label_file(tmp_path, tiny_model_file):
    """retrieve_ds_t2t.py with --target_emb_path (rows = rows of --target_csv_path) and --label_encoder_path."""
    from embeddings.encoders import encode_texts
    from models.text_encoder import load_tokenizer

    clap, bert = tiny_model_file
    model = tiny_clap(bert, seed=3).eval()
    prompts = ["this is a sound of rain", "this is a sound of sea waves", "this is a sound of dog"]
    prompt_emb = encode_texts(model, load_tokenizer(bert), prompts, max_length=100).astype(np.float64)
    # A unit row orthogonal to the three prompts (cosine 0 < threshold).
    basis = np.linalg.svd(prompt_emb)[2]
    orthogonal = basis[-1] / np.linalg.norm(basis[-1])
    rows = [("0", "/insper/0.wav", "waves crash on rocks", prompt_emb[1]),
            ("1", "/insper/1.wav", "a quiet room", orthogonal),
            ("2", "/insper/2.wav", "a dog, barking", prompt_emb[2]),
            ("3", "/insper/3.wav", "waves crash on rocks", prompt_emb[1])]
    target = np.array([r[3] for r in rows], np.float16)
    np.save(tmp_path / "text_insper_embeddings.npy", target)
    write_pandas_csv(tmp_path / "insper_train.csv", ["ID", "wav_path", "caption"], [r[:3] for r in rows])
    emb_dir = tmp_path / "emb"
    os.makedirs(emb_dir)
    load_script("retrieve_ds_t2t").main([
        os.path.join(HP, "curation", "esc_insper_t2t_retr.yaml"), f"--target_csv_path={tmp_path / 'insper_train.csv'}",
        f"--target_emb_path={tmp_path / 'text_insper_embeddings.npy'}", f"--label_encoder_path={ENCODER_FILE}",
        f"--clap_ckpt_path={clap}", f"--emb_dir={emb_dir}", "--sim_threshold=0.9", f"--text_model={bert}",
        "--noprogressbar", "--device=cpu"] + TINY_FLAGS)
    pairs = read_csv(emb_dir / "ds_esc50_pairs.csv")
    assert [p["ID"] for p in pairs] == ["0", "2", "3"]
    # The label of a kept caption is its most similar prompt (the reference formula on the stored rows).
    stored = np.asarray(encode_texts(model, load_tokenizer(bert), prompts, max_length=100), np.float16)
    best = (target.astype(np.float64) @ stored.astype(np.float64).T).argmax(axis=1)
    assert [p["label"] for p in pairs] == [["rain", "sea_waves", "dog"][best[int(p["ID"])]] for p in pairs]
    # The DS caption set for ADS: the file's rows of the two distinct kept captions, unchanged.
    assert np.array_equal(np.load(emb_dir / "ds_esc50_emb.npy"), target[[0, 2]])
    with open(emb_dir / "embeddings.json", encoding="utf-8") as f:
        info = json.load(f)["ds_esc50"]
    assert info["labels"] == ["rain", "sea_waves", "dog"] and info["model"] is None


# ------------------------------------------------------------ curated CSVs
def test_the_paper_codes_curated_csv_trains_as_curation_csv_and_train_csv_path(tmp_path):
    """A student run of the paper YAML on the paper's curated CSV (--curation_csv) and training CSV
    (--train_csv_path), both ID,wav_path,caption with IDs 0..n-1 as its writers number them."""
    bert = write_tiny_bert(tmp_path / "bert", vocab_words="a dog barks rain falls bird sings".split())
    clips = [str(tmp_path / "audio" / f"{k}.wav") for k in range(6)]
    for k, path in enumerate(clips):
        write_wav(path, 0.5, seed=k)
    captions = ["a dog barks", "rain falls", "a bird sings", "dog barks twice", "rain falls hard", "birds sing"]
    write_pandas_csv(tmp_path / "train_raw.csv", ["ID", "wav_path", "caption"],
                     [[k, clips[k], captions[k]] for k in range(6)])
    write_pandas_csv(tmp_path / "audioset_insper_duv2_curation.csv", ["ID", "wav_path", "caption"],
                     [[k, clips[5 - k], captions[k]] for k in range(6)])
    # Read as the recipes read them: every row, IDs kept.
    assert [r["ID"] for r in read_caption_csv(tmp_path / "audioset_insper_duv2_curation.csv")] == list("012345")
    out = tmp_path / "out"
    load_script("microsoft_clap_train").main([
        os.path.join(HP, "insper", "microsoft_clap_train.yaml"),
        f"--train_csv_path={tmp_path / 'train_raw.csv'}",
        f"--curation_csv={tmp_path / 'audioset_insper_duv2_curation.csv'}",
        "--curation_prob=0.5", f"--output_base={out}", "--experiment_name=student", "--number_of_epochs=1",
        "--batch_size=2", "--valid_pct=0.34", "--train_duration=0.5", "--eval_duration=0.5", "--num_workers=0",
        f"--text_model={bert}", "--pretrained_text=False", "--noprogressbar", "--device=cpu"] + TINY_FLAGS)
    train = read_csv(out / "student" / "train_raw.csv")
    valid = read_csv(out / "student" / "valid.csv")
    assert sorted(r["ID"] for r in train + valid) == list("012345")
    assert {r["ID"]: r["caption"] for r in train + valid} == {str(k): captions[k] for k in range(6)}
    # Curated batches were drawn from the paper's curated CSV (the epoch's counts in the training log).
    with open(out / "student" / "train_log.txt", encoding="utf-8") as f:
        log = f.read()
    counts = [int(float(n)) for n in re.findall(r"curated_batches: ([\d.e+]+)", log)]
    assert counts and counts[0] >= 1, log


# ------------------------------------------------------------ index layout
def write_index_layout(root):
    """The paper code's data_annot_folder: four index files (TSV, no header) naming audio below the folder.

    Clotho and MACS rows carry all their captions in one quoted field, one a line; a leading "/" on a path is
    dropped; a row whose audio is absent is skipped. The corpus subfolders hold audio only.
    """
    for rel in ("clotho/development/rain, café.wav", "clotho/development/birds.wav", "audiocaps/train/Y-ab_c.wav",
                "macs/audio/street_1.wav", "fsd50k/FSD50K.dev_audio/64760.wav"):
        write_wav(os.path.join(root, rel), 0.25)
    tsv = {
        "insper_clotho_index.tsv": [
            ["/clotho/development/rain, café.wav", "Rain falls, hard\nrain falls hard\nwater_drops on a roof"],
            ["clotho/development/birds.wav", "birds sing"],
            ["clotho/development/missing.wav", "gone\nalso gone"],
        ],
        "insper_audiocaps_train_index.tsv": [["/audiocaps/train/Y-ab_c.wav", "A man speaks, then a dog_barks"]],
        "insper_macs_index_notag.tsv": [["macs/audio/street_1.wav", "cars pass by\npeople talk, loudly"]],
        "insper_fsd50k_dev_index_notag.tsv": [
            ["/fsd50k/FSD50K.dev_audio/64760.wav", 'Guitar riff, see <a href="http://x">my page</a> *now*\r\n$5']],
    }
    for name, rows in tsv.items():
        with open(os.path.join(root, name), "w", encoding="utf-8", newline="") as f:
            csv.writer(f, delimiter="\t", lineterminator="\n").writerows(rows)
    return str(root)


INDEX_ROWS_PAPER = {  # (source, audio path below the folder, caption, source_id), worked out by hand
    ("clotho", "clotho/development/rain, café.wav", "Rain falls hard", ""),
    ("clotho", "clotho/development/rain, café.wav", "rain falls hard", ""),
    ("clotho", "clotho/development/rain, café.wav", "water drops on a roof", ""),
    ("clotho", "clotho/development/birds.wav", "birds sing", ""),
    ("audiocaps", "audiocaps/train/Y-ab_c.wav", "A man speaks then a dog barks", ""),
    ("macs", "macs/audio/street_1.wav", "cars pass by", ""),
    ("macs", "macs/audio/street_1.wav", "people talk loudly", ""),
    ("fsd50k", "fsd50k/FSD50K.dev_audio/64760.wav", "Guitar riff see now 5", "64760"),
}


@pytest.mark.parametrize("cleaning", ["paper", "none"])
def test_prepare_insper_reads_the_paper_codes_index_layout(tmp_path, cleaning):
    root = write_index_layout(tmp_path / "insper")
    out = prepare_insper(root, str(tmp_path / f"out_{cleaning}"), valid_pct=0.0, caption_cleaning=cleaning)
    rows = read_csv(out["train"])
    assert list(rows[0]) == ["ID", "wav_path", "caption", "source", "source_id"]
    got = {(r["source"], os.path.relpath(r["wav_path"], root), r["caption"], r["source_id"]) for r in rows}
    if cleaning == "paper":
        assert got == INDEX_ROWS_PAPER and len(rows) == len(INDEX_ROWS_PAPER)
    else:
        assert {g[2] for g in got} == {
            "Rain falls, hard", "rain falls hard", "water_drops on a roof", "birds sing",
            "A man speaks, then a dog_barks", "cars pass by", "people talk, loudly",
            'Guitar riff, see <a href="http://x">my page</a> *now*\r\n$5'}
    stats = out["stats"]["corpora"]
    assert stats["clotho"]["missing"] == 2 and stats["clotho"]["folder"].endswith("insper_clotho_index.tsv")
    assert set(stats) == {"clotho", "audiocaps", "macs", "fsd50k"}


def test_the_paper_cleaning_applies_to_the_published_layouts_and_never_to_user_csvs(tmp_path):
    root = tmp_path / "insper"
    write_wav(str(root / "clotho" / "development" / "a.wav"), 0.25)
    write_pandas_csv(root / "clotho" / "clotho_captions_development.csv", ["file_name", "caption_1", "caption_2"],
                     [["a.wav", "a dog_barks, twice", "a dog barks twice"]])
    write_wav(str(tmp_path / "u.wav"), 0.25)
    write_pandas_csv(tmp_path / "mine.csv", ["ID", "wav_path", "caption"],
                     [["u", str(tmp_path / "u.wav"), "mine, as_is"]])
    out = prepare_insper(str(root), str(tmp_path / "out"), user_csvs=[str(tmp_path / "mine.csv")], valid_pct=0.0,
                         caption_cleaning="paper")
    assert sorted((r["source"], r["caption"]) for r in read_csv(out["train"])) == [
        ("clotho", "a dog barks twice"), ("user", "mine, as_is")]
