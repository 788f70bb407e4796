"""DDP on CPU: the global contrastive loss and its gradients equal one process on the combined batch."""

import os
import subprocess
import sys

import pytest
import torch

from models.loss import contrastive_loss

from ddp_worker import build_model, global_batch, loss_and_grads

pytestmark = pytest.mark.slow  # a torchrun launch of two ranks


def test_torchrun_two_ranks_match_single_process(tmp_path, tiny_bert):
    out = tmp_path / "ddp.pt"
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        torchrun + ["--nproc_per_node=2", "--master_port=29533",
                    os.path.join(os.path.dirname(__file__), "ddp_worker.py"), tiny_bert, str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)

    model = build_model(tiny_bert)
    for name, p in model.named_parameters():
        if name.startswith("audio_encoder.base.fc_audioset") or ".pooler." in name:
            p.requires_grad_(False)
    loss, grads = loss_and_grads(model, *global_batch())

    assert torch.allclose(ddp["loss"], loss, atol=1e-6), (float(ddp["loss"]), float(loss))
    assert set(ddp["grads"]) == set(grads)
    # Relative to each tensor's scale; the absolute floor covers gradients that
    # are zero in exact arithmetic (attention key biases) and ~1e-11 in float32.
    for name, ref in grads.items():
        diff = float((ddp["grads"][name] - ref).abs().max())
        assert diff <= 1e-4 * float(ref.abs().max()) + 1e-8, (name, diff)
    # The gather matters: averaging two local (per-rank) losses gives another value.
    with torch.no_grad():
        audio, text, scale = model(*global_batch())
    scale = torch.clamp(scale, max=100.0)
    local = 0.5 * (contrastive_loss(audio[:4], text[:4], scale) + contrastive_loss(audio[4:], text[4:], scale))
    assert abs(float(local) - float(loss)) > 1e-3
