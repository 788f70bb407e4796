"""The learning-rate schedules and optimizers of training: the paper code's plateau rule, our cosine.

Known answers: the paper code's SpeechBrain ``ReduceLROnPlateau`` (factor,
patience, ``dont_halve_until_epoch``, the ``final_lr`` floor) over a given
loss sequence, its state through a checkpoint, our cosine schedule's values;
then a short training run of the paper's YAML (tiny model) whose validation
losses are scripted, so that the learning rate of every epoch in the train
log is known in advance, straight and stopped-then-resumed.
"""

import csv
import math
import os
import re

import pytest
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import Checkpointer

from conftest import REPO, write_tiny_bert
from experiment.checkpoints import find_checkpoint
from training.brain import CLAPBrain
from training.run import run_training
from training.schedule import PlateauScheduler, check_schedule_options, cosine_lr, make_optimizer

PAPER_YAML = os.path.join(REPO, "hparams/insper/microsoft_clap_train.yaml")


def two_group_adam(lr):
    """An Adam over two parameter groups (the paper's code has two), for checking that both get the rate."""
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.Adam([{"params": [a]}, {"params": [b]}], lr=lr)


# ------------------------------------------------------------------ the plateau rule
# factor 0.1, patience 2, no reduction up to epoch 3, floor 2e-6, from 1e-3.
PLATEAU = dict(lr_min=2e-6, factor=0.1, patience=2, dont_halve_until_epoch=3)
LOSSES = [5.0, 6.0, 7.0,   # epochs 1-3: never reduced; the anchor follows the loss (7.0 after epoch 3)
          6.5,             # 4: <= anchor 7.0: kept, anchor 6.5
          6.6, 6.7,        # 5, 6: above the anchor, patience counter 1, 2
          6.8,             # 7: counter already 2 = patience: x0.1 -> 1e-4, counter 0 (anchor stays 6.5)
          6.4,             # 8: new anchor
          7.0, 7.0, 7.0,   # 9, 10: counter 1, 2; 11: -> 1e-5
          7.0, 7.0, 7.0,   # 12, 13; 14: -> 1e-6, floored at 2e-6
          7.0, 7.0, 7.0]   # 15, 16; 17: -> 2e-7, floored at 2e-6
# The rate each epoch trains with (what the train log shows), then the one after the last epoch.
LR_PER_EPOCH = [1e-3] * 7 + [1e-4] * 4 + [1e-5] * 3 + [2e-6] * 3
LR_AFTER = 2e-6


def test_plateau_rule_known_answer():
    """The paper code's ReduceLROnPlateau: hand-computed rate per epoch, on every parameter group."""
    opt = two_group_adam(1e-3)
    sched = PlateauScheduler(**PLATEAU)
    used = []
    for epoch, loss in enumerate(LOSSES, start=1):
        old, new = sched.step(opt, epoch, loss)
        used.append(old)
        assert [g["lr"] for g in opt.param_groups] == [new, new]
    assert used == pytest.approx(LR_PER_EPOCH, rel=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(LR_AFTER, rel=1e-12)
    assert sched.losses == LOSSES and sched.anchor == 6.4 and sched.patience_counter == 0


def test_plateau_state_survives_a_checkpoint(tmp_path):
    """Saved after epoch 9 (patience counter 1) and loaded into a fresh scheduler: the same rates follow."""
    opt, sched = two_group_adam(1e-3), PlateauScheduler(**PLATEAU)
    checkpointer = Checkpointer(tmp_path, recoverables={"lr_scheduler": sched, "optimizer": opt})
    for epoch, loss in enumerate(LOSSES[:9], start=1):
        sched.step(opt, epoch, loss)
    checkpointer.save_checkpoint()
    assert sched.patience_counter == 1

    opt2, sched2 = two_group_adam(1e-3), PlateauScheduler(**PLATEAU)
    Checkpointer(tmp_path, recoverables={"lr_scheduler": sched2, "optimizer": opt2}).recover_if_possible()
    assert (sched2.anchor, sched2.patience_counter, sched2.losses) == (6.4, 1, LOSSES[:9])
    resumed = [sched2.step(opt2, epoch, loss)[0] for epoch, loss in enumerate(LOSSES[9:], start=10)]
    assert resumed == pytest.approx(LR_PER_EPOCH[9:], rel=1e-12)
    # A fresh scheduler (no state) would not reduce at epoch 11: the state is what carries the rule over.
    fresh_opt, fresh = two_group_adam(1e-4), PlateauScheduler(**PLATEAU)
    assert [fresh.step(fresh_opt, e, loss)[1] for e, loss in enumerate(LOSSES[9:11], start=10)] == [1e-4, 1e-4]


def test_optimizer_names():
    w = [torch.nn.Parameter(torch.zeros(1))]
    assert type(make_optimizer(w, "adam", 0.1)) is torch.optim.Adam
    assert type(make_optimizer(w, "adamw", 0.1, weight_decay=0.01)) is torch.optim.AdamW
    with pytest.raises(SystemExit, match="--optimizer=sgd"):
        make_optimizer(w, "sgd", 0.1)


def test_plateau_with_a_warmup_is_a_clear_error():
    with pytest.raises(SystemExit, match="--warmup_steps=5.*--lr_schedule=cosine"):
        check_schedule_options({"lr_schedule": "plateau", "warmup_steps": 5})
    with pytest.raises(SystemExit, match="--lr_schedule=step"):
        check_schedule_options({"lr_schedule": "step", "warmup_steps": 0})
    check_schedule_options({"lr_schedule": "cosine", "warmup_steps": 5})


@pytest.mark.parametrize("flag, expected", [
    ("lr_schedule: step", "--lr_schedule=step: expected one of plateau, cosine"),
    ("optimizer: sgd", "--optimizer=sgd: expected one of adam, adamw"),
    ("lr_plateau_factor: 1.5", "--lr_plateau_factor=1.5: expected a factor in (0, 1]"),
    ("lr_plateau_patience: -1", "--lr_plateau_patience=-1: expected an integer >= 0"),
    # base_lr's default is a !ref (batch_size * 0.001 / 1024): an override is still range-checked.
    ("base_lr: -0.001", "--base_lr=-0.001: expected a positive number"),
    ("final_lr: null", "--final_lr=null: expected a number >= 0"),
])
def test_bad_schedule_flags_stop_before_any_work(flag, expected):
    from experiment.checks import check_overrides

    with pytest.raises(SystemExit) as err:
        check_overrides(PAPER_YAML, flag)
    assert expected in str(err.value)


def test_paper_yaml_lr_follows_the_batch_size():
    """The paper code's rule: base_lr = batch_size * 0.001 / 1024, final_lr = batch_size * 1e-8 / 1024."""
    from hyperpyyaml import load_hyperpyyaml

    with open(PAPER_YAML, encoding="utf-8") as f:
        lines = [line for line in f if re.match(r"(batch_size|base_lr|final_lr):", line)]
    for batch, base, final in [(128, 1.25e-4, 1.25e-9), (32, 3.125e-5, 3.125e-10)]:
        values = load_hyperpyyaml("".join(lines), f"batch_size: {batch}")
        assert (values["base_lr"], values["final_lr"]) == pytest.approx((base, final), rel=1e-12)
    # An explicit value (the paper README's --base_lr=0.0001) replaces the rule.
    assert load_hyperpyyaml("".join(lines), "base_lr: 0.0001")["base_lr"] == 0.0001


def _plateau_rank(rank, port, losses_per_rank, out):
    """One gloo rank: steps the Brain's plateau schedule with its own losses; writes the rates it set."""
    import types

    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        w = torch.nn.Parameter(torch.zeros(1))
        stub = types.SimpleNamespace(hparams=types.SimpleNamespace(lr_schedule="plateau"),
                                     optimizer=torch.optim.Adam([w], lr=1.0),
                                     lr_scheduler=PlateauScheduler(lr_min=0.0, factor=0.5, patience=0,
                                                                   dont_halve_until_epoch=0))
        rates = []
        for epoch, loss in enumerate(losses_per_rank[rank], start=1):
            CLAPBrain.end_of_epoch_lr(stub, epoch, loss)
            rates.append(stub.optimizer.param_groups[0]["lr"])
        torch.save(rates, os.path.join(out, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_follow_the_main_process_validation_loss(tmp_path):
    """Under DDP every rank sets the rate rank 0's validation loss decides (replicas never diverge)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    losses = {0: [3.0, 4.0, 4.0], 1: [3.0, 2.0, 1.0]}  # rank 0 halves twice; rank 1 alone would not
    torch.multiprocessing.start_processes(_plateau_rank, args=(port, losses, str(tmp_path)), nprocs=2,
                                          start_method="fork")
    rates = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert rates == [[1.0, 0.5, 0.25]] * 2


# ------------------------------------------------------------------ our cosine schedule
def test_cosine_schedule_known_answer():
    """Ours, unchanged: linear warm-up over 10 steps, then cosine from 1e-3 to 1e-5 at step 20."""
    values = [cosine_lr(step, 20, 1e-3, 1e-5, warmup_steps=10) for step in (0, 4, 9, 10, 15, 20, 25)]
    assert values == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3, 1e-5 + 0.5 * 9.9e-4, 1e-5, 1e-5], rel=1e-12)


# ------------------------------------------------------------------ a short training run
# Scripted validation loss per epoch, with --lr_plateau_patience=0 --lr_plateau_dont_halve_until_epoch=0
# --lr_plateau_factor=0.5 --final_lr=1.5e-6 and the YAML's base_lr = batch_size * 0.001 / 1024 (batch 4):
SCRIPTED_LOSS = {1: 3.0, 2: 4.0, 3: 4.0, 4: 2.0}
BASE_LR = 4 * 0.001 / 1024  # 3.90625e-6
# 1: anchor 3; 2: above it, x0.5; 3: x0.5 = 9.8e-7, floored at 1.5e-6; 4: new anchor, kept.
RUN_LR = [BASE_LR, BASE_LR, BASE_LR / 2, 1.5e-6]
RUN_LR_AFTER = 1.5e-6


class ScriptedValidLossBrain(CLAPBrain):
    """CLAPBrain whose validation loss of epoch ``e`` is ``SCRIPTED_LOSS[e]`` (what the schedule is stepped with)."""

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.VALID:
            stage_loss = SCRIPTED_LOSS[epoch]
        super().on_stage_end(stage, stage_loss, epoch)


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory):
    """A tiny BERT and 12 half-second noise clips with a caption each (split by clip into training and validation)."""
    import numpy as np
    import soundfile

    folder = tmp_path_factory.mktemp("lr_run")
    words = "a dog barks rain falls bird sings".split()
    bert = write_tiny_bert(folder / "bert", vocab_words=words)
    rng = np.random.default_rng(0)
    pairs = folder / "pairs.csv"
    with open(pairs, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav_path", "caption"])
        for i in range(12):
            wav = folder / f"clip{i}.wav"
            soundfile.write(str(wav), 0.1 * rng.standard_normal(8000).astype("float32"), 16000)
            writer.writerow([f"pair{i}", str(wav), " ".join(rng.choice(words, size=4))])
    return str(bert), str(pairs)


def run_flags(tiny_run_inputs, out, name, epochs, *extra):
    bert, pairs = tiny_run_inputs
    return [PAPER_YAML, f"--train_csv_path={pairs}", "--valid_pct=0.25", f"--output_base={out}",
            f"--experiment_name={name}", f"--number_of_epochs={epochs}", "--batch_size=4",
            f"--text_model={bert}", "--txt_emb_dim=32", "--pretrained_text=False", "--audio_width=0.0625",
            "--out_emb=64", "--d_proj=16", "--sample_rate=16000", "--window_size=512", "--hop_size=160",
            "--fmax=8000", "--train_duration=0.5", "--eval_duration=0.5", "--num_workers=0",
            "--check_audio=False", "--freeze_audio_base=True", "--freeze_text_base=True", "--noprogressbar", *extra]


PLATEAU_FLAGS = ("--lr_plateau_patience=0", "--lr_plateau_dont_halve_until_epoch=0", "--lr_plateau_factor=0.5",
                 "--final_lr=0.0000015")


def logged_epochs(train_log):
    """(epoch, lr text, valid loss) of every validation line of train_log.txt."""
    with open(train_log, encoding="utf-8") as f:
        return [(int(m.group(1)), m.group(2), float(m.group(3))) for m in
                re.finditer(r"epoch: (\d+), lr: (\S+) .*?valid loss: ([\d.e+-]+)", f.read())]


def latest_state(save):
    ckpt = find_checkpoint(save, "latest")
    opt = torch.load(os.path.join(ckpt, "optimizer.ckpt"), weights_only=True)
    sched = torch.load(os.path.join(ckpt, "lr_scheduler.ckpt"), weights_only=True)
    return [g["lr"] for g in opt["param_groups"]], sched


@pytest.mark.slow
def test_paper_yaml_trains_with_adam_and_the_plateau_rule(tiny_run_inputs, tmp_path):
    """Four epochs of the paper's YAML: each epoch's rate in the train log is the hand-computed one; a run
    stopped after two epochs and resumed logs the same rates and ends with the same scheduler state."""
    brain = run_training(run_flags(tiny_run_inputs, tmp_path, "straight", 4, *PLATEAU_FLAGS), ScriptedValidLossBrain)
    assert type(brain.optimizer) is torch.optim.Adam
    expected = [(e, f"{lr:.2e}", SCRIPTED_LOSS[e]) for e, lr in enumerate(RUN_LR, start=1)]
    assert logged_epochs(tmp_path / "straight" / "train_log.txt") == expected
    lrs, sched = latest_state(tmp_path / "straight" / "save")
    assert lrs == pytest.approx([RUN_LR_AFTER], rel=1e-12)
    assert sched == {"losses": [SCRIPTED_LOSS[e] for e in range(1, 5)], "anchor": 2.0, "patience_counter": 0}

    # Stopped after epoch 2 (rate halved once, anchor 3.0), then resumed to epoch 4. Without the
    # scheduler's state the anchor would restart at 99999 and epoch 3 would keep BASE_LR / 2.
    run_training(run_flags(tiny_run_inputs, tmp_path, "resumed", 2, *PLATEAU_FLAGS), ScriptedValidLossBrain)
    save = tmp_path / "resumed" / "save"
    lrs, sched = latest_state(save)
    assert lrs == pytest.approx([BASE_LR / 2], rel=1e-12) and (sched["anchor"], sched["patience_counter"]) == (3.0, 0)
    run_training(run_flags(tiny_run_inputs, tmp_path, "resumed", 4, *PLATEAU_FLAGS, "--resume_interrupt=True",
                           f"--prev_ckpt_dir={save}"), ScriptedValidLossBrain)
    assert logged_epochs(tmp_path / "resumed" / "train_log.txt") == expected
    assert latest_state(save) == latest_state(tmp_path / "straight" / "save")


@pytest.mark.slow
def test_cosine_option_sets_the_rate_per_step(tiny_run_inputs, tmp_path):
    """--lr_schedule=cosine --optimizer=adamw: AdamW, and the rate logged after each epoch is the cosine
    schedule's at the epoch's last step."""
    flags = ["--lr_schedule=cosine", "--optimizer=adamw", "--base_lr=0.001", "--final_lr=0.00001",
             "--warmup_steps=1"]
    brain = run_training(run_flags(tiny_run_inputs, tmp_path, "cosine", 2, *flags), ScriptedValidLossBrain)
    assert type(brain.optimizer) is torch.optim.AdamW
    assert not (set(os.listdir(find_checkpoint(tmp_path / "cosine" / "save", "latest"))) & {"lr_scheduler.ckpt"})
    with open(tmp_path / "cosine" / "train_raw.csv", encoding="utf-8") as f:
        steps = (sum(1 for _ in f) - 1) // 4  # drop_last
    assert steps >= 2
    total = 2 * steps
    expected = [(e, f"{cosine_lr(e * steps - 1, total, 1e-3, 1e-5, 1):.2e}", SCRIPTED_LOSS[e]) for e in (1, 2)]
    assert logged_epochs(tmp_path / "cosine" / "train_log.txt") == expected
    assert math.isclose(cosine_lr(total - 1, total, 1e-3, 1e-5, 1), latest_state_lr(tmp_path / "cosine" / "save"))


def latest_state_lr(save):
    ckpt = find_checkpoint(save, "latest")
    return torch.load(os.path.join(ckpt, "optimizer.ckpt"), weights_only=True)["param_groups"][0]["lr"]
