"""Run logs: W&B / TensorBoard through SpeechBrain's loggers, the curves' PNG, and the paper code's training keys.

A fake ``wandb`` module (put in ``sys.modules``) stands for Weights & Biases;
one short in-process training run on the toy world checks the whole path
(stats to W&B and the file log, ``train_curves.png``, ``time_stamp``,
``overfit_size``, ``num_epoch_save``).
"""

import os
import struct
import sys
import types

import pytest
import torch
import speechbrain as sb
from speechbrain.utils.train_logger import FileTrainLogger

from conftest import load_script
from training.curves import CURVES_HISTORY, CURVES_PNG, RunLogger, make_train_logger, read_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) of a PNG file, read from its IHDR chunk; fails on anything else."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


class FakeWandb:
    """The part of the ``wandb`` module SpeechBrain's WandBLogger uses: ``init(**kwargs)`` -> a run with ``log``."""

    def __init__(self):
        self.runs = []
        self.module = types.ModuleType("wandb")
        self.module.init = self.init

    def init(self, **kwargs):
        run = types.SimpleNamespace(kwargs=kwargs, logged=[])
        run.log = lambda data, step=None: run.logged.append((step, data))
        self.runs.append(run)
        return run


@pytest.fixture
def fake_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    return fake


def hparams_for(tmp_path, **keys):
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    return dict({"output_folder": str(folder), "train_log": str(folder / "train_log.txt"),
                 "train_logger": FileTrainLogger(str(folder / "train_log.txt")), "seed": 3, "batch_size": 4,
                 "model": torch.nn.Linear(2, 2)}, **keys)


EPOCHS = [  # (train loss, valid loss, R@1, R@1 chance, acc)
    (3.0, 2.5, 0.20, 0.1, 0.30),
    (2.0, 2.1, 0.35, 0.1, 0.40),
    (1.5, 1.9, 0.50, 0.1, 0.45),
]


def log_epochs(run_logger, epochs, first=1):
    for i, (tl, vl, r1, chance, acc) in enumerate(epochs, start=first):
        run_logger.log_stats({"epoch": i, "lr": 1e-4}, train_stats={"loss": tl},
                             valid_stats={"loss": vl, "R@1": r1, "R@1_chance": chance, "acc": acc})


# ----------------------------------------------------------------- W&B / TensorBoard
def test_wandb_gets_every_stat_and_the_file_log_is_kept(tmp_path, fake_wandb):
    hparams = hparams_for(tmp_path, use_wandb=True, wandb_project="p", wandb_entity="team")
    run_logger = make_train_logger(hparams)
    log_epochs(run_logger, EPOCHS[:2])
    (run,) = fake_wandb.runs
    assert run.kwargs["project"] == "p" and run.kwargs["entity"] == "team" and run.kwargs["name"] == "run"
    assert run.kwargs["dir"] == hparams["output_folder"] and run.kwargs["config"]["seed"] == 3
    assert "model" not in run.kwargs["config"]
    assert [step for step, _ in run.logged] == [1, 2]
    assert run.logged[1][1]["train"] == {"loss": 2.0} and run.logged[1][1]["valid"]["acc"] == 0.40
    log = open(hparams["train_log"], encoding="utf-8").read()
    assert "epoch: 2" in log and "valid loss: 2.10" in log


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(SystemExit, match=r"--use_wandb=True needs the wandb package: pip install wandb"):
        make_train_logger(hparams_for(tmp_path, use_wandb=True))
    # Off (the default), nothing is imported.
    make_train_logger(hparams_for(tmp_path, use_wandb=False))


def test_wandb_start_failure_names_its_cause(tmp_path, monkeypatch):
    module = types.ModuleType("wandb")

    def init(**kwargs):
        raise RuntimeError("not logged in")

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    with pytest.raises(SystemExit, match="W&B did not start .*not logged in"):
        make_train_logger(hparams_for(tmp_path, use_wandb=True))


def test_tensorboard_gets_the_numbers_and_missing_is_a_clear_error(tmp_path, monkeypatch):
    scalars = []
    module = types.ModuleType("torch.utils.tensorboard")

    class SummaryWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

    module.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    run_logger = make_train_logger(hparams_for(tmp_path, use_tensorboard=True), curves=False)
    log_epochs(run_logger, EPOCHS[:1])
    # Text statistics (a zero-shot run's dataset name) are left out: TensorBoard scalars are numbers.
    run_logger.log_stats({"dataset": "esc50"}, test_stats={"top1": 0.5, "model": "x"})
    assert ("loss/train", 3.0, 1) in scalars and ("acc/valid", 0.30, 1) in scalars and ("top1/test", 0.5, 1) in scalars
    assert not any(tag in ("dataset", "model/test") for tag, _, _ in scalars)

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(SystemExit, match="--use_tensorboard=True needs the tensorboard package: pip install"):
        make_train_logger(hparams_for(tmp_path, use_tensorboard=True))


# ----------------------------------------------------------------- the curves' PNG
def test_png_is_redrawn_at_each_epoch_and_survives_a_resume(tmp_path):
    hparams = hparams_for(tmp_path)
    folder = hparams["output_folder"]
    png = os.path.join(folder, CURVES_PNG)
    run_logger = make_train_logger(hparams)
    run_logger.log_stats({"Epoch loaded": 1}, test_stats={"loss": 1.0})  # not an epoch: no curve
    assert not os.path.exists(png)
    log_epochs(run_logger, EPOCHS[:1])
    first = os.path.getmtime(png), png_size(png)
    log_epochs(run_logger, EPOCHS[1:2], first=2)
    assert png_size(png) == first[1] == (1000, 400)
    # A "resumed" run in the same folder (new logger) redoes epoch 2 and goes on: the last record of an epoch wins.
    resumed = make_train_logger(hparams_for(tmp_path))
    log_epochs(resumed, [(9.0, 9.0, 0.0, 0.1, 0.0)] + EPOCHS[2:], first=2)
    history = read_history(folder)
    assert list(history) == [1, 2, 3]
    assert history[2]["train"]["loss"] == 9.0 and history[3]["valid"]["R@1"] == 0.50
    # A line cut short by a kill is skipped.
    with open(os.path.join(folder, CURVES_HISTORY), "a", encoding="utf-8") as f:
        f.write('{"epoch": 4, "tra')
    assert list(read_history(folder)) == [1, 2, 3]
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (400, 1000) and image.std() > 0.01  # drawn, not blank


def test_run_logger_passes_every_call_on():
    calls = []

    class Recorder:
        def log_stats(self, stats_meta, train_stats=None, valid_stats=None, test_stats=None, verbose=False):
            calls.append((stats_meta, train_stats, valid_stats, test_stats, verbose))

    run_logger = RunLogger([Recorder(), Recorder()])
    run_logger.log_stats({"epoch": 1}, train_stats={"loss": 1.0}, verbose=True)
    assert calls == [({"epoch": 1}, {"loss": 1.0}, None, None, True)] * 2


# ----------------------------------------------------------------- brain: paper code's training keys
class _LossRecorder:
    def __init__(self):
        self.gather = []

    def __call__(self, audio_emb, text_emb, scale, valid=None, gather=True):
        self.gather.append(gather)
        return audio_emb.sum() * 0, torch.zeros(0, 0)


@pytest.mark.parametrize("global_contrastive", [True, False])
def test_global_contrastive_decides_the_gather(global_contrastive):
    """``global_contrastive: False``: each device's loss over its own batch (no all-gather), as in the paper code."""
    from training.brain import CLAPBrain

    brain = CLAPBrain.__new__(CLAPBrain)
    recorder = _LossRecorder()
    brain.hparams = types.SimpleNamespace(loss=recorder, global_contrastive=global_contrastive)
    brain.device, brain.unreadable = "cpu", 0
    batch = types.SimpleNamespace(audio_ok=torch.ones(2, dtype=torch.bool), wav_path=["a", "b"])
    predictions = (torch.randn(2, 4), torch.randn(2, 4), torch.tensor(10.0))
    brain.compute_objectives(predictions, batch, sb.Stage.TRAIN)
    brain.compute_objectives(predictions, batch, sb.Stage.VALID)
    assert recorder.gather == [global_contrastive, False]


def test_num_epoch_save_and_num_ckpt_keep_reach_the_checkpointer():
    from training.brain import CLAPBrain

    saved = []
    brain = CLAPBrain.__new__(CLAPBrain)
    # lr_schedule: read by the learning-rate schedule's end-of-epoch step where it exists (cosine: no step).
    brain.hparams = types.SimpleNamespace(num_epoch_save=2, num_ckpt_keep=3, lr_schedule="cosine",
                                          train_logger=types.SimpleNamespace(log_stats=lambda *a, **k: None))
    brain.checkpointer = types.SimpleNamespace(save_and_keep_only=lambda **kwargs: saved.append(kwargs))
    brain.optimizer = types.SimpleNamespace(param_groups=[{"lr": 1e-4}])
    for epoch in (1, 2, 3, 4):
        brain.unreadable, brain.recall_rows = 0, 0
        brain.on_stage_end(sb.Stage.VALID, 1.0 / epoch, epoch=epoch)
    assert saved == [{"meta": {"loss": 0.5}, "num_to_keep": 3, "min_keys": ["loss"]},
                     {"meta": {"loss": 0.25}, "num_to_keep": 3, "min_keys": ["loss"]}]


# ----------------------------------------------------------------- one short run, end to end
@pytest.mark.slow  # trains two epochs; the loggers' unit tests above are fast
def test_short_run_logs_to_wandb_file_and_png(toy_world, tmp_path, fake_wandb, monkeypatch):
    """Two tiny epochs (overfit mode: 4 pairs x 3) with --use_wandb=True and the paper code's folder keys."""
    import dataset.overfit

    monkeypatch.setattr(dataset.overfit, "OVERFIT_REPEATS", 3)
    argv = ["hparams/toy/microsoft_clap_train.yaml", f"--data_annot_folder={toy_world}", f"--output_base={tmp_path}",
            "--experiment_name=curves", "--seed=5", "--time_stamp=2024-05-01+13-45-10", "--use_wandb=True",
            "--overfit_size=4", "--batch_size=4", "--number_of_epochs=2", "--num_epoch_save=2", "--num_ckpt_keep=1",
            "--freeze_aud_emb=True", "--auto_mix_prec=False", "--temp_tau=0.003", "--check_audio=False",
            "--noprogressbar"]
    load_script("microsoft_clap_train").main(argv)
    out = tmp_path / "2024-05-01+13-45-10_seed_5+curves"
    assert out.is_dir()
    # W&B got both epochs' train and valid stats (step = epoch), then the final test stats.
    (run,) = fake_wandb.runs
    assert run.kwargs["name"] == out.name and run.kwargs["config"]["freeze_audio_base"] is True
    epochs = [(step, data) for step, data in run.logged if step is not None]
    assert [step for step, _ in epochs] == [1, 2]
    for _, data in epochs:
        assert {"loss"} <= set(data["train"]) and {"loss", "R@1"} <= set(data["valid"])
    assert "test" in run.logged[-1][1]
    # The file log has the same numbers.
    log = (out / "train_log.txt").read_text(encoding="utf-8")
    assert log.count("valid loss:") == 2 and "test loss:" in log
    history = read_history(str(out))
    assert list(history) == [1, 2]
    assert history[2]["valid"]["loss"] == pytest.approx(epochs[1][1]["valid"]["loss"])
    assert png_size(out / CURVES_PNG) == (1000, 400)
    # overfit_size: 4 pairs x 3 for training, the same 4 for validation.
    train = (out / "overfit_train.csv").read_text(encoding="utf-8").splitlines()
    valid = (out / "overfit_valid.csv").read_text(encoding="utf-8").splitlines()
    assert len(train) == 1 + 12 and len(valid) == 1 + 4
    # num_epoch_save=2: only epoch 2 was saved.
    from experiment.checkpoints import checkpoint_dirs

    (ckpt,) = checkpoint_dirs(out / "save")
    assert "loss:" in open(os.path.join(ckpt, "CKPT.yaml"), encoding="utf-8").read()
    assert open(os.path.join(ckpt, "counter.ckpt")).read().strip() == "2"
    # The saved hyperparameters hold our keys: the run can be loaded again as ours.
    saved = (out / "hyperparams.yaml").read_text(encoding="utf-8")
    assert "freeze_audio_base: true" in saved.lower() and "freeze_aud_emb" not in saved
