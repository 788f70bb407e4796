"""Text↔audio retrieval: metrics against hand-computed rankings, the command on Clotho- and AudioCaps-layout folders."""

import csv
import itertools
import json
import os
import re

import numpy as np
import pytest
import soundfile

from conftest import REPO, TOY_MODEL, check_ok, run_script, yaml_keys
from evaluation.retrieval import (
    METRICS, average_precision_at_k, chance_recall, relevant_ranks, retrieval_metrics, summarise,
)


RETRIEVAL = "recipes/retrieval_eval.py"
TOY_YAML = "hparams/toy/retrieval_eval.yaml"


# ------------------------------------------------------------ metrics by hand
def sim_from_orderings(orderings, n_captions):
    """``sim[caption, clip]`` such that column ``j`` ranks the captions as ``orderings[j]`` (best first), no ties."""
    sim = np.zeros((n_captions, len(orderings)))
    for j, order in enumerate(orderings):
        assert sorted(order) == list(range(n_captions))
        for position, caption in enumerate(order):
            sim[caption, j] = 1.0 - position / n_captions
    return sim


def test_text_to_audio_by_hand():
    """Four captions, three clips; the rank of each caption's clip is read off its row."""
    sim = np.array([
        [0.9, 0.2, 0.1],  # caption 0 -> clip 0: best, rank 1
        [0.8, 0.7, 0.1],  # caption 1 -> clip 1: one clip above, rank 2
        [0.5, 0.6, 0.4],  # caption 2 -> clip 2: two above, rank 3
        [0.3, 0.9, 0.1],  # caption 3 -> clip 0: rank 2
    ])
    metrics, t2a, _ = retrieval_metrics(sim, [0, 1, 2, 0])
    assert t2a.tolist() == [1, 2, 3, 2]
    m = metrics["text_to_audio"]
    assert m["R@1"] == 0.25 and m["R@5"] == 1.0 and m["R@10"] == 1.0
    assert m["mAP@10"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert m["median_rank"] == 2.0 and m["mean_rank"] == 2.0 and m["queries"] == 4


def test_audio_to_text_five_captions_by_hand():
    """Three clips x five captions; clip 0 has only one caption in its top 10 (and top 5)."""
    rest = lambda *first: list(first) + [c for c in range(15) if c not in first]  # noqa: E731
    orderings = [
        rest(5, 6, 0, 7, 8, 9, 10, 11, 12, 13, 1, 2, 3, 4, 14),  # clip 0 (captions 0-4): ranks 3, 11, 12, 13, 14
        rest(5, 6, 0, 7, 1, 8, 2, 3, 4, 9),                      # clip 1 (captions 5-9): ranks 1, 2, 4, 6, 10
        rest(),                                                  # clip 2 (captions 10-14): ranks 11..15
    ]
    caption_clip = [0] * 5 + [1] * 5 + [2] * 5
    metrics, _, a2t = retrieval_metrics(sim_from_orderings(orderings, 15), caption_clip)
    assert [r.tolist() for r in a2t] == [[3, 11, 12, 13, 14], [1, 2, 4, 6, 10], [11, 12, 13, 14, 15]]
    ap = [(1 / 3) / 5, (1 / 1 + 2 / 2 + 3 / 4 + 4 / 6 + 5 / 10) / 5, 0.0]
    m = metrics["audio_to_text"]
    assert (m["R@1"], m["R@5"], m["R@10"]) == (1 / 3, 2 / 3, 2 / 3)
    assert m["mAP@10"] == pytest.approx(sum(ap) / 3)
    assert m["median_rank"] == 3.0 and m["mean_rank"] == 5.0 and m["queries"] == 3
    # Only one of clip 0's captions is in its top 10: AP@10 divides by all five, not by one.
    assert average_precision_at_k(a2t[0]) == pytest.approx(1 / 15)


def test_ties_are_broken_pessimistically():
    """Equal scores put the irrelevant items first, whatever the item order."""
    # text->audio: caption 0's clip ties with two others at the top -> rank 3, not 1.
    sim = np.array([[0.5, 0.5, 0.5, 0.1]])
    for true in (0, 1, 2):  # first, middle or last of the tied clips
        (ranks,) = relevant_ranks(sim, [np.arange(4) == true])
        assert ranks.tolist() == [3]
    # audio->text: five relevant captions at 0.5, one irrelevant also at 0.5 -> ranks 2..6.
    scores = np.array([[0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.5, 0.1]])
    relevant = np.array([[True, True, False, False, True, True, True, False]])
    (ranks,) = relevant_ranks(scores, relevant)
    assert ranks.tolist() == [2, 3, 4, 5, 6]
    assert average_precision_at_k(ranks) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4 + 4 / 5 + 5 / 6) / 5)


def test_a_constant_model_gets_the_worst_ranks():
    """A collapsed model (every score equal) is not rewarded: last place in both directions."""
    caption_clip = np.repeat(np.arange(4), 5)
    metrics, t2a, a2t = retrieval_metrics(np.zeros((20, 4)), caption_clip)
    assert set(t2a.tolist()) == {4}
    assert all(r.tolist() == [16, 17, 18, 19, 20] for r in a2t)
    assert metrics["text_to_audio"]["R@1"] == 0.0 and metrics["audio_to_text"]["R@10"] == 0.0


def test_ranks_match_a_sort_without_ties():
    """Random scores (no ties): the ranks are the positions of the relevant items in a plain sort."""
    rng = np.random.default_rng(0)
    caption_clip = np.repeat(np.arange(7), 5)
    sim = rng.normal(size=(35, 7))
    metrics, t2a, a2t = retrieval_metrics(sim, caption_clip)
    order = np.argsort(-sim, axis=1)
    assert t2a.tolist() == [int(np.flatnonzero(order[i] == caption_clip[i])[0]) + 1 for i in range(35)]
    col_order = np.argsort(-sim.T, axis=1)
    for j in range(7):
        assert a2t[j].tolist() == sorted(int(np.flatnonzero(col_order[j] == c)[0]) + 1
                                         for c in np.flatnonzero(caption_clip == j))
    # The same summary from the ranks directly; permuting clips (and relabelling) changes nothing.
    assert metrics["audio_to_text"] == summarise(a2t)
    perm = rng.permutation(7)
    permuted, _, _ = retrieval_metrics(sim[:, perm], np.argsort(perm)[caption_clip])
    for direction in metrics:  # the queries are averaged in another order: equal up to rounding
        assert permuted[direction] == pytest.approx(metrics[direction])


def test_chance_recall_matches_enumeration():
    for n, rel, k in [(5, 2, 2), (6, 1, 3), (7, 3, 1), (4, 2, 5)]:
        hits = [any(item < rel for item in order[:k]) for order in itertools.permutations(range(n))]
        assert chance_recall(n, rel, k) == pytest.approx(sum(hits) / len(hits))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no caption"):
        retrieval_metrics(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(np.zeros((2, 2)), [0, 2])


# ------------------------------------------------------------------- YAMLs
def test_full_size_yamls_load_offline(tiny_bert, tmp_path):
    """The Clotho and AudioCaps YAMLs load (full-size CNN14, a tiny BERT for bert-base-uncased) with the zero-shot
    model keys."""
    from experiment.command_line import load_hparams

    model_keys = yaml_keys("hparams/esc/microsoft_zeroshot.yaml") - {
        "dataset", "folds", "check_audio", "prompt_templates", "train_log", "train_logger", "modules",
        "test_dataloader_opts",
        # the zero-shot script's paper-code keys (label files, its run-folder stamp and loggers): not model keys
        "label_encoder_path", "time_stamp", "use_wandb", "wandb_project", "wandb_entity", "use_tensorboard",
        # the zero-shot evaluation protocol (evaluation.protocols): how clips are read and prompted, not the model
        "protocol"}
    overrides = f"data_folder: {tmp_path}\ntext_model: {tiny_bert}\ntxt_emb_dim: 32\noutput_base: {tmp_path}"
    for name, dataset, split in (("clotho", "clotho", "evaluation"), ("audiocaps", "audiocaps", "test")):
        path = f"hparams/{name}/retrieval_eval.yaml"
        assert model_keys <= yaml_keys(path), model_keys - yaml_keys(path)
        hparams = load_hparams(os.path.join(REPO, path), overrides)
        assert (hparams["dataset"], hparams["split"], hparams["sample_rate"]) == (dataset, split, 44100)
        assert hparams["audio_chunking"] and hparams["eval_duration"] == 5.0
        assert hparams["model"].audio_encoder.base.fc1.in_features == 2048  # the official CNN14 width
    # The toy YAML differs from the Clotho one only by the toy model's size and loader values.
    assert yaml_keys(TOY_YAML) == yaml_keys("hparams/clotho/retrieval_eval.yaml")


def test_wrong_data_folder_names_the_expected_file(tmp_path):
    """The split is read before the model is built, and a wrong folder says which file was expected where."""
    from evaluation.retrieval import read_retrieval_set

    with pytest.raises(SystemExit, match=r"clotho_captions_evaluation\.csv[\s\S]*--data_folder"):
        read_retrieval_set("clotho", str(tmp_path), "evaluation")
    with pytest.raises(SystemExit, match=r"not a folder; it must hold test\.csv"):
        read_retrieval_set("audiocaps", str(tmp_path / "nowhere"), "test")
    with pytest.raises(SystemExit, match="clotho"):
        read_retrieval_set("closo", str(tmp_path), "evaluation")


# -------------------------------------------------------------- end to end
def run_retrieval(args):
    proc = run_script([RETRIEVAL] + args + ["--noprogressbar"])
    check_ok(proc)
    return proc


def read_results(folder):
    with open(os.path.join(folder, "retrieval_results.json"), encoding="utf-8") as f:
        return json.load(f)


def check_metrics(results, n_clips):
    for direction, n_queries in (("text_to_audio", results["captions_scored"]), ("audio_to_text", n_clips)):
        m = results[direction]
        assert set(METRICS) <= set(m), m
        assert all(0.0 <= m[k] <= 1.0 for k in ("R@1", "R@5", "R@10", "mAP@10")), m
        assert m["R@1"] <= m["R@5"] <= m["R@10"] and m["queries"] == n_queries
        assert 1.0 <= m["median_rank"] and 1.0 <= m["mean_rank"]
    assert results["clips_scored"] == n_clips


def write_audiocaps(folder):
    """A tiny AudioCaps layout: test.csv with three clips x five rows; two clips on disk in two naming schemes."""
    rows = []
    clips = [("-a_b1", "30"), ("xyz_Q2", "0"), ("gone_3", "10")]
    for c, (yid, start) in enumerate(clips):
        for k in range(5):
            rows.append({"audiocap_id": 100 * c + k, "youtube_id": yid, "start_time": start,
                         "caption": f'clip {c}, "take" {k}: a {"dog barks" if c == 0 else "rain falls"}'})
    os.makedirs(folder / "test")
    os.makedirs(folder / "audio" / "test")
    with open(folder / "test.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audiocap_id", "youtube_id", "start_time", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    t = np.arange(32000) / 32000
    soundfile.write(folder / "test" / "-a_b1_30.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 32000)
    soundfile.write(folder / "audio" / "test" / "Yxyz_Q2.wav", 0.1 * np.random.default_rng(0).normal(size=(16000, 2)),
                    16000)


def test_audiocaps_layout_counts_missing_clips(tmp_path):
    """The AudioCaps YAML on a tiny test split: two clips found in two naming schemes, one missing and counted."""
    data = tmp_path / "audiocaps"
    write_audiocaps(data)
    proc = run_retrieval([
        "hparams/audiocaps/retrieval_eval.yaml", f"--data_folder={data}", "--clap_ckpt_path=", "--ssl_checkpoints_dir=",
        f"--output_base={tmp_path}", "--experiment_name=ac", "--num_workers=0", "--batch_size=4",
    ] + TOY_MODEL)
    results = read_results(tmp_path / "ac")
    check_metrics(results, 2)
    assert (results["clips_listed"], results["clips_missing"], results["captions_missing"]) == (3, 1, 5)
    assert results["captions_scored"] == 10 and results["clips_unreadable"] == 0
    assert "1 listed clips missing" in proc.stdout and re.search(r"^text_to_audio\s+[\d.]+", proc.stdout, re.M)
    with open(tmp_path / "ac" / "text_to_audio.csv", encoding="utf-8", newline="") as f:
        t2a = list(csv.DictReader(f))
    assert len(t2a) == 10 and t2a[0]["caption"] == 'clip 0, "take" 0: a dog barks' and t2a[0]["clip"] == "-a_b1_30.wav"
    with open(tmp_path / "ac" / "audio_to_text.csv", encoding="utf-8", newline="") as f:
        a2t = list(csv.DictReader(f))
    assert [r["clip"] for r in a2t] == ["-a_b1_30.wav", "Yxyz_Q2.wav"]
    assert all(len(r["caption_ranks"].split(";")) == 5 for r in a2t)


@pytest.mark.slow
def test_toy_teacher_retrieval_beats_chance_and_a_random_model(toy_world, toy_teacher, tmp_path):
    """The toy teacher on the toy Clotho evaluation split (12 clips x 5 captions, unseen in training)."""
    clotho = os.path.join(toy_world, "clotho")
    run_retrieval([TOY_YAML, f"--data_folder={clotho}", f"--ssl_checkpoints_dir={os.path.join(toy_teacher, 'save')}",
                   f"--output_base={tmp_path}", "--experiment_name=teacher"])
    run_retrieval([TOY_YAML, f"--data_folder={clotho}", "--ssl_checkpoints_dir=",
                   f"--output_base={tmp_path}", "--experiment_name=random"])
    teacher, random_model = read_results(tmp_path / "teacher"), read_results(tmp_path / "random")
    for results in (teacher, random_model):
        check_metrics(results, 12)
        assert results["captions_scored"] == 60 and results["clips_missing"] == 0
    t, r = teacher["text_to_audio"], random_model["text_to_audio"]
    ta, ra = teacher["audio_to_text"], random_model["audio_to_text"]
    print(f"toy teacher t2a R@1 {t['R@1']:.3f} R@10 {t['R@10']:.3f} mAP@10 {t['mAP@10']:.3f}; "
          f"a2t R@1 {ta['R@1']:.3f} R@10 {ta['R@10']:.3f} mAP@10 {ta['mAP@10']:.3f}; "
          f"random t2a R@1 {r['R@1']:.3f} R@10 {r['R@10']:.3f} mAP@10 {r['mAP@10']:.3f}; "
          f"a2t R@1 {ra['R@1']:.3f} R@10 {ra['R@10']:.3f} mAP@10 {ra['mAP@10']:.3f}")
    chance = teacher["chance"]["text_to_audio"]
    assert chance["R@1"] == pytest.approx(1 / 12) and chance["R@10"] == pytest.approx(10 / 12)
    assert "checkpoint" in teacher["model_source"] and "random" in random_model["model_source"]
    # Measured with hparams/toy (12 clips, so chance R@10 is already 10/12): teacher t2a R@1 0.35,
    # R@10 1.00, mAP@10 0.55, mean rank 3.0; random model 0.08, 0.83, 0.25, 6.5 (chance level).
    # Audio->text is weaker (R@1 0.25 but R@10 0.58 against a chance of 0.61) and not asserted.
    assert t["R@10"] >= chance["R@10"] + 0.08, t
    assert t["R@1"] >= chance["R@1"] + 0.15, t
    assert t["mAP@10"] >= r["mAP@10"] + 0.15 and t["mean_rank"] < r["mean_rank"], (t, r)
    assert r["R@1"] <= chance["R@1"] + 0.15, r
