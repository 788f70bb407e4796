"""The contrastive loss: reference formula, masking, clamping."""

import math

import torch
import torch.nn.functional as F

from models.loss import ClapLoss, contrastive_loss


def reference_loss(a, t, scale):
    """Plain-Python symmetric InfoNCE."""
    n = a.shape[0]
    sims = [[scale * float(a[i] @ t[j]) for j in range(n)] for i in range(n)]
    total = 0.0
    for i in range(n):
        row = sims[i]
        col = [sims[j][i] for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(x) for x in row))
        total += -col[i] + math.log(sum(math.exp(x) for x in col))
    return total / (2 * n)


def test_matches_reference_formula():
    torch.manual_seed(0)
    a = F.normalize(torch.randn(5, 7, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(5, 7, dtype=torch.float64), dim=-1)
    assert abs(float(contrastive_loss(a, t, 3.0)) - reference_loss(a, t, 3.0)) < 1e-10


def test_invalid_rows_are_left_out():
    torch.manual_seed(1)
    a = F.normalize(torch.randn(6, 4), dim=-1)
    t = F.normalize(torch.randn(6, 4), dim=-1)
    valid = torch.tensor([True, False, True, True, False, True])
    loss, logits = ClapLoss()(a, t, torch.tensor(10.0), valid=valid)
    expected = contrastive_loss(a[valid], t[valid], 10.0)
    assert torch.allclose(loss, expected)
    assert logits.shape == (4, 4)


def test_all_invalid_gives_zero_with_graph():
    a = F.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    t = F.normalize(torch.randn(3, 4), dim=-1)
    loss, _ = ClapLoss()(a, t, torch.tensor(10.0), valid=torch.zeros(3, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0 and a.grad is not None


def test_logit_scale_is_clamped_at_100():
    torch.manual_seed(2)
    a = F.normalize(torch.randn(4, 8), dim=-1)
    t = F.normalize(torch.randn(4, 8), dim=-1)
    loss_big, logits = ClapLoss(max_logit_scale=100.0)(a, t, torch.tensor(1e4))
    assert torch.allclose(loss_big, contrastive_loss(a, t, 100.0))
    assert float(logits.abs().max()) <= 100.0 + 1e-4
