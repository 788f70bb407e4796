"""End-to-end curation on the toy world: the paper's three commands, kill-and-resume, overlap audit, student
training."""

import csv
import filecmp
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TOY_MODEL, TOY_TRAINING, check_ok, run_script, yaml_keys
from curation.join import brute_force_join
from dataset.labels import dataset_labels
from dataset.manifest import read_caption_csv, write_csv
from embeddings.lists import read_caption_table

TOEMB = "recipes/microsoft_curation_toemb.py"
RETRIEVE = "recipes/retrieve_from_emb_thresh.py"
DS = "recipes/retrieve_ds_t2t.py"
HP = "hparams/curation"
EMB_FILES = ["audio_emb.npy", "audio_paths.txt", "audio_skipped.csv", "text_emb.npy", "text_captions.csv",
             "embeddings.json"]


def test_every_flag_of_the_paper_commands_is_a_yaml_key():
    """SpeechBrain rejects unknown override keys: each flag users pass must be in the YAML."""
    toy = {f.split("=")[0][2:] for f in TOY_MODEL}
    loader = {"num_workers"}
    checks = {f"{HP}/microsoft_audioset_insper_toemb.yaml": {"output_folder", "clap_ckpt_path", "ssl_checkpoints_dir",
                                                             "audio_pathfile", "text_pathfile"} | toy | loader,
              f"{HP}/audioset_insper_duv2_retr.yaml": {"emb_dir", "audio_bs", "sim_threshold", "aud_ds_path"}}
    for short in ("esc", "us8k", "tut"):
        checks[f"{HP}/{short}_insper_audioset_dudsv3_retr.yaml"] = {"emb_dir", "aud_ds_path", "sim_threshold",
                                                                    "audio_bs"}
        checks[f"{HP}/{short}_insper_t2t_retr.yaml"] = {"target_csv_path", "clap_ckpt_path", "ssl_checkpoints_dir",
                                                        "emb_dir", "sim_threshold", "zs_data_folder"} | toy | loader
    for path, flags in checks.items():
        assert flags <= yaml_keys(path), (path, flags - yaml_keys(path))


def toemb_command(teacher, pathfile, output_folder):
    """The paper's embedding command, with the toy model's size and small shards."""
    return [
        TOEMB, f"{HP}/microsoft_audioset_insper_toemb.yaml",
        f"--output_folder={output_folder}",
        "--clap_ckpt_path=",
        f"--ssl_checkpoints_dir={teacher}/save",
        "--ssl_select=loss",  # the toy teacher records no zero-shot acc (the paper YAML's use_maxacc_ep)
        f"--audio_pathfile={pathfile}",
        f"--text_pathfile={teacher}/save/train_raw.csv",
    ] + TOY_MODEL + ["--batch_size=16", "--shard_size=16", "--num_workers=0", "--noprogressbar"]


@pytest.fixture(scope="module")
def pathfile(toy_world, tmp_path_factory):
    """The toy world's unpaired pool plus one missing clip (it must be skipped, rows staying aligned)."""
    with open(os.path.join(toy_world, "unpaired_paths.txt"), encoding="utf-8") as f:
        paths = [line.strip() for line in f if line.strip()]
    paths.insert(5, os.path.join(toy_world, "unpaired", "Ymissing.wav"))
    out = tmp_path_factory.mktemp("lists") / "audio_paths.txt"
    out.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    return str(out)


@pytest.fixture(scope="module")
def emb_dir(toy_teacher, pathfile, tmp_path_factory):
    """Runs the embedding step uninterrupted; returns its emb_dir (<output_folder>/save)."""
    out = tmp_path_factory.mktemp("curation") / "emb"
    check_ok(run_script(toemb_command(toy_teacher, pathfile, out)))
    return str(out / "save")


@pytest.mark.slow
def test_embedding_step_outputs(emb_dir, pathfile):
    emb = np.load(os.path.join(emb_dir, "audio_emb.npy"))
    with open(os.path.join(emb_dir, "audio_paths.txt"), encoding="utf-8") as f:
        kept = f.read().split()
    with open(pathfile, encoding="utf-8") as f:
        listed = f.read().split()
    assert emb.dtype == np.float16 and emb.shape == (len(listed) - 1, 256) and len(kept) == emb.shape[0]
    assert kept == [p for p in listed if "Ymissing" not in p]
    with open(os.path.join(emb_dir, "audio_skipped.csv"), encoding="utf-8") as f:
        skipped = list(csv.DictReader(f))
    assert [r["index"] for r in skipped] == ["5"]
    assert not os.path.exists(os.path.join(emb_dir, "shards"))


@pytest.mark.slow
def test_killed_embedding_resumes_to_identical_files(toy_teacher, pathfile, emb_dir, tmp_path):
    """SIGKILL the embedding step after two shards, run it again: every file equals the uninterrupted run's."""
    out = tmp_path / "emb"
    args = [sys.executable] + toemb_command(toy_teacher, pathfile, out)
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    shards = out / "save" / "shards"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if shards.is_dir() and len([p for p in os.listdir(shards) if p.startswith("audio-0")]) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not (out / "save" / "audio_emb.npy").exists()
    done_before = len([p for p in os.listdir(shards) if p.endswith(".npz")])
    rerun = run_script(toemb_command(toy_teacher, pathfile, out))
    check_ok(rerun)
    for name in EMB_FILES:
        assert filecmp.cmp(os.path.join(emb_dir, name), out / "save" / name, shallow=False), name
    assert 2 <= done_before < 7


def threshold_for(emb_dir, caption_set, quantile):
    """A cosine threshold that the given fraction of clips' best captions reach (the toy teacher is weak)."""
    audio = np.load(os.path.join(emb_dir, "audio_emb.npy")).astype(np.float64)
    text = np.load(os.path.join(emb_dir, f"{caption_set}_emb.npy")).astype(np.float64)
    best = (audio @ text.T).max(axis=1)
    return float(np.floor(np.quantile(best, quantile) * 100) / 100), best


@pytest.fixture(scope="module")
def du_csv(emb_dir):
    threshold, best = threshold_for(emb_dir, "text", 0.5)
    print("toy DU: best caption cosine per clip, quantiles 0/10/50/90/100%: "
          f"{np.quantile(best, [0, .1, .5, .9, 1]).round(3)}")
    proc = run_script([
        RETRIEVE, f"{HP}/audioset_insper_duv2_retr.yaml",
        f"--emb_dir={emb_dir}",
        "--audio_bs=32",
        f"--sim_threshold={threshold}",
    ])
    check_ok(proc)
    return os.path.join(emb_dir, f"du_pairs_thr{threshold}.csv"), threshold


@pytest.mark.slow
def test_du_pairs_are_the_exact_join(du_csv, emb_dir):
    path, threshold = du_csv
    rows = read_caption_csv(path)
    assert rows and list(rows[0]) == ["ID", "wav_path", "caption", "similarity"]
    audio = np.load(os.path.join(emb_dir, "audio_emb.npy"))
    text = np.load(os.path.join(emb_dir, "text_emb.npy"))
    i, j, sim = brute_force_join(audio, text, threshold)
    with open(os.path.join(emb_dir, "audio_paths.txt"), encoding="utf-8") as f:
        paths = f.read().split("\n")
    table = read_caption_table(os.path.join(emb_dir, "text_captions.csv"))
    captions = [r["caption"] for r in table]
    # caption_rows: per_row (the paper YAML's default): a caption of k training rows gives k rows.
    expected = [(paths[a], captions[b]) for a, b in zip(i, j) for _ in range(table[b]["n_rows"])]
    assert [(r["wav_path"], r["caption"]) for r in rows] == expected
    summary = json.load(open(os.path.splitext(path)[0] + "_summary.json", encoding="utf-8"))
    assert summary["pairs"] == len(rows) and summary["queries_with_pair"] == len(set(i.tolist()))
    assert summary["distinct_pairs"] == len(i) and summary["caption_rows"] == "per_row"
    assert summary["keys_used"] == len(set(j.tolist())) and sum(summary["histogram"].values()) == len(rows)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_du_csv_is_the_same_at_every_join_precision(du_csv, emb_dir, tmp_path, precision):
    """--join_precision changes the speed only: the curation CSV is byte for byte the auto run's."""
    path, threshold = du_csv
    proc = run_script([
        RETRIEVE, f"{HP}/audioset_insper_duv2_retr.yaml", f"--emb_dir={emb_dir}", f"--output_folder={tmp_path}",
        "--audio_bs=32", f"--sim_threshold={threshold}", f"--join_precision={precision}",
    ])
    check_ok(proc)
    assert f"block products in {precision} on cpu" in proc.stdout
    with open(path, "rb") as auto, open(tmp_path / os.path.basename(path), "rb") as forced:
        assert forced.read() == auto.read()


@pytest.fixture(scope="module")
def ds_run(toy_teacher, emb_dir):
    """The paper's DS command for ESC-50 (published labels, paper threshold)."""
    proc = run_script([
        DS, f"{HP}/esc_insper_t2t_retr.yaml",
        f"--target_csv_path={toy_teacher}/save/train_raw.csv",
        "--clap_ckpt_path=",
        f"--ssl_checkpoints_dir={toy_teacher}/save",
        "--use_maxacc_ep=False", "--use_minloss_ep=True",  # the paper code's keys: the toy teacher records no acc
        f"--emb_dir={emb_dir}",
        "--sim_threshold=0.7",
    ] + TOY_MODEL)
    check_ok(proc)
    return proc


@pytest.mark.slow
def test_ds_keeps_training_pairs_and_saves_their_caption_embeddings(ds_run, emb_dir, toy_teacher):
    pairs = read_caption_csv(os.path.join(emb_dir, "ds_esc50_pairs.csv"))
    assert pairs and list(pairs[0])[:5] == ["ID", "wav_path", "caption", "similarity", "label"]
    assert all(float(p["similarity"]) >= 0.7 for p in pairs)
    train = {r["ID"]: r for r in read_caption_csv(os.path.join(toy_teacher, "save", "train_raw.csv"))}
    assert all(train[p["ID"]]["wav_path"] == p["wav_path"] for p in pairs)  # original audio
    ds_emb = np.load(os.path.join(emb_dir, "ds_esc50_emb.npy"))
    ds_table = read_caption_table(os.path.join(emb_dir, "ds_esc50_captions.csv"))
    assert ds_emb.shape[0] == len(ds_table) == len({p["caption"].strip() for p in pairs})
    # The DS rows are those of the embedding step's captions (reused, same teacher).
    text = np.load(os.path.join(emb_dir, "text_emb.npy"))
    index = {r["caption"]: k for k, r in enumerate(read_caption_table(os.path.join(emb_dir, "text_captions.csv")))}
    np.testing.assert_array_equal(ds_emb, text[[index[r["caption"]] for r in ds_table]])
    assert "Reusing the caption embeddings" in ds_run.stdout + ds_run.stderr


@pytest.fixture(scope="module")
def ads_csv(ds_run, emb_dir, pathfile):
    """The paper's ADS command for ESC-50 (threshold from the data: the toy teacher's cosines are lower)."""
    threshold, _ = threshold_for(emb_dir, "ds_esc50", 0.5)
    proc = run_script([
        RETRIEVE, f"{HP}/esc_insper_audioset_dudsv3_retr.yaml",
        f"--emb_dir={emb_dir}",
        f"--aud_ds_path={pathfile}",
        f"--sim_threshold={threshold}",
    ])
    check_ok(proc)
    return os.path.join(emb_dir, f"ads_esc50_pairs_thr{threshold}.csv"), threshold


@pytest.mark.slow
def test_ads_command(ads_csv, emb_dir):
    path, threshold = ads_csv
    rows = read_caption_csv(path)
    assert rows and {r["caption"] for r in rows} <= {
        r["caption"] for r in read_caption_table(os.path.join(emb_dir, "ds_esc50_captions.csv"))
    }
    assert all(float(r["similarity"]) >= threshold for r in rows)


@pytest.mark.slow
def test_paper_softclap_command_trains_a_student_on_ds_and_ads(ads_csv, emb_dir, toy_teacher, toy_world, tmp_path):
    """The paper's SoftCLAP command: DS pairs as the replay set, ADS pairs as curated data, the toy teacher as
    teacher."""
    save = os.path.join(toy_teacher, "save")
    paper_flags = [
        f"--data_annot_folder={toy_world}",
        f"--train_csv_path={os.path.join(emb_dir, 'ds_esc50_pairs.csv')}",
        f"--curation_csv={ads_csv[0]}",
        f"--data_zs_folder={os.path.join(toy_world, 'ESC-50')}",
        f"--output_base={tmp_path}",
        "--pann_ckpt_path=",
        "--clap_ckpt_path=",
        f"--ssl_checkpoints_dir={save}",
        "--ssl_checkpointer=",
        f"--teacher_checkpoints_dir={save}",
        "--teacher_checkpointer=",
        "--resume_interrupt=False",
        "--prev_ckpt_dir=",
        "--prev_checkpointer=",
        "--curation_prob=0.5",
        "--subset_pct=1",
        "--number_of_epochs=1",
        "--batch_size=16",
        "--base_lr=0.0001",
        "--final_lr=0.00000001",
        "--softclap_beta=0.3",
        "--experiment_name=ads_softclap",
        "--auto_mix_prec",
        "--data_parallel_backend",
    ]
    tiny = TOY_TRAINING + ["--noprogressbar"]
    proc = run_script(["recipes/softclap_train.py", "hparams/insper/softclap_train.yaml"] + paper_flags + tiny)
    check_ok(proc)
    log = (tmp_path / "ads_softclap" / "train_log.txt").read_text(encoding="utf-8")
    assert re.search(r"curated_batches: [1-9]", log) and re.search(r"replay_batches: [1-9]", log), log
    # As the paper's YAMLs: caption validation, no zero-shot validation (use_zs_loader: False).
    assert re.search(r"valid loss: ", log) and not re.search(r"valid acc: ", log), log
    # The paper's YAML trains with the paper code's SoftCLAP targets and KL, and stays finite.
    used = (tmp_path / "ads_softclap" / "hyperparams.yaml").read_text(encoding="utf-8")
    assert re.search(r"^softclap_targets: paper$", used, re.M), used
    assert "nan" not in re.findall(r"train loss: (\S+)", log)[-1].lower(), log


@pytest.mark.slow
def test_ds_overlap_audit_counts_and_drops_evaluation_recordings(toy_teacher, toy_world, emb_dir, tmp_path):
    """Training rows whose source_id is an UrbanSound8K fsID are reported, and dropped on request."""
    rows = read_caption_csv(os.path.join(toy_teacher, "save", "train_raw.csv"))
    with open(os.path.join(toy_world, "UrbanSound8K", "metadata", "UrbanSound8K.csv"), encoding="utf-8") as f:
        fs_ids = [r["fsID"] for r in csv.DictReader(f)]
    for row, fs_id in zip(rows[:40], fs_ids):
        row["source_id"] = fs_id
    target = tmp_path / "train_with_overlap.csv"
    write_csv(str(target), rows)
    out = tmp_path / "ds"
    out.mkdir()  # DS alone into a new folder: it must exist (a mistyped --emb_dir stops the run)
    proc = run_script([
        DS, f"{HP}/us8k_insper_t2t_retr.yaml", f"--target_csv_path={target}",
        f"--ssl_checkpoints_dir={toy_teacher}/save", "--ssl_select=loss", f"--emb_dir={out}", "--sim_threshold=0.3",
        f"--zs_data_folder={toy_world}/UrbanSound8K", "--drop_eval_overlap=True", "--noprogressbar",
    ] + TOY_MODEL)
    check_ok(proc)
    summary = json.load(open(out / "ds_us8k_summary.json", encoding="utf-8"))
    assert summary["labels"] == len(dataset_labels("us8k", os.path.join(toy_world, "UrbanSound8K")))
    assert summary["eval_overlap_pairs"] > 0 and summary["eval_overlap_dropped"] == summary["eval_overlap_pairs"]
    kept = read_caption_csv(str(out / "ds_us8k_pairs.csv"))
    assert kept and not {r["source_id"] for r in kept} & set(fs_ids)
    ds_captions = read_caption_table(str(out / "ds_us8k_captions.csv"))
    assert ds_captions and not any(set(c["source_ids"].split(";")) & set(fs_ids) for c in ds_captions)


@pytest.mark.slow
def test_student_training_accepts_the_du_csv(du_csv, toy_teacher, toy_world, tmp_path):
    path, _ = du_csv
    proc = run_script([
        "recipes/microsoft_clap_train.py", "hparams/toy/microsoft_clap_train.yaml",
        f"--data_annot_folder={toy_world}", f"--ssl_checkpoints_dir={toy_teacher}/save",
        f"--curation_csv={path}", "--curation_prob=0.5", "--number_of_epochs=1",
        f"--output_base={tmp_path}", "--experiment_name=student", "--noprogressbar",
    ])
    check_ok(proc)
    log = (tmp_path / "student" / "train_log.txt").read_text(encoding="utf-8")
    assert re.search(r"curated_batches: [1-9]", log), log


@pytest.mark.slow
def test_embedding_step_reads_member_paths_of_tar_shards(toy_teacher, pathfile, emb_dir, tmp_path):
    """The unpaired pool packed into webdataset shards (LAION's layout), listed by member path: the same rows."""
    import webdataset as wds

    from dataset.shards import member_path

    with open(pathfile, encoding="utf-8") as f:
        listed = [line.strip() for line in f if line.strip()]
    members = []
    for s, start in enumerate(range(0, len(listed), 20)):
        tar = str(tmp_path / f"shard-{s:06d}.tar")
        with wds.TarWriter(tar) as sink:
            for path in listed[start:start + 20]:
                stem, ext = os.path.splitext(os.path.basename(path))
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        sink.write({"__key__": stem, ext[1:]: f.read(), "json": {"text": ""}})
                members.append(member_path(tar, stem + ext))
    member_list = tmp_path / "members.txt"
    member_list.write_text("".join(p + "\n" for p in members), encoding="utf-8")
    out = tmp_path / "emb"
    check_ok(run_script(toemb_command(toy_teacher, str(member_list), out)))
    save = out / "save"
    assert filecmp.cmp(os.path.join(emb_dir, "audio_emb.npy"), save / "audio_emb.npy", shallow=False)
    with open(save / "audio_skipped.csv", encoding="utf-8") as f:
        assert [r["index"] for r in csv.DictReader(f)] == ["5"]
    assert (save / "audio_paths.txt").read_text(encoding="utf-8").split("\n")[0] == members[0]
