"""SoftCLAP: the soft-target formula, its edge cases, and the frozen teacher."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, check_ok, load_script, run_script
from models.loss import ClapLoss, SoftClapLoss, contrastive_loss, kl_div_pytorch110, paper_soft_targets, soft_targets


def random_batch(n=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, d, generator=g), dim=-1) for _ in range(4)]


def student_3x3():
    """The hand-computed examples' student: audio and text rows, logit scale, and the scaled
    audio→text similarities as plain floats (the written-out formulas use no torch)."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8]], dtype=torch.float64)
    t = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    scale = 2.0
    return a, t, scale, [[scale * float(a[i] @ t[j]) for j in range(3)] for i in range(3)]


def test_beta_zero_is_exactly_the_clap_loss():
    a, t, ta, tt = random_batch()
    plain, _ = ClapLoss()(a, t, torch.tensor(12.0))
    soft0, _ = SoftClapLoss(beta=0.0)(a, t, torch.tensor(12.0), teacher_audio=ta, teacher_text=tt)
    assert torch.equal(plain, soft0)
    # The soft-target code path itself also reduces to cross-entropy at β = 0.
    eye = soft_targets(ta, 0.0)
    assert torch.equal(eye, torch.eye(4))
    assert torch.allclose(contrastive_loss(a, t, 12.0, eye, eye), plain, atol=1e-6)


def test_hand_computed_3x3_example():
    # Teacher audio: e0 = (1, 0), e1 = (0.6, 0.8), e2 = (-1, 0). Cosines: 0.6, -1, -0.6.
    ta = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64)
    tt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    beta = 0.3
    # Non-negative parts, rows normalised: [1, .6, 0]/1.6, [.6, 1, 0]/1.6, [0, 0, 1].
    expected_a = torch.tensor([
        [0.7 + 0.3 * 1 / 1.6, 0.3 * 0.6 / 1.6, 0.0],
        [0.3 * 0.6 / 1.6, 0.7 + 0.3 * 1 / 1.6, 0.0],
        [0.0, 0.0, 1.0],
    ], dtype=torch.float64)
    assert torch.allclose(soft_targets(ta, beta), expected_a, atol=1e-12)
    # Text teacher: rows 1 and 2 identical -> [1,0,0], [0,.5,.5] after normalising, [0,.5,.5].
    expected_t = torch.tensor([[1.0, 0, 0], [0, 0.85, 0.15], [0, 0.15, 0.85]], dtype=torch.float64)
    assert torch.allclose(soft_targets(tt, beta), expected_t, atol=1e-12)

    # The loss, written out: mean over rows of -sum_j target_ij * log softmax(scale * s_ij).
    a, t, scale, s = student_3x3()

    def direction(sims, targets):
        total = 0.0
        for i in range(3):
            log_z = math.log(sum(math.exp(x) for x in sims[i]))
            total += -sum(float(targets[i][j]) * (sims[i][j] - log_z) for j in range(3))
        return total / 3

    s_t2a = [[s[j][i] for j in range(3)] for i in range(3)]
    expected = 0.5 * (direction(s, expected_a) + direction(s_t2a, expected_t))
    loss, _ = SoftClapLoss(beta=beta)(a, t, torch.tensor(scale, dtype=torch.float64), teacher_audio=ta, teacher_text=tt)
    assert abs(float(loss) - expected) < 1e-10


def test_paper_targets_hand_computed_3x3_example_with_a_negative_cosine():
    """The paper code's SoftCLAPLoss on PyTorch 1.10, written out: unnormalised (1-β)I + βS, KL batchmean,
    entries with a target <= 0 left out (the negative teacher cosines here)."""
    ta = torch.tensor([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64)  # cosines 0.6, -1, -0.6
    tt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)  # cosines 0, 0, 1
    beta = 0.3
    expected_a = [[1.0, 0.18, -0.3], [0.18, 1.0, -0.18], [-0.3, -0.18, 1.0]]
    expected_t = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.3], [0.0, 0.3, 1.0]]
    assert torch.allclose(paper_soft_targets(ta, beta), torch.tensor(expected_a, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(paper_soft_targets(tt, beta), torch.tensor(expected_t, dtype=torch.float64), atol=1e-12)

    a, t, scale, s = student_3x3()

    def kl(sims, targets):
        total = 0.0
        for i in range(3):
            log_z = math.log(sum(math.exp(x) for x in sims[i]))
            total += sum(targets[i][j] * (math.log(targets[i][j]) - (sims[i][j] - log_z))
                         for j in range(3) if targets[i][j] > 0)
        return total / 3  # batchmean

    s_t2a = [[s[j][i] for j in range(3)] for i in range(3)]
    expected = 0.5 * (kl(s, expected_a) + kl(s_t2a, expected_t))
    loss_fn = SoftClapLoss(beta=beta, targets="paper")
    loss, _ = loss_fn(a, t, torch.tensor(scale, dtype=torch.float64), teacher_audio=ta, teacher_text=tt)
    assert abs(float(loss) - expected) < 1e-10
    # The same value from the PyTorch-1.10 KL helper, and from today's KLDivLoss where no target is <= 0.
    logits = scale * a @ t.t()
    helper = 0.5 * (kl_div_pytorch110(F.log_softmax(logits, -1), paper_soft_targets(ta, beta))
                    + kl_div_pytorch110(F.log_softmax(logits.t(), -1), paper_soft_targets(tt, beta)))
    assert abs(float(helper) - expected) < 1e-10
    positive = paper_soft_targets(ta, beta).clamp(min=1e-3)
    assert torch.allclose(kl_div_pytorch110(F.log_softmax(logits, -1), positive),
                          F.kl_div(F.log_softmax(logits, -1), positive, reduction="batchmean"))
    # And it is not our normalised variant.
    ours, _ = SoftClapLoss(beta=beta)(a, t, torch.tensor(scale, dtype=torch.float64), teacher_audio=ta,
                                      teacher_text=tt)
    assert abs(float(ours) - expected) > 1e-3


def test_paper_targets_never_give_nan_and_train_like_the_kl():
    """Antipodal teachers (every off-diagonal cosine -1) and a bf16 autocast: finite loss and gradients,
    and the gradient equals that of the explicit PyTorch-1.10 KL."""
    e = F.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
                    * torch.tensor([[1.0], [1.0], [-1.0], [-1.0]]), dim=-1)
    a, t, _, _ = random_batch(d=2)
    a = a.clone().requires_grad_(True)
    scale = torch.tensor(30.0)
    loss, _ = SoftClapLoss(beta=1.0, targets="paper")(a, t, scale, teacher_audio=e, teacher_text=-e)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
    a2 = a.detach().clone().requires_grad_(True)
    logits = scale * a2 @ t.t()
    reference = 0.5 * (kl_div_pytorch110(F.log_softmax(logits, -1), paper_soft_targets(e, 1.0))
                       + kl_div_pytorch110(F.log_softmax(logits.t(), -1), paper_soft_targets(-e, 1.0)))
    reference.backward()
    assert torch.allclose(loss, reference, atol=1e-6) and torch.allclose(a.grad, a2.grad, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = SoftClapLoss(beta=0.3, targets="paper")(a.detach(), t, scale, teacher_audio=e, teacher_text=-e)
    assert low.dtype == torch.float32 and torch.isfinite(low)


def test_softclap_targets_option_is_checked():
    with pytest.raises(ValueError, match="softclap_targets must be one of paper, normalized"):
        SoftClapLoss(beta=0.3, targets="soft")


def test_negative_teacher_cosines_give_finite_loss_and_distributions():
    # Antipodal teacher embeddings: every off-diagonal cosine is -1.
    e = F.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
                    * torch.tensor([[1.0], [1.0], [-1.0], [-1.0]]), dim=-1)
    targets = soft_targets(e, 0.3)
    assert torch.all(targets >= 0) and torch.allclose(targets.sum(-1), torch.ones(4))
    a, t, _, _ = random_batch()
    loss, _ = SoftClapLoss(beta=1.0)(a, t, torch.tensor(100.0), teacher_audio=e, teacher_text=-e)
    assert torch.isfinite(loss)


def test_beta_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="softclap_beta"):
        soft_targets(torch.eye(2), 1.5)
    with pytest.raises(ValueError, match="softclap_beta"):
        SoftClapLoss(beta=-0.1)


def test_softclap_loss_is_a_clap_loss_that_validation_uses_plainly():
    """Without the teacher's embeddings (validation) SoftClapLoss is exactly ClapLoss."""
    a, t, ta, tt = random_batch()
    loss = SoftClapLoss(beta=0.3)
    assert isinstance(loss, ClapLoss)
    plain, _ = ClapLoss()(a, t, torch.tensor(12.0))
    assert torch.equal(loss(a, t, torch.tensor(12.0))[0], plain)
    assert not torch.equal(loss(a, t, torch.tensor(12.0), teacher_audio=ta, teacher_text=tt)[0], plain)


# ------------------------------------------------------------------ recipe
SOFT = "recipes/softclap_train.py"


def toy_softclap_flags(toy_world, teacher_save, out, name, curation_csv, epochs=1):
    return [SOFT, os.path.join(REPO, "hparams/toy/softclap_train.yaml"), f"--data_annot_folder={toy_world}",
            f"--train_csv_path={os.path.join(teacher_save, 'train_raw.csv')}", f"--curation_csv={curation_csv}",
            "--curation_prob=0.5", f"--ssl_checkpoints_dir={teacher_save}", f"--teacher_checkpoints_dir={teacher_save}",
            f"--output_base={out}", f"--experiment_name={name}", f"--number_of_epochs={epochs}", "--batch_size=16",
            "--subset_pct=0.5", "--noprogressbar"]


@pytest.fixture
def curated_stand_in(toy_world, tmp_path):
    """A small curated CSV (the toy pairs, re-captioned) for tests that do not depend on curation itself."""
    from dataset.manifest import read_caption_csv, write_csv

    rows = read_caption_csv(os.path.join(toy_world, "pairs.csv"))[::5][:48]
    path = tmp_path / "curated.csv"
    write_csv(path, [{"ID": f"cur_{i}", "wav_path": r["wav_path"], "caption": r["caption"], "similarity": "0.8"}
                     for i, r in enumerate(rows)])
    return str(path)


@pytest.mark.slow
def test_teacher_stays_bit_identical_while_student_learns(toy_world, toy_teacher, curated_stand_in, tmp_path):
    from experiment.checkpoints import find_checkpoint

    save = os.path.join(toy_teacher, "save")
    start = torch.load(os.path.join(find_checkpoint(save, "loss"), "model.ckpt"), weights_only=True)
    argv = toy_softclap_flags(toy_world, save, tmp_path, "inproc", curated_stand_in)[1:]
    brain = load_script("softclap_train").main(argv)

    teacher = brain.teacher.state_dict()
    student = brain.modules.model.state_dict()
    assert all(torch.equal(teacher[k], start[k]) for k in start), "the teacher changed"
    assert not brain.teacher.training and not any(p.requires_grad for p in brain.teacher.parameters())
    optimised = {id(p) for group in brain.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in brain.teacher.parameters()}
    moved = [k for k in start if start[k].is_floating_point() and not torch.equal(student[k], start[k])]
    assert "audio_encoder.projection.linear1.weight" in moved and "logit_scale" in moved
    ckpt = find_checkpoint(os.path.join(tmp_path, "inproc", "save"), "latest")
    assert not [f for f in os.listdir(ckpt) if "teacher" in f], "the teacher must not be checkpointed"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_softclap_killed_mid_epoch_then_resumed_equals_uninterrupted(toy_world, toy_teacher, curated_stand_in,
                                                                     tmp_path, precision):
    from test_train_recipe import kill_after_first_intra_epoch_checkpoint, max_weight_difference

    save = os.path.join(toy_teacher, "save")

    def flags(name):
        return toy_softclap_flags(toy_world, save, tmp_path, name, curated_stand_in, epochs=2) + [
            "--ckpt_interval_steps=3", f"--precision={precision}"]

    check_ok(run_script(flags("straight")))
    killed_save = tmp_path / "killed" / "save"
    kill_after_first_intra_epoch_checkpoint(flags("killed"), killed_save)
    check_ok(run_script(flags("killed") + ["--resume_interrupt=True", f"--prev_ckpt_dir={killed_save}"]))
    assert max_weight_difference(tmp_path / "straight" / "save", killed_save) <= 1e-6


def test_softclap_without_a_teacher_is_a_clear_error(toy_world, tmp_path):
    proc = run_script([SOFT, "hparams/toy/softclap_train.yaml", f"--data_annot_folder={toy_world}",
                       f"--output_base={tmp_path}", "--teacher_checkpoints_dir=", "--clap_ckpt_path=",
                       "--subset_pct=0.1"])
    assert proc.returncode != 0
    assert "SoftCLAP needs a teacher" in proc.stderr


@pytest.mark.parametrize("domain,zs", [("insper", "esc50"), ("us8k", "us8k"), ("tut17", "tut17")])
def test_student_yamls_validate_on_their_own_domain(domain, zs, tiny_bert, tmp_path):
    """The domain variants load, carry every key of the training YAML, and name their own zero-shot set.

    Zero-shot validation is off by default, as in the paper's YAMLs (``use_zs_loader: False``).
    """
    import re

    from experiment.command_line import load_hparams

    def keys(path):
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            return set(re.findall(r"^([A-Za-z_]\w*):", f.read(), flags=re.M))

    teacher_keys = keys("hparams/insper/microsoft_clap_train.yaml")
    overrides = (f"data_zs_folder: {tmp_path}\ntext_model: {tiny_bert}\ntxt_emb_dim: 32\naudio_width: 0.0625\n"
                 f"out_emb: 64\nd_proj: 16\npretrained_text: False\noutput_base: {tmp_path}")
    for name in ("microsoft_clap_train", "softclap_train"):
        path = f"hparams/{domain}/{name}.yaml"
        if domain == "insper" and name == "microsoft_clap_train":
            continue  # the teacher's YAML: zero-shot validation off by default
        assert teacher_keys <= keys(path), teacher_keys - keys(path)
        hparams = load_hparams(os.path.join(REPO, path), overrides)
        assert hparams["use_zs_loader"] is False and hparams["zs_dataset"] == zs
        if name == "softclap_train":
            assert hparams["softclap_beta"] == 0.3 and hparams["teacher_model"] is not hparams["model"]
